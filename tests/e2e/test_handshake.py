"""Connection rules (OCPP 2.0.1 Part 4, block A Security Profile 1)."""

from __future__ import annotations

import base64
from dataclasses import replace

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from csms.app import Csms
from csms.config import Config
from simulators.station import ConnectionRefused
from tests.e2e.conftest import PASSWORD, StationFactory
from tests.support import eventually


def basic(user: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


async def test_A00_no_subprotocol_is_refused_with_a_reason(
    url: str, make_station: StationFactory
) -> None:
    await make_station("CS001", start=False)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{url}/CS001", additional_headers=basic("CS001", PASSWORD)):
            pass
    assert refused.value.response.status_code == 400
    assert b"ocpp2.0.1" in refused.value.response.body


async def test_A00_only_unsupported_subprotocols_offered_is_refused(
    url: str, make_station: StationFactory
) -> None:
    await make_station("CS001", start=False)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            f"{url}/CS001", subprotocols=["ocpp1.6"],  # type: ignore[list-item]
            additional_headers=basic("CS001", PASSWORD),
        ):
            pass
    assert refused.value.response.status_code == 400


async def test_A01_wrong_password_is_refused_with_401(make_station: StationFactory) -> None:
    await make_station("CS001", start=False)
    intruder = await make_station("CS001", start=False, provision=False,
                                  password="not-the-password-000")
    with pytest.raises(ConnectionRefused) as refused:
        await intruder.start()
    assert refused.value.status_code == 401


async def test_A01_username_must_be_the_identity(url: str, make_station: StationFactory) -> None:
    await make_station("CS001", start=False)
    await make_station("CS002", start=False)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(f"{url}/CS001", subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                                      additional_headers=basic("CS002", PASSWORD)):
            pass
    assert refused.value.response.status_code == 401


async def test_A01_unknown_station_is_refused_with_401(make_station: StationFactory) -> None:
    stranger = await make_station("NOBODY", start=False, provision=False)
    with pytest.raises(ConnectionRefused) as refused:
        await stranger.start()
    assert refused.value.status_code == 401


async def test_A01_auto_registration_accepts_and_stores_unknown_station(config: Config) -> None:
    config = replace(config, server=replace(config.server, auto_register=True))
    csms = await Csms.start(config)
    try:
        from simulators.station import Station, StationSpec

        station = Station(StationSpec("NEW01", password=PASSWORD),
                          url=f"ws://127.0.0.1:{csms.ocpp.port}/ocpp")
        await station.start()
        assert station.boot_status == "Accepted"
        record = await csms.store.stations.get("NEW01")
        assert record is not None and record.has_password and record.model == "Sim-22"
        await station.stop()
    finally:
        await csms.stop()


async def test_identity_is_the_last_path_segment_under_any_prefix(
    csms: Csms, make_station: StationFactory
) -> None:
    await make_station("CS-7", start=False)
    async with websockets.connect(
        f"ws://127.0.0.1:{csms.ocpp.port}/some/deep/prefix/CS-7",
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        additional_headers=basic("CS-7", PASSWORD),
    ) as ws:
        assert ws.subprotocol == "ocpp2.0.1"
        await eventually(lambda: _online(csms, "CS-7"))


async def _online(csms: Csms, station_id: str) -> bool:
    record = await csms.store.stations.get(station_id)
    return bool(record and record.online)


async def test_A01_generated_password_fast_hash_connects_and_wrong_one_is_refused(
    csms: Csms, make_station: StationFactory
) -> None:
    from csms.passwords import generate_password

    password, stored = generate_password()
    await csms.store.stations.add("GEN01", stored, csms.clock.now())
    station = await make_station("GEN01", provision=False, password=password)
    assert station.boot_status == "Accepted"
    intruder = await make_station("GEN01", start=False, provision=False,
                                  password="x" * 32)
    with pytest.raises(ConnectionRefused) as refused:
        await intruder.start()
    assert refused.value.status_code == 401
