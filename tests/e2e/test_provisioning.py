"""Block B (boot, device model) and G (heartbeat, status) over real sockets."""

from __future__ import annotations

import asyncio
import json
from dataclasses import replace

import pytest
import websockets

from csms.app import Csms
from csms.config import Config
from simulators.station import CallFailed
from tests.e2e.conftest import StationFactory
from tests.support import eventually


async def test_B01_cold_boot_is_accepted_and_stored(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001", vendor="Acme", model="AC-22")
    assert station.boot_status == "Accepted"
    record = await csms.store.stations.get("CS001")
    assert record is not None
    assert (record.vendor, record.model, record.boot_status) == ("Acme", "AC-22", "Accepted")
    assert record.online and record.last_boot_at is not None


async def test_B01_boot_gives_the_configured_heartbeat_interval(
    make_station: StationFactory,
) -> None:
    station = await make_station("CS001")
    reply = await station.call("BootNotification", {
        "reason": "PowerUp", "chargingStation": {"model": "m", "vendorName": "v"},
    })
    assert reply["status"] == "Accepted" and reply["interval"] == 300
    assert reply["currentTime"].endswith("Z")


async def test_B02_pending_boot_reads_device_model_then_accepts(config: Config) -> None:
    from simulators.station import Station, StationSpec

    config = replace(config, boot=replace(config.boot, pending_until_reported=True,
                                          retry_interval_s=1))
    csms = await Csms.start(config)
    try:
        await csms.store.stations.add("CS001", None, csms.clock.now())
        station = Station(StationSpec("CS001"), url=f"ws://127.0.0.1:{csms.ocpp.port}/ocpp")
        await station.start()
        assert station.boot_status == "Pending"

        # While Pending, only BootNotification and the reports it asked for are allowed.
        with pytest.raises(CallFailed) as refused:
            await station.call("Heartbeat", {})
        assert refused.value.code == "SecurityError"

        # The CSMS asked for the base report; the station sent NotifyReport; the variables
        # a planner reads are stored.
        async def smart_charging_variables() -> list[str]:
            rows = await csms.store.devices.variables("CS001", "SmartChargingCtrlr")
            return [v.variable for v in rows]

        names = await eventually(smart_charging_variables)
        assert {"RateUnit", "PeriodsPerSchedule"} <= set(names)

        # The station boots again after the retry interval and is accepted.
        async def accepted() -> bool:
            return station.boot_status == "Accepted"

        await eventually(accepted, timeout=10)
        record = await csms.store.stations.get("CS001")
        assert record is not None and record.boot_status == "Accepted"
        await station.call("Heartbeat", {})
        await station.stop()
    finally:
        await csms.stop()


async def test_B01_messages_before_any_boot_get_security_error(
    url: str, make_station: StationFactory
) -> None:
    await make_station("CS001", start=False, password=None)
    async with websockets.connect(f"{url}/CS001", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await ws.send('[2,"x1","Heartbeat",{}]')
        assert json.loads(await ws.recv())[:3] == [4, "x1", "SecurityError"]
        await ws.send(
            '[2,"x2","BootNotification",{"reason":"PowerUp",'
            '"chargingStation":{"model":"m","vendorName":"v"}}]'
        )
        assert json.loads(await ws.recv())[2]["status"] == "Accepted"
        await ws.send('[2,"x3","Heartbeat",{}]')
        assert json.loads(await ws.recv())[:2] == [3, "x3"]


async def test_G02_heartbeat_returns_current_time(make_station: StationFactory) -> None:
    station = await make_station("CS001")
    reply = await station.call("Heartbeat", {})
    assert reply["currentTime"].endswith("Z")


async def test_G01_status_notification_keeps_connector_status_current(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    await station.status(1, "Available")
    await station.status(1, "Unavailable")
    connectors = await csms.store.devices.connectors("CS001")
    assert [(c.evse_id, c.connector_id, c.status) for c in connectors] == [(1, 1, "Unavailable")]


async def test_connection_state_is_stored(csms: Csms, make_station: StationFactory) -> None:
    station = await make_station("CS001")
    assert (record := await csms.store.stations.get("CS001")) and record.online
    await station.disconnect()

    async def offline() -> bool:
        record = await csms.store.stations.get("CS001")
        return bool(record and not record.online and record.disconnected_at)

    await eventually(offline)


async def test_reconnect_replaces_the_old_connection(
    csms: Csms, make_station: StationFactory
) -> None:
    first = await make_station("CS001")
    second = await make_station("CS001", provision=False)

    async def first_dropped() -> bool:
        return not first.connected

    await eventually(first_dropped)
    assert csms.connections.ids() == ["CS001"]
    reply = await second.call("Heartbeat", {})
    assert "currentTime" in reply
    assert (record := await csms.store.stations.get("CS001")) and record.online


BOOT = ('[2,"b{n}","BootNotification",{{"reason":"PowerUp",'
        '"chargingStation":{{"model":"m","vendorName":"v"}}}}]')


async def _boot(ws: websockets.ClientConnection, n: int) -> str:
    await ws.send(BOOT.format(n=n))
    frame = json.loads(await ws.recv())
    assert frame[:2] == [3, f"b{n}"], frame
    return str(frame[2]["status"])


async def _answer_base_report(ws: websockets.ClientConnection, status: str) -> None:
    frame = json.loads(await ws.recv())
    assert frame[0] == 2 and frame[2] == "GetBaseReport", frame
    await ws.send(json.dumps([3, frame[1], {"status": status}]))


@pytest.mark.parametrize(("answer", "wait_s"), [("Accepted", 1.2), ("NotSupported", 0.0)])
async def test_B02_pending_boot_ends_without_a_report(
    config: Config, answer: str, wait_s: float
) -> None:
    """A station held Pending for its report but sending none is accepted at its first
    boot after `pending_timeout_s`, or at once when it refused the report request."""
    config = replace(config, boot=replace(config.boot, pending_until_reported=True,
                                          retry_interval_s=1, pending_timeout_s=1.0))
    csms = await Csms.start(config)
    try:
        await csms.store.stations.add("CS001", None, csms.clock.now())
        url = f"ws://127.0.0.1:{csms.ocpp.port}/ocpp/CS001"
        async with websockets.connect(url, subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
            assert await _boot(ws, 1) == "Pending"
            await _answer_base_report(ws, answer)

            async def answer_stored() -> bool:
                newest = await csms.store.reports.newest_base("CS001")
                return newest is not None and newest.status == answer

            await eventually(answer_stored)
            if wait_s:  # still Pending before the bound; the CSMS asks again
                assert await _boot(ws, 2) == "Pending"
                await _answer_base_report(ws, answer)
                await asyncio.sleep(wait_s)
            assert await _boot(ws, 3) == "Accepted"
            record = await csms.store.stations.get("CS001")
            assert record is not None and record.boot_status == "Accepted"
            assert record.pending_since is None and record.report_complete_at is None
    finally:
        await csms.stop()


async def test_B07_a_report_with_ids_beyond_int32_is_refused_and_not_stored(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    part = {"generatedAt": "2026-12-04T10:00:00Z", "tbc": False, "reportData": [{
        "component": {"name": "Big"}, "variable": {"name": "Ids"},
        "variableAttribute": [{"value": "1"}]}]}
    for request_id, seq_no in ((2**62, 0), (5, 2**40), (-(2**62), -1)):
        with pytest.raises(CallFailed) as refused:
            await station.call("NotifyReport", {**part, "requestId": request_id,
                                                "seqNo": seq_no})
        assert refused.value.code == "PropertyConstraintViolation"
    assert await csms.store.reports.list("CS001") == []
    assert await csms.store.devices.variables("CS001", "Big") == []
