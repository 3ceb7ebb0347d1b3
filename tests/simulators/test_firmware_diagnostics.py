"""The station's side of blocks L and N over a real WebSocket against a scripted CSMS: the
refusals the spec names, and the notifications a station sends."""

from __future__ import annotations

import asyncio

LOCATION = "https://firmware.example/sim-22/2.0.0"


async def started(peer, stations):
    st = stations(peer.url)
    await st.start()
    return st


async def sent(peer, action: str, count: int, timeout: float = 5.0) -> list[dict]:
    async def poll() -> list[dict]:
        while True:
            found = [p for a, p in peer.received if a == action]
            if len(found) >= count:
                return found
            await asyncio.sleep(0.01)

    return await asyncio.wait_for(poll(), timeout)


async def test_L02_download_failed_after_the_stations_own_retries(peer, stations):
    st = await started(peer, stations)
    st.firmware.download_fails = True
    kind, reply = await peer.call("UpdateFirmware", {
        "requestId": 7, "retries": 1, "retryInterval": 5,
        "firmware": {"location": LOCATION, "retrieveDateTime": "2020-01-01T00:00:00Z"}})
    assert (kind, reply["status"]) == ("result", "Accepted")
    statuses = await sent(peer, "FirmwareStatusNotification", 3)
    assert [s["status"] for s in statuses] == ["Downloading", "Downloading", "DownloadFailed"]
    assert {s["requestId"] for s in statuses} == {7}
    assert peer.schema_problems == []


async def test_L01_an_invalid_signing_certificate_is_refused(peer, stations):
    await started(peer, stations)
    kind, reply = await peer.call("UpdateFirmware", {"requestId": 8, "firmware": {
        "location": LOCATION, "retrieveDateTime": "2020-01-01T00:00:00Z",
        "signature": "c2ln", "signingCertificate": "not a certificate"}})
    assert (kind, reply["status"]) == ("result", "InvalidCertificate")


async def test_N01_an_upload_location_that_is_not_http_is_rejected(peer, stations):
    await started(peer, stations)
    kind, reply = await peer.call("GetLog", {
        "requestId": 9, "logType": "DiagnosticsLog",
        "log": {"remoteLocation": "ftp://logs.example/in"}})
    assert (kind, reply["status"]) == ("result", "Rejected")


async def test_N01_a_failed_upload_ends_in_upload_failure(peer, stations):
    await started(peer, stations)
    kind, reply = await peer.call("GetLog", {
        "requestId": 10, "logType": "SecurityLog",
        "log": {"remoteLocation": "http://127.0.0.1:9/nothing-listens"}})
    assert kind == "result" and reply["filename"].endswith(".log")
    statuses = await sent(peer, "LogStatusNotification", 2)
    assert [s["status"] for s in statuses] == ["Uploading", "UploadFailure"]


def monitor(value: float, kind: str = "UpperThreshold") -> dict:
    return {"value": value, "type": kind, "severity": 3,
            "component": {"name": "ChargingStation"}, "variable": {"name": "SupplyPhases"}}


async def test_N04_more_monitors_than_items_per_message_is_an_occurrence_violation(
        peer, stations):
    await started(peer, stations)
    kind, code = await peer.call("SetVariableMonitoring",
                                 {"setMonitoringData": [monitor(i) for i in range(11)]})
    assert (kind, code) == ("error", "OccurrenceConstraintViolation")
    kind, reply = await peer.call("SetVariableMonitoring", {"setMonitoringData": [
        monitor(1), monitor(1), monitor(2, "Periodic"), monitor(0, "Periodic"),
        {**monitor(1), "id": 4242}]})
    assert [r["status"] for r in reply["setMonitoringResult"]] == [
        "Accepted", "Duplicate", "Accepted", "Rejected", "Rejected"]


async def test_N03_N05_monitoring_base_and_level(peer, stations):
    st = await started(peer, stations)
    await peer.call("SetVariableMonitoring", {"setMonitoringData": [monitor(1)]})
    assert (await peer.call("SetMonitoringLevel", {"severity": 2}))[1]["status"] == "Accepted"
    assert await st.report_value("ChargingStation", "SupplyPhases", 3) == 0  # severity 3 > 2
    assert (await peer.call("SetMonitoringLevel", {"severity": 12}))[1]["status"] == "Rejected"
    assert (await peer.call("SetMonitoringBase",
                            {"monitoringBase": "FactoryDefault"}))[1]["status"] == "Accepted"
    assert st.diagnostics.monitors == {}
    _, reply = await peer.call("GetMonitoringReport", {"requestId": 11})
    assert reply["status"] == "EmptyResultSet"
