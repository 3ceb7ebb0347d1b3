from __future__ import annotations

from datetime import UTC, datetime

import pytest

from simulators.clock import AcceleratedClock
from simulators.station import EvseSpec, Station, StationSpec
from tests.simulators.peer import ScriptedCsms

START = datetime(2026, 11, 23, 17, 0, tzinfo=UTC)


@pytest.fixture
async def peer():
    csms = ScriptedCsms()
    await csms.start()
    yield csms
    await csms.stop()
    assert csms.schema_problems == [], csms.schema_problems


@pytest.fixture
async def stations():
    """Factory: build stations that are stopped after the test."""
    made: list[Station] = []

    def build(url: str, speed: float = 600.0, **spec_kw) -> Station:
        spec_kw.setdefault("station_id", "CS001")
        spec_kw.setdefault("evses", [EvseSpec(evse_id=1, kind="AC", phases=3, max_current_a=32.0)])
        st = Station(StationSpec(**spec_kw), url=url, clock=AcceleratedClock(START, speed))
        made.append(st)
        return st

    yield build
    for st in made:
        await st.stop()
