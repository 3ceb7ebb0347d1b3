"""Block N over HTTP and OCPP: log uploads to the CSMS itself (N01), variable monitors and
their reports (N02-N06), events as alerts (N07/N08) and one customer's data (N09/N10),
against simulated stations."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import httpx
import pytest

from csms.app import Csms
from csms.config import Config, DiagnosticsConfig
from simulators.ev import EV
from simulators.station import CallFailed
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, diagnostics=DiagnosticsConfig(max_upload_bytes=4096))


async def log_request(client: Client, log_id: int) -> dict:
    return dict((await client("viewer").get(f"/api/log-requests/{log_id}")).json())


async def test_N01_get_log_is_uploaded_to_the_csms_and_downloadable(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    reply = await client("operator").post("/api/log-requests", json={
        "station_id": "CS001", "log_type": "DiagnosticsLog", "retries": 1})
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert created["reply_status"] == "Accepted"
    assert created["filename"] == f"CS001-DiagnosticsLog-{created['request_id']}.log"

    async def uploaded() -> dict | None:
        found = await log_request(client, created["id"])
        # the CSMS stores the file before the station's PUT returns: wait for both
        return found if (found["uploaded_at"] and found["status"] == "Uploaded"
                         and station.diagnostics.uploads) else None

    done = await eventually(uploaded)
    history = [h["status"] for h in done["history"]]
    assert history[0] == "Requested" and {"Accepted", "Uploading", "Uploaded"} <= set(history)
    url, sent = station.diagnostics.uploads[-1]
    assert done["size_bytes"] == len(sent)
    assert url.startswith(f"http://127.0.0.1:{csms.api.port}/api/log-uploads/{created['id']}/")

    file = await client("operator").get(f"/api/log-requests/{created['id']}/file")
    assert file.status_code == 200 and file.content == sent
    assert b"GetLog" in file.content
    assert created["filename"] in file.headers["content-disposition"]
    assert (await client("viewer").get(
        f"/api/log-requests/{created['id']}/file")).status_code == 403

    async with httpx.AsyncClient() as anyone:  # the URL was good for one upload only
        again = await anyone.put(url, content=b"replaced")
    assert again.status_code == 401
    assert (await client("operator").get(
        f"/api/log-requests/{created['id']}/file")).content == sent


async def test_N01_the_upload_endpoint_refuses_bad_tokens_and_oversized_logs(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.diagnostics.upload_fails = True  # the station tries nothing that works
    created = (await client("operator").post("/api/log-requests", json={
        "station_id": "CS001", "log_type": "SecurityLog"})).json()

    async def failed() -> dict | None:
        found = await log_request(client, created["id"])
        return found if found["status"] == "UploadFailure" else None

    await eventually(failed)
    url = station.diagnostics.uploads[-1][0]
    base = url.rsplit("/", 1)[0]
    async with httpx.AsyncClient() as http:
        assert (await http.put(f"{base}/{'x' * 43}", content=b"log")).status_code == 401
        assert (await http.put(url.replace(f"/{created['id']}/", "/999999/"),
                               content=b"log")).status_code == 401
        assert (await http.put(url, content=b"x" * 5000)).status_code == 413
        # a station that posts a form and appends its own file name
        form = await http.post(f"{url}/station%20log.txt",
                               files={"file": ("ignored.txt", b"line 1\nline 2\n")})
        assert form.status_code == 201, form.text
        assert (await http.post(url, content=b"again")).status_code == 401
    done = await log_request(client, created["id"])
    assert done["status"] == "Uploaded" and done["size_bytes"] == 14
    assert done["filename"] == "station_log.txt"
    file = await client("operator").get(f"/api/log-requests/{created['id']}/file")
    assert file.content == b"line 1\nline 2\n"


async def test_N01_get_log_to_an_offline_or_unknown_station(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await make_station("CS001", start=False)
    operator = client("operator")
    assert (await operator.post("/api/log-requests", json={
        "station_id": "CS001"})).status_code == 409
    assert (await operator.post("/api/log-requests", json={
        "station_id": "GHOST"})).status_code == 404
    assert (await operator.post("/api/log-requests", json={
        "station_id": "CS001", "log_type": "Everything"})).status_code == 422
    assert (await client("viewer").get("/api/log-requests")).json() == []


def monitor(component: str, variable: str, kind: str, value: float, severity: int,
            **extra: object) -> dict:
    return {"component": component, "variable": variable, "type": kind, "value": value,
            "severity": severity, **extra}


async def test_N04_N06_N02_monitors_are_set_reported_and_cleared(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator, viewer = client("operator"), client("viewer")
    reply = await operator.post("/api/stations/CS001/monitors", json={"monitors": [
        monitor("EVSE", "Power", "UpperThreshold", 20000, 2, evse_id=1),
        monitor("NoSuchCtrlr", "Power", "UpperThreshold", 1, 2),
        monitor("ChargingStation", "NoSuchVariable", "Delta", 1, 5),
        monitor("ChargingStation", "SupplyPhases", "Delta", -1, 5),
        monitor("OCPPCommCtrlr", "HeartbeatInterval", "Delta", 10, 7),
    ]})
    assert reply.status_code == 200, reply.text
    statuses = [r["status"] for r in reply.json()["results"]]
    assert statuses == ["Accepted", "UnknownComponent", "UnknownVariable", "Rejected",
                        "Accepted"]
    known = (await viewer.get("/api/stations/CS001/monitors")).json()
    assert [(m["component"], m["variable"], m["value"], m["severity"], m["evse_id"])
            for m in known] == [("EVSE", "Power", 20000, 2, 1),
                                ("OCPPCommCtrlr", "HeartbeatInterval", 10, 7, None)]
    assert set(station.diagnostics.monitors) == {m["monitor_id"] for m in known}

    for extra in range(5):  # enough for a report in several parts (4 per part)
        await operator.post("/api/stations/CS001/monitors", json={"monitors": [
            monitor("ChargingStation", "SupplyPhases", "UpperThreshold", 3 + extra, 6)]})
    report = await operator.post("/api/stations/CS001/monitoring-reports", json={})
    assert report.status_code == 201, report.text
    report_id = report.json()["id"]

    async def complete() -> dict | None:
        found = (await viewer.get(
            f"/api/stations/CS001/monitoring-reports/{report_id}")).json()
        return found if found["complete"] else None

    done = await eventually(complete)
    assert done["reply_status"] == "Accepted" and done["parts"] == 2
    assert len(done["monitors"]) == 7
    assert {m["source"] for m in (await viewer.get(
        "/api/stations/CS001/monitors")).json()} == {"report"}

    filtered = await operator.post("/api/stations/CS001/monitoring-reports",
                                   json={"criteria": ["PeriodicMonitoring"]})
    assert filtered.json()["reply_status"] == "EmptyResultSet"
    assert filtered.json()["complete"] is True

    first = known[0]["monitor_id"]
    cleared = await operator.delete(f"/api/stations/CS001/monitors/{first}")
    assert cleared.json()["results"] == [{"id": first, "status": "Accepted"}]
    assert first not in station.diagnostics.monitors
    unknown = await operator.delete("/api/stations/CS001/monitors/4242")
    assert unknown.json()["results"][0]["status"] == "NotFound"
    assert first not in {m["monitor_id"] for m in (await viewer.get(
        "/api/stations/CS001/monitors")).json()}

    for bad in ({"monitors": []},
                {"monitors": [monitor("EVSE", "Power", "Sometimes", 1, 2)]},
                {"monitors": [monitor("EVSE", "Power", "Delta", 1, 10)]},
                {"monitors": [monitor("EVSE", "Power", "Delta", 1e300, 1)]},
                {"monitors": [monitor("EVSE", "Power", "Delta", 1, 1, connector_id=1)]}):
        assert (await operator.post("/api/stations/CS001/monitors",
                                    json=bad)).status_code == 422
    assert (await operator.post("/api/stations/GHOST/monitors", json={"monitors": [
        monitor("EVSE", "Power", "Delta", 1, 1)]})).status_code == 404


async def test_N04_set_variable_monitoring_is_split_to_items_per_message(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator = client("operator")
    await operator.post("/api/stations/CS001/commands/get-variables", json={"variables": [
        {"component": "MonitoringCtrlr", "variable": "ItemsPerMessageSetVariableMonitoring"}]})
    many = [monitor("ChargingStation", "SupplyPhases", "UpperThreshold", i, 5)
            for i in range(1, 13)]  # 12 > the station's 10
    reply = await operator.post("/api/stations/CS001/monitors", json={"monitors": many})
    assert reply.status_code == 200, reply.text
    assert [r["status"] for r in reply.json()["results"]] == ["Accepted"] * 12
    assert list(station.received_calls).count("SetVariableMonitoring") == 2
    assert len((await client("viewer").get("/api/stations/CS001/monitors")).json()) == 12


async def test_N07_N08_events_become_alerts_with_the_monitors_severity(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator, viewer = client("operator"), client("viewer")
    await operator.post("/api/stations/CS001/monitors", json={"monitors": [
        monitor("EVSE", "Power", "UpperThreshold", 20000, 1, evse_id=1),
        monitor("EVSE", "Power", "UpperThreshold", 30000, 8, evse_id=1)]})
    assert await station.report_value("EVSE", "Power", 25000.0) == 1
    assert await station.report_value("EVSE", "Power", 35000.0) == 2
    await station.call("NotifyEvent", {
        "generatedAt": "2026-12-04T12:00:00Z", "seqNo": 0, "eventData": [{
            "eventId": 99, "timestamp": "2026-12-04T12:00:00Z", "trigger": "Alerting",
            "actualValue": "Faulted", "eventNotificationType": "HardWiredNotification",
            "component": {"name": "Connector", "evse": {"id": 1, "connectorId": 1}},
            "variable": {"name": "AvailabilityState"}, "techCode": "E42"}]})

    alerts = (await viewer.get("/api/alerts", params={"station_id": "CS001"})).json()
    assert len(alerts) == 4
    assert sorted((a["severity"] is None, a["severity"]) for a in alerts) == [
        (False, 1), (False, 1), (False, 8), (True, None)]
    hard_wired = next(a for a in alerts if a["severity"] is None)
    assert hard_wired["tech_code"] == "E42" and hard_wired["connector_id"] == 1
    severe = (await viewer.get("/api/alerts", params={"max_severity": 4})).json()
    assert {a["severity"] for a in severe} == {1}
    assert (await viewer.get("/api/alerts", params={"max_severity": 10})).status_code == 422

    with pytest.raises(CallFailed) as refused:  # an id no 32-bit integer holds
        await station.call("NotifyEvent", {
            "generatedAt": "2026-12-04T12:00:00Z", "seqNo": 0, "eventData": [{
                "eventId": 2**40, "timestamp": "2026-12-04T12:00:00Z", "trigger": "Alerting",
                "actualValue": "x", "eventNotificationType": "CustomMonitor",
                "component": {"name": "EVSE"}, "variable": {"name": "Power"}}]})
    assert refused.value.code == "PropertyConstraintViolation"
    assert len((await viewer.get("/api/alerts")).json()) == 4


async def test_N09_N10_customer_information_is_exported_then_erased(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await csms.store.tokens.add("CUST01", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    await station.plug_in(1, EV(battery_kwh=60, soc=0.2, energy_wanted_wh=30_000))
    assert await station.present_token(1, "CUST01", "ISO14443") == "Accepted"
    transaction_id = station.transaction_id(1)
    admin, viewer = client("admin"), client("viewer")

    async def tx_token() -> str | None:
        tx = await csms.store.transactions.get("CS001", transaction_id)
        return tx.id_token if tx else None

    assert await eventually(tx_token) == "CUST01"
    who = {"id_token": "CUST01", "token_type": "ISO14443"}
    assert (await client("operator").post("/api/customer-information",
                                          json=who)).status_code == 403
    reply = await admin.post("/api/customer-information", json={**who, "report": True})
    assert reply.status_code == 201, reply.text
    report = reply.json()
    assert report["csms_export"]["id_token"]["id_token"] == "CUST01"
    assert [t["transaction_id"] for t in report["csms_export"]["transactions"]] == [
        transaction_id]

    async def station_data(request_id: int) -> dict | None:
        found = (await admin.get(f"/api/customer-information/{request_id}")).json()
        return found if all(s["complete"] for s in found["stations"]) else None

    told = await eventually(lambda: station_data(report["id"]))
    assert told["stations"][0]["reply_status"] == "Accepted"
    assert f"transaction {transaction_id}" in told["stations"][0]["data"]

    held = await client("operator").post("/api/reservations", json={
        "station_id": "CS001", "evse_id": 1, "id_token": "CUST01", "token_type": "ISO14443",
        "expires_at": (csms.clock.now() + timedelta(hours=1)).isoformat()})
    assert held.status_code == 201, held.text  # answered Occupied, stored with its answer
    erased = (await admin.post("/api/customer-information",
                               json={**who, "report": True, "clear": True})).json()
    assert erased["id_token"] is None and erased["csms_export"] is not None
    assert erased["csms_cleared"] == {"transactions_anonymised": 1,
                                      "transaction_events_anonymised": 1,
                                      "id_tokens_deleted": 1, "earlier_requests_deleted": 1,
                                      "reservations_deleted": 1, "vehicles_unlinked": 0}
    assert (await viewer.get(f"/api/reservations/{held.json()['id']}")).status_code == 404
    assert (await admin.get(f"/api/customer-information/{report['id']}")).status_code == 404
    kept = (await admin.get(f"/api/customer-information/{erased['id']}")).json()
    assert kept["csms_export"] is None and kept["id_token"] is None

    assert await tx_token() is None  # the transaction stays, for billing, without the token
    tx = (await viewer.get(f"/api/transactions/CS001/{transaction_id}")).json()
    assert tx["station_id"] == "CS001" and tx["id_token"] is None
    assert (await viewer.get("/api/transactions", params={"id_token": "CUST01"})).json() == []
    assert await csms.store.tokens.get("CUST01", "ISO14443") is None
    events = await csms.store.pool.fetch(
        "SELECT payload FROM transaction_events WHERE transaction_id = $1", transaction_id)
    assert events and all("CUST01" not in e["payload"] for e in events)
    station_tx = station.evses[1].tx
    assert station_tx is not None and station_tx.id_token is None  # cleared at the station

    for bad in ({"report": True}, {"id_token": "X", "report": True},
                {**who, "report": False, "clear": False},
                {**who, "token_type": "Passport"}):
        assert (await admin.post("/api/customer-information", json=bad)).status_code == 422


async def test_N04_N06_monitors_set_through_the_command_route_stay_known(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await make_station("CS001")
    operator, viewer = client("operator"), client("viewer")
    reply = await operator.post("/api/stations/CS001/commands/set-variable-monitoring", json={
        "setMonitoringData": [{"value": 5, "type": "Delta", "severity": 4,
                               "component": {"name": "ChargingStation"},
                               "variable": {"name": "SupplyPhases"}}]})
    assert reply.status_code == 200, reply.text
    monitor_id = reply.json()["reply"]["setMonitoringResult"][0]["id"]
    known = (await viewer.get("/api/stations/CS001/monitors")).json()
    assert [(m["monitor_id"], m["value"], m["type"]) for m in known] == [
        (monitor_id, 5, "Delta")]
    cleared = await operator.post("/api/stations/CS001/commands/clear-variable-monitoring",
                                  json={"id": [monitor_id]})
    assert cleared.status_code == 200, cleared.text
    assert (await viewer.get("/api/stations/CS001/monitors")).json() == []


async def test_N03_a_factory_default_monitoring_base_forgets_the_monitors_the_csms_set(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator, viewer = client("operator"), client("viewer")
    await operator.post("/api/stations/CS001/monitors", json={"monitors": [
        monitor("ChargingStation", "SupplyPhases", "Delta", 1, 5)]})
    reply = await operator.post("/api/stations/CS001/commands/set-monitoring-base",
                                json={"monitoringBase": "FactoryDefault"})
    assert reply.json()["reply"]["status"] == "Accepted"
    assert station.diagnostics.monitors == {}
    assert (await viewer.get("/api/stations/CS001/monitors")).json() == []


async def test_N01_get_log_through_the_command_route_is_tracked(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.diagnostics.upload_fails = True
    reply = await client("operator").post("/api/stations/CS001/commands/get-log", json={
        "logType": "DiagnosticsLog", "requestId": 4711,
        "log": {"remoteLocation": "https://logs.example/in"}})
    assert reply.status_code == 200, reply.text
    listed = (await client("viewer").get("/api/log-requests")).json()
    assert [(r["request_id"], r["created_by"]) for r in listed] == [(4711, "command")]

    async def failed() -> dict | None:
        found = await log_request(client, listed[0]["id"])
        return found if found["status"] == "UploadFailure" else None

    await eventually(failed)
