"""V2G planned and sent (issue 15): a transformer whose household load alone is over its
limit (a DSO's timed limit for the next two hours), two opted-in cars, one on a
bidirectional OCPP 2.1 station, one on a 2.0.1 station that the site file also calls
bidirectional. Over real sockets: the 2.1 station gets a TxProfile that discharges
(CentralSetpoint, a negative setpoint within its dischargeLimit); the 2.0.1 station never
gets a negative limit or a 2.1 field."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from csms.app import Csms
from csms.clock import SystemClock
from csms.config import Config, SchedulerConfig
from csms.ocpp.schemas import validate_request
from tests.api import test_ocpp21
from tests.api.conftest import Client
from tests.raw_station import Raw
from tests.support import eventually

raw = test_ocpp21.raw  # the fixture: a raw OCPP station (2.1 or 2.0.1)

Payload = dict[str, Any]
REPLIES: Payload = {"SetChargingProfile": {"status": "Accepted"}}
SITE = """
[site]
utc_offset = "+00:00"
default_departure = "{departure}"
default_energy_kwh = 5.0

[[nodes]]
id = "transformer"
kind = "transformer"
limit_kw = 30.0
load_kw_daily = [8.0]

[[nodes.timed_limits]]
start = "{start}"
end = "{end}"
limit_kw = 4.0

[[evses]]
id = "bidi-21"
node = "transformer"
station_id = "V2G21"
phases = ["L1"]
max_current_a = 32
rate_unit = "W"
v2g = true
max_discharge_kw = 7.0

[[evses]]
id = "dev-21"
node = "transformer"
station_id = "DEV21"
phases = ["L3"]
max_current_a = 32
rate_unit = "W"

