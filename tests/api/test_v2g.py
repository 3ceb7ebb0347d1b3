"""V2G terms and accounting through the public surface (issue 15, CSMS side): a vehicle's
and a session's terms over HTTP, a 2.1 car's V2X parameters over a socket, and what the
car discharged, as the transactions API reports it from its meter values."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
import structlog

from csms import metrics
from csms.app import Csms
from tests.api import test_ocpp21
from tests.api.conftest import Client
from tests.raw_station import Raw

raw = test_ocpp21.raw  # the fixture: a raw OCPP 2.1 station

Payload = dict[str, Any]
NOW = "2026-12-05T08:00:00Z"
LATER = "2026-12-05T09:00:00Z"


def _registers(ts: str, imported_wh: float, exported_wh: float, soc: float) -> Payload:
    return {"timestamp": ts, "sampledValue": [
        {"value": imported_wh, "measurand": "Energy.Active.Import.Register",
         "unitOfMeasure": {"unit": "Wh"}},
        {"value": exported_wh / 1000.0, "measurand": "Energy.Active.Export.Register",
         "unitOfMeasure": {"unit": "kWh"}},
        {"value": soc, "measurand": "SoC", "unitOfMeasure": {"unit": "Percent"}},
    ]}


V2X_NEEDS: Payload = {
    "requestedEnergyTransfer": "AC_BPT",
    "availableEnergyTransfer": ["AC_single_phase", "AC_BPT"],
    "controlMode": "ScheduledControl",
    "departureTime": "2026-12-05T23:00:00Z",
    "v2xChargingParameters": {"maxDischargePower": 7000, "maxChargePower": 7400,
                              "evMinV2XEnergyRequest": -20000, "evTargetEnergyRequest": 12000},
}


async def start(station: Raw, tx: str, token: str) -> None:
    await station.boot("2.1")
    await station.ok("TransactionEvent", {
        "eventType": "Started", "timestamp": NOW, "triggerReason": "Authorized", "seqNo": 0,
        "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": token, "type": "ISO14443"},
        "meterValue": [_registers(NOW, 1000.0, 500.0, 60)],
    }, "2.1")


async def test_vehicle_terms_are_stored_bounded_and_unique_per_id_token(
    client: Client,
) -> None:
    operator = client("operator")
    put = await operator.put("/api/vehicles/car-1", json={
        "id_token": "TOK-V2G", "battery_kwh": 60, "v2g_opted_in": True,
        "v2g_mode": "backup_only", "min_soc": 0.3, "compensation_per_kwh": 0.8})
    assert put.status_code == 200, put.text
    assert put.json()["v2g_mode"] == "backup_only"
    got = (await operator.get("/api/vehicles/car-1")).json()
    assert got["min_soc"] == 0.3 and got["totals"] == {
        "discharged_kwh": 0.0, "cycles": None, "compensation": 0.0}
    listed = (await operator.get("/api/vehicles")).json()
    assert [v["id"] for v in listed] == ["car-1"]
    # one vehicle per id token
    taken = await operator.put("/api/vehicles/car-2", json={"id_token": "TOK-V2G"})
    assert taken.status_code == 409, taken.text
    # a viewer reads, never writes
    assert (await client("viewer").put("/api/vehicles/car-3", json={})).status_code == 403
    assert (await operator.delete("/api/vehicles/car-1")).status_code == 204
    assert (await operator.get("/api/vehicles/car-1")).status_code == 404


@pytest.mark.parametrize("body", [
    {"min_soc": 1.5},
    {"min_soc": -0.1},
    {"battery_kwh": 0},
    {"battery_kwh": 5000},
    {"compensation_per_kwh": -1},
    {"compensation_per_kwh": 1e6},
    {"v2g_mode": "sell_everything"},
    {"v2g_opted_in": "perhaps"},
    {"id_token": ""},
    {"colour": "red"},
])
async def test_bad_vehicle_terms_are_422_logged_and_counted(
    client: Client, body: Payload,
) -> None:
    route = "/api/vehicles/{vehicle_id}"
    before = metrics.api_refused.labels(route)._value.get()
    with structlog.testing.capture_logs() as logs:
        answer = await client("operator").put("/api/vehicles/car-1", json=body)
    assert answer.status_code == 422, answer.text
    assert metrics.api_refused.labels(route)._value.get() == before + 1
    assert any(e["event"] == "api.refused" and e["route"] == route for e in logs)


async def test_a_bad_vehicle_id_and_nan_are_422(client: Client) -> None:
    operator = client("operator")
    assert (await operator.put("/api/vehicles/bad%20id", json={})).status_code == 422
    assert (await operator.put("/api/vehicles/" + "x" * 65, json={})).status_code == 422
    nan = await operator.put("/api/vehicles/car-1", content=b'{"min_soc": NaN}',
                             headers={"Content-Type": "application/json"})
    assert nan.status_code == 422


async def test_session_terms_override_the_vehicles_and_the_car_reports_v2x(
    csms: Csms, client: Client, raw: Callable[..., Any],
) -> None:
    operator = client("operator")
    assert (await operator.put("/api/vehicles/car-1", json={
        "id_token": "TOK-V2G", "battery_kwh": 60, "v2g_opted_in": True,
        "v2g_mode": "export_allowed", "min_soc": 0.2,
        "compensation_per_kwh": 0.5})).status_code == 200
    replies = {"NotifyAllowedEnergyTransfer": {"status": "Accepted"}}
    async with raw("V21", ["ocpp2.1"], replies) as station:
        await start(station, "TX-V", "TOK-V2G")
        assert await station.ok("NotifyEVChargingNeeds", {
            "evseId": 1, "chargingNeeds": V2X_NEEDS}, "2.1") == {"status": "Accepted"}
        # the driver allows backup use only for this session, and a higher reserve
        put = await operator.put("/api/sessions/V21/TX-V/v2g", json={
            "mode": "backup_only", "min_soc": 0.4})
        assert put.status_code == 200, put.text
        seen = put.json()
        assert seen["vehicle_id"] == "car-1"
        assert seen["terms"] == {"opted_in": True, "mode": "backup_only", "min_soc": 0.4,
                                 "compensation_per_kwh": 0.5}
        assert seen["ev"]["bidirectional"] is True
        assert seen["ev"]["max_discharge_w"] == 7000
        assert seen["ev"]["min_v2x_energy_wh"] == -20000
        assert seen["ev"]["metered_soc"] == 60
        # Q01: the station is told at once which modes the car may use now
        assert seen["station_told"] == "Accepted"
        told = [p for a, p in station.received if a == "NotifyAllowedEnergyTransfer"]
        assert told == [{"transactionId": "TX-V",
                         "allowedEnergyTransfer": ["AC_single_phase", "AC_BPT"]}]
        out = await operator.put("/api/sessions/V21/TX-V/v2g", json={"opted_in": False})
        assert out.json()["terms"]["opted_in"] is False
        told = [p for a, p in station.received if a == "NotifyAllowedEnergyTransfer"]
        assert told[-1]["allowedEnergyTransfer"] == ["AC_single_phase"]
        tx = await csms.store.transactions.get("V21", "TX-V")
        assert tx is not None and tx.energy_wanted_wh == 12000  # evTargetEnergyRequest
        # bad session terms: 422; an unknown transaction: 404
        bad = await operator.put("/api/sessions/V21/TX-V/v2g", json={"min_soc": 2})
        assert bad.status_code == 422
        bad = await operator.put("/api/sessions/V21/TX-V/v2g", json={"mode": "sell"})
        assert bad.status_code == 422
        missing = await operator.put("/api/sessions/V21/NOPE/v2g", json={})
        assert missing.status_code == 404


async def test_accounting_from_the_export_register_per_transaction_and_vehicle(
    csms: Csms, client: Client, raw: Callable[..., Any],
) -> None:
    operator = client("operator")
    await operator.put("/api/vehicles/car-1", json={
        "id_token": "TOK-V2G", "battery_kwh": 60, "v2g_opted_in": True,
        "v2g_mode": "export_allowed", "compensation_per_kwh": 0.5})
    async with raw("V21", ["ocpp2.1"]) as station:
        await start(station, "TX-A", "TOK-V2G")
        # 1 h later: 3 kWh imported, 6 kWh exported (0.5 -> 6.5 kWh on the register)
        await station.ok("TransactionEvent", {
            "eventType": "Ended", "timestamp": LATER, "triggerReason": "EVDeparted",
            "seqNo": 1, "transactionInfo": {"transactionId": "TX-A",
                                            "stoppedReason": "EVDisconnected"},
            "meterValue": [_registers(LATER, 4000.0, 6500.0, 55)],
        }, "2.1")
        # an ended transaction takes no new terms
        ended = await operator.put("/api/sessions/V21/TX-A/v2g", json={"opted_in": False})
        assert ended.status_code == 409
    tx = (await operator.get("/api/transactions/V21/TX-A")).json()
    assert tx["vehicle_id"] == "car-1"
    assert tx["discharged_kwh"] == pytest.approx(6.0)
    assert tx["v2g_cycles"] == pytest.approx(0.1)
    assert tx["v2g_compensation"] == pytest.approx(3.0)
    listed = (await operator.get("/api/transactions", params={"station_id": "V21"})).json()
    assert listed[0]["discharged_kwh"] == pytest.approx(6.0)
    totals = (await operator.get("/api/vehicles/car-1")).json()["totals"]
    assert totals == {"discharged_kwh": 6.0, "cycles": 0.1, "compensation": 3.0}
    # the customer's data: exported with the vehicle, erased by unlinking it (0016)
    exported = await csms.store.customers.export("TOK-V2G", "ISO14443")
    assert [v["id"] for v in exported["vehicles"]] == ["car-1"]
    erased = await csms.store.customers.erase("TOK-V2G", "ISO14443")
    assert erased["vehicles_unlinked"] == 1
    assert (await operator.get("/api/vehicles/car-1")).json()["id_token"] is None


async def test_negative_v2x_magnitudes_from_a_car_are_property_constraint_violations(
    csms: Csms, raw: Callable[..., Any],
) -> None:
    before = metrics.errors.labels("PropertyConstraintViolation")._value.get()
    async with raw("V21", ["ocpp2.1"]) as station:
        await start(station, "TX-N", "TOK-X")
        bad = {**V2X_NEEDS, "v2xChargingParameters": {"maxDischargePower": -7000}}
        refused = await station.call("NotifyEVChargingNeeds",
                                     {"evseId": 1, "chargingNeeds": bad})
        assert refused[0] == 4 and refused[2] == "PropertyConstraintViolation", refused
        capacity = {"requestedEnergyTransfer": "DC_BPT", "dcChargingParameters": {
            "evMaxCurrent": 100, "evMaxVoltage": 400, "evEnergyCapacity": 0}}
        refused = await station.call("NotifyEVChargingNeeds",
                                     {"evseId": 1, "chargingNeeds": capacity})
        assert refused[0] == 4 and refused[2] == "PropertyConstraintViolation", refused
    assert metrics.errors.labels("PropertyConstraintViolation")._value.get() == before + 2
    assert (await csms.store.v2g.sessions([("V21", "TX-N")])) == {}


async def test_the_openapi_document_publishes_the_v2g_bounds(base_url: str) -> None:
    async with httpx.AsyncClient(base_url=base_url) as c:
        doc = (await c.get("/openapi.json")).json()
    body = doc["components"]["schemas"]["VehicleBody"]["properties"]
    assert body["min_soc"]["maximum"] == 1 and body["min_soc"]["minimum"] == 0
    assert "/api/sessions/{station_id}/{transaction_id}/v2g" in doc["paths"]


async def test_a_negative_limit_through_the_commands_api_never_reaches_a_201_station(
    client: Client, raw: Callable[..., Any],
) -> None:
    profile = {"id": 5, "stackLevel": 1, "chargingProfilePurpose": "TxDefaultProfile",
               "chargingProfileKind": "Absolute", "chargingSchedule": [{
                   "id": 5, "startSchedule": NOW, "chargingRateUnit": "W",
                   "chargingSchedulePeriod": [{"startPeriod": 0, "limit": -3000.0}]}]}
    replies = {"SetChargingProfile": {"status": "Accepted"}}
    operator = client("operator")
    route = "/api/stations/{station_id}/commands/set-charging-profile"
    before = metrics.api_refused.labels(route)._value.get()
    async with raw("NEW21", ["ocpp2.1"], replies) as new, \
            raw("OLD201", ["ocpp2.0.1"], replies) as old:
        await new.boot("2.1")
        await old.boot("2.0.1")
        body = {"evse_id": 1, "charging_profile": profile}
        refused = await operator.post("/api/stations/OLD201/commands/set-charging-profile",
                                      json=body)
        assert refused.status_code == 422, refused.text
        assert "2.0.1" in refused.text
        assert not any(a == "SetChargingProfile" for a, _ in old.received)
        assert metrics.api_refused.labels(route)._value.get() == before + 1
        sent = await operator.post("/api/stations/NEW21/commands/set-charging-profile",
                                   json=body)  # 2.1 keeps negative limits for old systems
        assert sent.status_code == 200, sent.text


async def test_q01_authorize_allows_bidirectional_modes_to_an_opted_in_vehicle_on_21(
    csms: Csms, client: Client, raw: Callable[..., Any],
) -> None:
    now = csms.clock.now()
    for token in ("TOK-V2G", "TOK-PLAIN"):
        await csms.store.tokens.add(token, "ISO14443", now)
    await client("operator").put("/api/vehicles/car-1", json={
        "id_token": "TOK-V2G", "battery_kwh": 60, "v2g_opted_in": True,
        "v2g_mode": "backup_only"})
    async with raw("NEW21", ["ocpp2.1"]) as new, raw("OLD201", ["ocpp2.0.1"]) as old:
        await new.boot("2.1")
        await old.boot("2.0.1")

        def authorize(token: str) -> Payload:
            return {"idToken": {"idToken": token, "type": "ISO14443"}}

        v2g = await new.ok("Authorize", authorize("TOK-V2G"), "2.1")
        assert v2g["idTokenInfo"]["status"] == "Accepted"
        assert {"AC_BPT", "DC_BPT", "AC_three_phase"} <= set(v2g["allowedEnergyTransfer"])
        plain = await new.ok("Authorize", authorize("TOK-PLAIN"), "2.1")
        assert "allowedEnergyTransfer" not in plain  # charging only
        old_answer = await old.ok("Authorize", authorize("TOK-V2G"), "2.0.1")
        assert "allowedEnergyTransfer" not in old_answer
