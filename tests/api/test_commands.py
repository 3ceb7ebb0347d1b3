"""Commands to a station over HTTP: the station's reply, or a clear error when it is
unknown (404), offline (409), silent (504) or answers with a CALLERROR (502)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from csms.app import Csms
from csms.config import Config
from simulators.ev import EV
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, server=replace(config.server, call_timeout_s=1.0))  # a quick 504


def tx_default(limit_a: float, profile_id: int = 7) -> dict:
    return {
        "id": profile_id, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [{
            "id": 1, "chargingRateUnit": "A", "startSchedule": "2026-01-01T00:00:00Z",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit_a}],
        }],
    }


async def test_every_command_answers_with_the_station_reply(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator = client("operator")

    async def command(name: str, body: dict) -> dict:
        reply = await operator.post(f"/api/stations/CS001/commands/{name}", json=body)
        assert reply.status_code == 200, (name, reply.text)
        result = reply.json()
        assert result["station_id"] == "CS001"
        return dict(result["reply"])

    got = await command("get-variables", {"variables": [
        {"component": "SmartChargingCtrlr", "variable": "RateUnit"},
        {"component": "SmartChargingCtrlr", "variable": "NoSuchThing"},
    ]})
    assert [r["attributeStatus"] for r in got["getVariableResult"]] == [
        "Accepted", "UnknownVariable"]
    set_ = await command("set-variables", {"variables": [
        {"component": "OCPPCommCtrlr", "variable": "HeartbeatInterval", "value": "120"}]})
    assert set_["setVariableResult"][0]["attributeStatus"] == "Accepted"
    assert (await command("trigger-message", {"requested_message": "Heartbeat"}))[
        "status"] == "Accepted"
    assert (await command("set-charging-profile",
                          {"evse_id": 0, "charging_profile": tx_default(16)}))[
        "status"] == "Accepted"
    assert station.composite_limit(1) == (16.0, "A")
    composite = await command("get-composite-schedule",
                              {"evse_id": 1, "duration_s": 3600, "charging_rate_unit": "A"})
    assert composite["schedule"]["chargingSchedulePeriod"][0]["limit"] == 16
    assert (await command("clear-charging-profile", {"charging_profile_id": 7}))[
        "status"] == "Accepted"
    assert station.composite_limit(1) is None

    await station.plug_in(1, EV())
    assert (await command("request-start-transaction",
                          {"id_token": "REMOTE", "evse_id": 1}))["status"] == "Accepted"

    async def charging() -> str | None:
        return station.transaction_id(1) if station.power_w(1) > 0 else None

    transaction_id = await eventually(charging)
    assert (await command("request-stop-transaction",
                          {"transaction_id": transaction_id}))["status"] == "Accepted"
    assert (await command("unlock-connector", {"evse_id": 1}))["status"] in (
        "Unlocked", "UnlockFailed", "OngoingAuthorizedTransaction")
    assert (await command("change-availability", {"operational": False, "evse_id": 1}))[
        "status"] in ("Accepted", "Scheduled")
    assert (await command("reset", {"type": "OnIdle"}))["status"] in ("Accepted", "Scheduled")


async def test_command_errors(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    unknown = await operator.post("/api/stations/GHOST/commands/reset", json={})
    assert unknown.status_code == 404

    station = await make_station("CS001", start=False)  # provisioned, not connected
    offline = await operator.post("/api/stations/CS001/commands/reset", json={})
    assert offline.status_code == 409
    assert offline.json() == {"detail": "station CS001 is not connected", "code": None}

    await station.start()
    station.drop_responses = True  # it acts on the call but never answers
    silent = await operator.post("/api/stations/CS001/commands/trigger-message",
                                 json={"requested_message": "Heartbeat"})
    assert silent.status_code == 504, silent.text
    assert "did not answer TriggerMessage" in silent.json()["detail"]
    station.drop_responses = False

    del station._handlers["Reset"]  # the station now answers Reset with NotImplemented
    failed = await operator.post("/api/stations/CS001/commands/reset", json={})
    assert failed.status_code == 502
    assert failed.json()["code"] == "NotImplemented"
    assert "NotImplemented" in failed.json()["detail"]

    for name, body, field in [
        ("reset", {"type": "Sometime"}, "type"),
        ("unlock-connector", {}, "evse_id"),
        ("get-variables", {"variables": []}, "variables"),
        ("trigger-message", {"requested_message": "Coffee"}, "requested_message"),
        ("get-composite-schedule", {"evse_id": 1, "duration_s": -1}, "duration_s"),
        ("set-charging-profile", {"evse_id": 1, "charging_profile": {"id": 1}},
         "charging_profile"),  # refused by the OCPP schema, never sent
    ]:
        bad = await operator.post(f"/api/stations/CS001/commands/{name}", json=body)
        assert bad.status_code == 422, (name, bad.text)
        assert bad.json()["detail"][0]["loc"][-1] == field, bad.json()
    assert "SetChargingProfile" not in station.received_calls