[[evses]]
id = "bidi-201"
node = "transformer"
station_id = "V2G201"
phases = ["L2"]
max_current_a = 32
rate_unit = "W"
v2g = true
max_discharge_kw = 7.0
"""


def _iso(t: datetime) -> str:
    return t.isoformat(timespec="seconds").replace("+00:00", "Z")


@pytest.fixture
def config(config: Config, tmp_path: Path) -> Config:
    """The scheduler on, planning the street above on every event (no interval wait)."""
    now = SystemClock().now()
    site = tmp_path / "sites" / "v2g-street.toml"
    site.parent.mkdir()
    # cars without a departure of their own leave 8 h from now, whatever the hour: with a
    # fixed one (07:30) the cars could not recharge what they lend after the limit ends in
    # the hours before it, and the test failed then
    site.write_text(SITE.format(start=_iso(now - timedelta(minutes=30)),
                                end=_iso(now + timedelta(hours=2)),
                                departure=(now + timedelta(hours=8)).strftime("%H:%M")))
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(site),), interval_s=3600, debounce_s=0.05,
        learn_departures_days=0))


async def _plug_in(station: Raw, version: str, tx: str, token: str, now: datetime) -> None:
    await station.boot(version)
    await station.ok("TransactionEvent", {
        "eventType": "Started", "timestamp": _iso(now), "triggerReason": "Authorized",
        "seqNo": 0, "transactionInfo": {"transactionId": tx, "chargingState": "Charging"},
        "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": token, "type": "ISO14443"},
        "meterValue": [{"timestamp": _iso(now), "sampledValue": [
            {"value": 1000.0, "measurand": "Energy.Active.Import.Register",
             "unitOfMeasure": {"unit": "Wh"}},
            {"value": 80, "measurand": "SoC", "unitOfMeasure": {"unit": "Percent"}}]}],
    }, version)


def _tx_profiles(station: Raw, tx: str) -> list[Payload]:
    return [p["chargingProfile"] for a, p in station.received if a == "SetChargingProfile"
            and p["chargingProfile"].get("transactionId") == tx]


async def test_an_opted_in_car_on_a_21_station_discharges_for_an_overloaded_transformer(
    csms: Csms, client: Client, raw: Callable[..., Any],
) -> None:
    operator = client("operator")
    for car, token in (("car-21", "TOK-21"), ("car-201", "TOK-201")):
        put = await operator.put(f"/api/vehicles/{car}", json={
            "id_token": token, "battery_kwh": 60, "v2g_opted_in": True,
            "v2g_mode": "export_allowed", "min_soc": 0.2, "compensation_per_kwh": 0.6})
        assert put.status_code == 200, put.text
    now = csms.clock.now().replace(microsecond=0)
    async with raw("V2G21", ["ocpp2.1"], REPLIES) as new, \
            raw("V2G201", ["ocpp2.0.1"], REPLIES) as old:
        await _plug_in(old, "2.0.1", "TX-201", "TOK-201", now)
        await _plug_in(new, "2.1", "TX-21", "TOK-21", now)
        assert await new.ok("NotifyEVChargingNeeds", {"evseId": 1, "chargingNeeds": {
            "requestedEnergyTransfer": "AC_BPT",
            "availableEnergyTransfer": ["AC_single_phase", "AC_BPT"],
            "departureTime": _iso(now + timedelta(hours=8)),
            "v2xChargingParameters": {"maxDischargePower": 7000, "maxChargePower": 7360,
                                      "evTargetEnergyRequest": 5000}}}, "2.1") == {
            "status": "Accepted"}

        async def discharging() -> list[Payload]:
            return [p for p in _tx_profiles(new, "TX-21")
                    if p["chargingSchedule"][0]["chargingSchedulePeriod"][0].get(
                        "setpoint", 0) < 0]

        profile = (await eventually(discharging, timeout=30))[-1]

        async def both_planned() -> bool:
            plans = await csms.store.plans.list("v2g-street", limit=100)
            return any(p.sessions == 2 for p in plans)

        assert await eventually(both_planned, timeout=30)
        first = profile["chargingSchedule"][0]["chargingSchedulePeriod"][0]
        assert first["operationMode"] == "CentralSetpoint"
        assert first["limit"] == 0.0
        # relieves what the household has the transformer over by (8 kW on a 4 kW limit)
        assert -7000.0 <= first["dischargeLimit"] == first["setpoint"] <= -4000.0
        plans = await csms.store.plans.list("v2g-street", limit=100)

        # the flexibility forecast counts what the 2.1 car can lend: once the timed limit
        # is over, the site can shed more than it draws, by up to the car's 7 kW
        got = await client("viewer").get("/api/sites/v2g-street/flexibility?hold_minutes=60")
        assert got.status_code == 200, got.text
        after = [i for i in got.json()["intervals"]
                 if datetime.fromisoformat(i["start"]) >= now + timedelta(hours=2, minutes=15)
                 and datetime.fromisoformat(i["end"]) <= now + timedelta(hours=6)]
        lent = max(i["shed_kw"]["p50"] - i["baseline_kw"]["p50"] for i in after)
        assert 5.0 < lent <= 7.0 + 1e-6

    # the 2.0.1 station: its default profile (0 W: no headroom today) and any TxProfile
    # never negative, never a 2.1 field; its car is planned charge-only
    sent = [p["chargingProfile"] for a, p in old.received if a == "SetChargingProfile"]
    assert sent
    for profile in sent:
        for period in profile["chargingSchedule"][0]["chargingSchedulePeriod"]:
            assert period["limit"] >= 0
            assert not {"setpoint", "dischargeLimit", "operationMode"} & set(period)
    for plan in plans:
        if "bidi-201" in plan.schedule:
            assert all(w >= 0 for _, _, w in plan.schedule["bidi-201"]["setpoints"])
    for action, payload in new.received:  # what the 2.1 station got is valid 2.1
        validate_request(action, payload, version="2.1")
    latest = max((p for p in plans if p.sessions == 2), key=lambda p: p.id)
    why = {s["session_id"]: s["v2g"] for s in latest.inputs["sessions"]}
    assert why == {"TX-21": "planned", "TX-201": "EVSE not bidirectional"}


async def test_a_21_station_whose_device_model_says_bidirectional_is_discharged(
    csms: Csms, client: Client, raw: Callable[..., Any],
) -> None:
    """The site file says nothing of V2G here: the CSMS asks the station's
    V2XChargingCtrlr (GetVariables, per EVSE) and believes its answer."""
    put = await client("operator").put("/api/vehicles/car-d", json={
        "id_token": "TOK-D", "battery_kwh": 60, "v2g_opted_in": True,
        "v2g_mode": "export_allowed", "min_soc": 0.2})
    assert put.status_code == 200, put.text

    def get_variables(request: Payload) -> Payload:
        """Only V2XChargingCtrlr.Enabled is known (true); anything else UnknownComponent."""
        return {"getVariableResult": [
            {**item, "attributeStatus": "Accepted", "attributeValue": "true"}
            if (item["component"]["name"], item["variable"]["name"]) == (
                "V2XChargingCtrlr", "Enabled")
            else {**item, "attributeStatus": "UnknownComponent"}
            for item in request["getVariableData"]]}

    replies = {**REPLIES, "GetVariables": get_variables}
    now = csms.clock.now().replace(microsecond=0)
    async with raw("DEV21", ["ocpp2.1"], replies) as station:
        await _plug_in(station, "2.1", "TX-D", "TOK-D", now)

        async def discharging() -> list[Payload]:
            return [p for p in _tx_profiles(station, "TX-D")
                    if p["chargingSchedule"][0]["chargingSchedulePeriod"][0].get(
                        "setpoint", 0) < 0]

        assert await eventually(discharging, timeout=30)
    asked = [p for a, p in station.received if a == "GetVariables"
             and p["getVariableData"][0]["component"]["name"] == "V2XChargingCtrlr"]
    assert len(asked) == 1  # once on this connection
    stored = await csms.store.devices.variables("DEV21", "V2XChargingCtrlr")
    assert [(v.evse_id, v.variable, v.value) for v in stored] == [(1, "Enabled", "true")]
