"""Simulated stations provisioned in the CSMS under test."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest

from csms.app import Csms
from csms.passwords import hash_password
from simulators.station import EvseSpec, Station, StationSpec

PASSWORD = "station-password-0123"
_HASH = hash_password(PASSWORD)  # scrypt is slow on purpose: hash once per test run

StationFactory = Callable[..., Awaitable[Station]]


@pytest.fixture
async def make_station(csms: Csms, url: str) -> AsyncIterator[StationFactory]:
    """`await make_station("CS001", start=True, **spec_fields)`: provisioned, maybe booted."""
    stations: list[Station] = []

    async def make(station_id: str, *, start: bool = True, provision: bool = True,
                   password: str | None = PASSWORD, clock: Any = None, **spec: Any) -> Station:
        if provision:
            await csms.store.stations.add(
                station_id, _HASH if password == PASSWORD else None, csms.clock.now()
            )
        spec.setdefault("evses", [EvseSpec(1, kind="AC", phases=3, max_current_a=32.0)])
        station = Station(StationSpec(station_id, password=password, **spec), url=url, clock=clock)
        stations.append(station)
        if start:
            await station.start()
        return station

    yield make
    for station in stations:
        await station.stop()
