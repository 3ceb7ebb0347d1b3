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
    assert (await client("viewer").get(f"/api/stations/CS001/reports/{2**63}")).status_code == 422


async def test_B08_custom_report_by_criteria_and_component_variables(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await make_station("CS001")
    operator = client("operator")
    asked = await operator.post("/api/stations/CS001/commands/get-report", json={
        "componentCriteria": ["Enabled"],
        "componentVariable": [{"component": {"name": "SmartChargingCtrlr"}},
                              {"component": {"name": "AuthCtrlr"},
                               "variable": {"name": "MasterPassGroupId"}}]})
    assert asked.status_code == 200, asked.text
    assert asked.json()["reply"]["status"] == "Accepted"
    request_id = asked.json()["request"]["requestId"]

    async def complete() -> dict | None:
        body = (await client("viewer").get(f"/api/stations/CS001/reports/{request_id}")).json()
        return body if body.get("status") == "Complete" else None

    report = await eventually(complete)
    assert report["kind"] == "custom"
    assert report["request"]["componentCriteria"] == ["Enabled"]
    names = {(v.component, v.variable)
             for v in await csms.store.devices.variables("CS001", "AuthCtrlr")}
    assert ("AuthCtrlr", "MasterPassGroupId") in names
    smart = [v for v in await csms.store.devices.variables("CS001", "SmartChargingCtrlr")]
    assert report["items"] == len(smart) + 1

    nothing = await operator.post("/api/stations/CS001/commands/get-report", json={
        "componentVariable": [{"component": {"name": "NoSuchCtrlr"}}]})
    nothing_id = nothing.json()["request"]["requestId"]
    assert nothing.json()["reply"]["status"] == "EmptyResultSet"
    stored = (await client("viewer").get(f"/api/stations/CS001/reports/{nothing_id}")).json()
    assert stored["status"] == "EmptyResultSet" and stored["parts"] == 0


PROFILE = {"ocppVersion": "OCPP20", "ocppTransport": "JSON",
           "ocppCsmsUrl": "wss://csms.example.net:443/ocpp", "messageTimeout": 30,
           "securityProfile": 2, "ocppInterface": "Wired0"}


async def test_B09_B10_network_profile_stored_sent_prioritised_and_reset(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    admin, operator = client("admin"), client("operator")
    assert (await operator.put("/api/network-profiles/backup",
                               json={"connection_data": PROFILE})).status_code == 403
    bad = await admin.put("/api/network-profiles/backup",
                          json={"connection_data": {**PROFILE, "ocppVersion": "OCPP99"}})
    assert bad.status_code == 422
    made = await admin.put("/api/network-profiles/backup", json={"connection_data": PROFILE})
    assert made.status_code == 201 and made.json()["connection_data"] == PROFILE
    assert (await admin.put("/api/network-profiles/backup",
                            json={"connection_data": PROFILE})).status_code == 200
    assert [p["name"] for p in (await admin.get("/api/network-profiles")).json()] == ["backup"]
    assert (await admin.post("/api/stations/CS001/network-profiles",
                             json={"profile": "nope", "slot": 2})).status_code == 404

    sent = await admin.post("/api/stations/CS001/network-profiles",
                            json={"profile": "backup", "slot": 2, "reset": True})
    assert sent.status_code == 200, sent.text
    body = sent.json()
    assert (body["status"], body["priority"], body["priority_status"]) == (
        "Accepted", "2,1", "Accepted")
    assert body["reset_status"] == "Accepted"
    assert station.network_slots[2] == PROFILE
    assert station.device_model.value("OCPPCommCtrlr", "NetworkConfigurationPriority") == "2,1"

    async def rebooted() -> bool:  # B10: the reset makes it reconnect and boot again
        record = await csms.store.stations.get("CS001")
        return bool(record and record.boot_status == "Accepted" and station.connects >= 2)

    await eventually(rebooted)
    listed = (await admin.get("/api/stations/CS001/network-profiles")).json()
    assert [(r["slot"], r["profile"], r["status"]) for r in listed] == [(2, "backup", "Accepted")]

    # a downgrade below the profile in use is refused by the station, and nothing follows
    station.device_model.put("SecurityCtrlr", "SecurityProfile", "3")
    refused = (await admin.post("/api/stations/CS001/network-profiles",
                                json={"profile": "backup", "slot": 3})).json()
    assert (refused["status"], refused["priority"], refused["reset_status"]) == (
        "Rejected", None, None)
    assert 3 not in station.network_slots
    assert (await admin.delete("/api/network-profiles/backup")).status_code == 204


async def test_B12_reset_one_evse_keeps_the_station_running(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    from simulators.station import EvseSpec

    station = await make_station("CS001", evses=[EvseSpec(1), EvseSpec(2)])
    await csms.store.tokens.add("TOK", "ISO14443", csms.clock.now())
    assert await station.present_token(2, "TOK") == "Accepted"
    tx_id = station.transaction_id(2)
    operator = client("operator")

    idle = await operator.post("/api/stations/CS001/commands/reset",
                               json={"type": "OnIdle", "evse_id": 2})
    assert idle.json()["reply"]["status"] == "Scheduled"  # a transaction runs there
    assert (await operator.post("/api/stations/CS001/commands/reset",
                                json={"type": "Immediate", "evse_id": 9})).json()[
        "reply"]["status"] == "Rejected"
    now = await operator.post("/api/stations/CS001/commands/reset",
                              json={"type": "Immediate", "evse_id": 2})
    assert now.json()["reply"]["status"] == "Accepted"

    async def ended() -> bool:
        tx = await csms.store.transactions.get("CS001", str(tx_id))
        return tx is not None and tx.stopped_reason == "ImmediateReset"

    await eventually(ended)
    assert station.connects == 1  # the station did not restart
    await station.call("Heartbeat", {})


async def test_B08_get_report_is_split_by_items_per_message_get_report(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.device_model.put("DeviceDataCtrlr", "ItemsPerMessageGetReport", "2")
    await _report_limits(csms, "CS001")
    station.received_calls.clear()
    wanted = [{"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": n}}
              for n in ("RateUnit", "PeriodsPerSchedule", "Entries")]
    asked = await client("operator").post("/api/stations/CS001/commands/get-report",
                                          json={"componentVariable": wanted})
    assert asked.status_code == 200, asked.text
    assert asked.json()["reply"]["status"] == "Accepted"
    assert list(station.received_calls).count("GetReport") == 2

    async def both_complete() -> list[dict] | None:
        listed = (await client("viewer").get("/api/stations/CS001/reports")).json()
        custom = [r for r in listed if r["kind"] == "custom"]
        done = len(custom) == 2 and all(r["status"] == "Complete" for r in custom)
        return custom if done else None

    custom = await eventually(both_complete)
    assert sorted(r["items"] for r in custom) == [1, 2]
    assert asked.json()["request"]["requestId"] in {r["request_id"] for r in custom}


async def test_B11_an_on_idle_reset_waits_for_the_transaction_to_end(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    from simulators.ev import EV

    station = await make_station("CS001")
    await csms.store.tokens.add("TOK", "ISO14443", csms.clock.now())
    await station.plug_in(1, EV())
    assert await station.present_token(1, "TOK") == "Accepted"
    reply = await client("operator").post("/api/stations/CS001/commands/reset",
                                          json={"type": "OnIdle"})
    assert reply.json()["reply"]["status"] == "Scheduled"
    assert station.connects == 1  # charging goes on
    await station.unplug(1)

    async def rebooted() -> bool:
        record = await csms.store.stations.get("CS001")
        return station.connects == 2 and bool(record and record.boot_status == "Accepted")

    await eventually(rebooted)
