"""Block B over HTTP and real stations: message limits, boots an operator holds, reports,
network profiles and resets."""

from __future__ import annotations

from csms.app import Csms
from csms.store.devices import Variable
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
