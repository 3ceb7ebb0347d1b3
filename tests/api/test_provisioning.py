"""Block B over HTTP and real stations: message limits, boots an operator holds, reports,
network profiles and resets."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import pytest

from csms.app import Csms
from csms.config import Config
from csms.store.devices import Variable
from simulators.station import CallFailed
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually


async def _report_limits(csms: Csms, station_id: str) -> None:
    """Have the CSMS learn the station's DeviceDataCtrlr limits from a base report."""
    reply = await csms.commands.get_base_report(station_id)
    assert reply["status"] == "Accepted"

    async def stored() -> bool:
        rows = await csms.store.devices.variables(station_id, "DeviceDataCtrlr")
        return any(v.variable == "ItemsPerMessageGetVariables" for v in rows)

    await eventually(stored)


async def test_B06_get_variables_is_split_by_items_per_message(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.device_model.put("DeviceDataCtrlr", "ItemsPerMessageGetVariables", "2")
    station.device_model.put("DeviceDataCtrlr", "ItemsPerMessageSetVariables", "1")
    await _report_limits(csms, "CS001")
    station.received_calls.clear()

    names = ["RateUnit", "PeriodsPerSchedule", "NoSuchThing", "ProfileStackLevel", "Entries"]
    reply = await client("operator").post("/api/stations/CS001/commands/get-variables", json={
        "variables": [{"component": "SmartChargingCtrlr", "variable": n} for n in names]})
    assert reply.status_code == 200, reply.text
    results = reply.json()["reply"]["getVariableResult"]
    # one answer per item, in the order asked, from three CALLs of at most two items
    assert [r["variable"]["name"] for r in results] == names
    assert [r["attributeStatus"] for r in results] == [
        "Accepted", "Accepted", "UnknownVariable", "Accepted", "Accepted"]
    assert list(station.received_calls) == ["GetVariables"] * 3

    station.received_calls.clear()
    reply = await client("operator").post("/api/stations/CS001/commands/set-variables", json={
        "variables": [
            {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "120"},
            {"component": "SmartChargingCtrlr", "variable": "LimitChangeSignificance",
             "value": "0.5"},
        ]})
    assert reply.status_code == 200, reply.text
    assert [r["attributeStatus"] for r in reply.json()["reply"]["setVariableResult"]] == [
        "Accepted", "Accepted"]
    assert list(station.received_calls) == ["SetVariables"] * 2


async def test_B06_bytes_per_message_splits_too(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    await csms.store.devices.upsert_variables("CS001", [Variable(
        "DeviceDataCtrlr", "", 0, 0, "BytesPerMessageGetVariables", "", "Actual", "300",
        "ReadOnly", "integer", None)], csms.clock.now())
    names = ["RateUnit", "PeriodsPerSchedule", "ProfileStackLevel", "Entries"]
    results = await csms.commands.get_variables(
        "CS001", [("SmartChargingCtrlr", n) for n in names])
    assert [r["variable"]["name"] for r in results] == names
    # items of 66-79 bytes in a frame of ~80: two per message
    assert list(station.received_calls).count("GetVariables") == 2


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, boot=replace(config.boot, retry_interval_s=1))


async def test_B03_an_operator_rejects_a_station_until_the_hold_is_lifted(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001", start=False)
    viewer, operator = client("viewer"), client("operator")
    assert (await viewer.put("/api/stations/CS001/boot-hold",
                             json={"hold": "Rejected"})).status_code == 403
    assert (await operator.put("/api/stations/CS404/boot-hold",
                               json={"hold": "Rejected"})).status_code == 404
    assert (await operator.put("/api/stations/CS001/boot-hold",
                               json={"hold": "Accepted"})).status_code == 422
    held = await operator.put("/api/stations/CS001/boot-hold", json={"hold": "Rejected"})
    assert held.status_code == 200 and held.json()["hold"] == "Rejected"

    await station.start()
    assert station.boot_status == "Rejected"
    with pytest.raises(CallFailed) as refused:  # B03: nothing but BootNotification
        await station.call("Heartbeat", {})
    assert refused.value.code == "SecurityError"
    record = await csms.store.stations.get("CS001")
    assert record is not None and record.boot_status == "Rejected"

    # Rejected again at the retry (interval 1 s), then let in once the hold is lifted.
    await asyncio.sleep(1.5)
    assert station.boot_status == "Rejected"
    lifted = await operator.put("/api/stations/CS001/boot-hold", json={"hold": None})
    assert lifted.json()["hold"] is None

    async def accepted() -> bool:
        return station.boot_status == "Accepted"

    await eventually(accepted, timeout=5)
    await station.call("Heartbeat", {})


async def test_B02_an_operator_holds_a_station_pending_to_provision_it(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001", start=False)
    operator = client("operator")
    await operator.put("/api/stations/CS001/boot-hold", json={"hold": "Pending"})
    await station.start()
    assert station.boot_status == "Pending"
    # the CSMS may provision a Pending station (B02.FR.02)
    reply = await operator.post("/api/stations/CS001/commands/set-variables", json={
        "variables": [{"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval",
                       "value": "120"}]})
    assert reply.status_code == 200, reply.text
    assert reply.json()["reply"]["setVariableResult"][0]["attributeStatus"] == "Accepted"
    await operator.put("/api/stations/CS001/boot-hold", json={"hold": None})

    async def accepted() -> bool:
        return station.boot_status == "Accepted"

    await eventually(accepted, timeout=5)


async def test_B07_base_report_is_stored_with_its_parts_until_complete(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.device_model.put("DeviceDataCtrlr", "ItemsPerMessageGetReport", "7")
    operator = client("operator")
    asked = await operator.post("/api/stations/CS001/commands/get-base-report",
                                json={"reportBase": "FullInventory"})
    assert asked.status_code == 200, asked.text
    request_id = asked.json()["request"]["requestId"]
    items = len(station.device_model.report("FullInventory"))

    async def complete() -> dict | None:
        got = await client("viewer").get(f"/api/stations/CS001/reports/{request_id}")
        body = got.json()
        return body if got.status_code == 200 and body["status"] == "Complete" else None

    report = await eventually(complete)
    assert report["kind"] == "base" and report["items"] == items
    assert report["parts"] == -(-items // 7) and report["last_seq_no"] == report["parts"] - 1
    assert report["request"] == {"requestId": request_id, "reportBase": "FullInventory"}
    listed = await client("viewer").get("/api/stations/CS001/reports")
    assert [r["request_id"] for r in listed.json()] == [request_id]
    assert (await client("viewer").get("/api/stations/CS001/reports/1")).status_code == 404
    assert (await client("viewer").get("/api/stations/CS001/reports/-1")).status_code == 422
