"""V2X over OCPP 2.1 (Part 2 block Q): a bidirectional station discharges under the composite
schedule and meters the export; one that cannot discharge rejects V2X profiles with the
spec's reason codes. Over a real WebSocket against a scripted 2.1 (or 2.0.1) CSMS peer that
checks every payload against its version's schemas."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from pathlib import Path

import pytest

from simulators.clock import AcceleratedClock, to_ocpp
from simulators.ev import EV
from simulators.fleet import Fleet
from simulators.scenario import draw_sessions, load_scenario
from simulators.station import EvseSpec
from tests.simulators.peer import ScriptedCsms
from tests.simulators.test_station import eventually

V2X_EVSE = EvseSpec(1, phases=3, max_current_a=16.0, bidirectional=True,
                    max_discharge_power_w=11_000.0)


BPT = ["AC_single_phase", "AC_three_phase", "AC_BPT", "DC", "DC_BPT"]


@pytest.fixture
async def peer21():
    """A 2.1 CSMS that allows every token's transaction bidirectional transfer (Q01)."""
    csms = ScriptedCsms(version="2.1")
    csms.answers["Authorize"] = lambda p: {"idTokenInfo": {"status": "Accepted"},
                                           "allowedEnergyTransfer": BPT}
    await csms.start()
    yield csms
    await csms.stop()
    assert csms.schema_problems == [], csms.schema_problems


def profile(tx_id: str, periods: list[dict], pid: int = 20, start=None, **extra) -> dict:
    schedule: dict = {"id": pid, "chargingRateUnit": "W", "chargingSchedulePeriod": periods}
    kind = "Relative"
    if start is not None:
        schedule["startSchedule"] = to_ocpp(start)
        kind = "Absolute"
    return {
        "id": pid,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": kind,
        "transactionId": tx_id,
        "chargingSchedule": [schedule],
        **extra,
    }


async def v2x_session(peer, stations, ev: EV, **spec):
    spec.setdefault("evses", [V2X_EVSE])
    spec.setdefault("ocpp_version", "2.1")
    st = stations(peer.url, **spec)
    await st.start()
    await st.plug_in(1, ev)
    assert await st.present_token(1, "TOKEN1") == "Accepted"
    return st


def sampled(event: dict, measurand: str) -> float | None:
    for mv in event.get("meterValue", []):
        for sv in mv["sampledValue"]:
            if sv.get("measurand") == measurand:
                return sv["value"]
    return None


async def test_Q_21_station_offers_ocpp21_and_reports_v2x_needs(peer21, stations):
    ev = EV(battery_kwh=60, soc=0.6, min_soc=0.3, bidirectional=True, energy_wanted_wh=6000)
    st = await v2x_session(peer21, stations, ev)
    assert st.ocpp_version == "2.1"
    (needs,) = await peer21.wait_for("NotifyEVChargingNeeds")
    cn = needs["chargingNeeds"]
    assert cn["requestedEnergyTransfer"] == "AC_BPT"
    v2x = cn["v2xChargingParameters"]
    assert v2x["maxDischargePower"] == 11_000.0
    assert v2x["evMinV2XEnergyRequest"] == pytest.approx(-18_000.0)  # 30 % of 60 kWh above
    assert v2x["evTargetEnergyRequest"] == 6000.0
    assert cn["evEnergyOffer"]["evPowerSchedule"]["evPowerScheduleEntries"][0]["power"] < 0
    got = await peer21.result("GetVariables", {"getVariableData": [{
        "component": {"name": "V2XChargingCtrlr", "evse": {"id": 1}},
        "variable": {"name": "SupportedOperationModes"}}]})
    assert "CentralSetpoint" in got["getVariableResult"][0]["attributeValue"]


async def test_Q_negative_limit_discharges_and_the_meter_counts_export(peer21, stations):
    ev = EV(battery_kwh=60, soc=0.6, min_soc=0.3, bidirectional=True, energy_wanted_wh=6000)
    st = await v2x_session(peer21, stations, ev, meter_interval_s=60)
    tx = st.transaction_id(1)
    assert st.power_w(1) > 0
    answer = await peer21.result("SetChargingProfile", {
        "evseId": 1, "chargingProfile": profile(tx, [{"startPeriod": 0, "limit": -7000.0}])})
    assert answer["status"] == "Accepted"
    assert st.power_w(1) == pytest.approx(-7000.0)
    soc_before = ev.soc
    # periodic samples: export rising, signed Power.Active.Import negative
    events = await peer21.wait_for(
        "TransactionEvent", 2, where=lambda p: (sampled(p, "Power.Active.Import") or 0) < 0)
    exports = [sampled(e, "Energy.Active.Export.Register") for e in events]
    assert exports[1] > exports[0] >= 0
    assert sampled(events[-1], "Power.Active.Import") == pytest.approx(-7000.0)
    assert sampled(events[-1], "Power.Active.Export") == pytest.approx(7000.0)
    assert ev.soc < soc_before
    assert ev.energy_discharged_wh == pytest.approx(st.evses[1].export_wh)
    # still Charging (energy flows), now in another mode: OperationModeChanged (2.1)
    answer = await peer21.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile(
        tx, [{"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -6000.0}])})
    assert answer["status"] == "Accepted"
    (changed,) = await peer21.wait_for(
        "TransactionEvent", where=lambda p: p["triggerReason"] == "OperationModeChanged")
    assert changed["transactionInfo"]["operationMode"] == "CentralSetpoint"
    assert st.power_w(1) == pytest.approx(-6000.0)


async def test_Q_central_setpoint_export_matches_the_profile(peer21, stations):
    ev = EV(battery_kwh=60, soc=0.7, min_soc=0.2, bidirectional=True, energy_wanted_wh=0)
    st = await v2x_session(peer21, stations, ev)
    tx = st.transaction_id(1)
    start = st.clock.now()
    periods = [
        {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -5000.0,
         "dischargeLimit": -9000.0, "limit": 11000.0},
        {"startPeriod": 600, "operationMode": "Idle"},
    ]
    answer = await peer21.result("SetChargingProfile", {
        "evseId": 1, "chargingProfile": profile(tx, periods, start=start)})
    assert answer["status"] == "Accepted"
    installed = st.clock.now()
    assert st.power_w(1) == pytest.approx(-5000.0)
    (changed,) = await peer21.wait_for(  # SuspendedEV -> Charging, in CentralSetpoint
        "TransactionEvent", where=lambda p: p["transactionInfo"].get("operationMode")
        == "CentralSetpoint")
    assert changed["triggerReason"] == "ChargingStateChanged"
    started = peer21.of("TransactionEvent")[0]
    assert started["transactionInfo"]["operationMode"] == "ChargingOnly"
    composite = await peer21.result("GetCompositeSchedule", {
        "evseId": 1, "duration": 1200, "chargingRateUnit": "W"})
    first = composite["schedule"]["chargingSchedulePeriod"][0]
    assert (first["setpoint"], first["dischargeLimit"], first["operationMode"]) == (
        -5000.0, -9000.0, "CentralSetpoint")
    await eventually(lambda: (st.clock.now() - start).total_seconds() > 700, timeout=5)
    assert st.power_w(1) == 0.0
    # 5 kW from the install (between `start` and `installed`) to the Idle step at 600 s
    least = 5000.0 * (600 - (installed - start).total_seconds()) / 3600.0
    assert least - 0.1 <= st.evses[1].export_wh <= 5000.0 * 600 / 3600 + 0.1  # 833 Wh
    assert st.energy_wh(1) == 0.0  # nothing imported: the EV wanted nothing


async def test_Q_soc_never_goes_below_the_reserve(peer21, stations):
    ev = EV(battery_kwh=10, soc=0.32, min_soc=0.3, bidirectional=True, energy_wanted_wh=0)
    st = await v2x_session(peer21, stations, ev, meter_interval_s=30)
    tx = st.transaction_id(1)
    answer = await peer21.result("SetChargingProfile", {
        "evseId": 1, "chargingProfile": profile(tx, [
            {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -11000.0}])})
    assert answer["status"] == "Accepted"
    await eventually(lambda: st.power_w(1) == 0.0, timeout=5)
    assert ev.soc == pytest.approx(0.3)
    assert st.evses[1].export_wh == pytest.approx(200.0, abs=0.5)  # 2 % of 10 kWh
    await asyncio.sleep(0.3)  # a few more samples at the reserve
    socs = [sampled(e, "SoC") for e in peer21.of("TransactionEvent")]
    assert min(s for s in socs if s is not None) >= 30.0
    assert st.evses[1].export_wh == pytest.approx(200.0, abs=0.5)


async def test_Q_non_bidirectional_21_station_rejects_v2x_with_reason_codes(peer21, stations):
    ev = EV(battery_kwh=60, soc=0.6, bidirectional=True)
    st = await v2x_session(peer21, stations, ev, evses=[EvseSpec(1, max_current_a=16.0)])
    tx = st.transaction_id(1)
    cases = [
        ({"startPeriod": 0, "limit": -3000.0}, "ValuePositiveOnly"),
        ({"startPeriod": 0, "limit": 5000.0, "dischargeLimit": -3000.0}, "UnsupportedParam"),
        ({"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -3000.0},
         "InvalidOperationMode"),
        ({"startPeriod": 0, "operationMode": "ExternalLimits", "limit": 5000.0},
         "InvalidOperationMode"),
    ]
    for period, reason in cases:
        answer = await peer21.result("SetChargingProfile", {
            "evseId": 1, "chargingProfile": profile(tx, [period])})
        assert answer["status"] == "Rejected", period
        assert answer["statusInfo"]["reasonCode"] == reason, period
    assert st.power_w(1) > 0  # still charging as before
    (needs,) = await peer21.wait_for("NotifyEVChargingNeeds")
    assert "v2xChargingParameters" not in needs["chargingNeeds"]  # the EVSE cannot discharge


async def test_Q_bidirectional_evse_on_201_cannot_discharge(peer, stations):
    ev = EV(battery_kwh=60, soc=0.6, min_soc=0.3, bidirectional=True)
    st = await v2x_session(peer, stations, ev, ocpp_version="2.0.1")
    assert st.ocpp_version == "2.0.1"
    tx = st.transaction_id(1)
    answer = await peer.result("SetChargingProfile", {
        "evseId": 1, "chargingProfile": profile(tx, [{"startPeriod": 0, "limit": -3000.0}])})
    assert (answer["status"], answer["statusInfo"]["reasonCode"]) == (
        "Rejected", "ValuePositiveOnly")
    kind, code = await peer.call("SetChargingProfile", {
        "evseId": 1, "chargingProfile": profile(tx, [
            {"startPeriod": 0, "limit": 0.0, "dischargeLimit": -3000.0}])})
    assert (kind, code) == ("error", "FormatViolation")  # not a 2.0.1 field
    events = await peer.wait_for("TransactionEvent")
    assert sampled(events[-1], "Energy.Active.Export.Register") is None


async def test_Q_station_max_discharge_limit_caps_the_tx_profile(peer21, stations):
    ev = EV(battery_kwh=60, soc=0.8, min_soc=0.2, bidirectional=True, energy_wanted_wh=0)
    st = await v2x_session(peer21, stations, ev)
    tx = st.transaction_id(1)
    cap = {
        "id": 1, "stackLevel": 0, "chargingProfilePurpose": "ChargingStationMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "W", "startSchedule":
                              to_ocpp(st.clock.now()), "chargingSchedulePeriod": [
                                  {"startPeriod": 0, "limit": 11000.0,
                                   "dischargeLimit": -5000.0}]}],
    }
    assert (await peer21.result("SetChargingProfile", {"evseId": 0, "chargingProfile": cap}))[
        "status"] == "Accepted"
    answer = await peer21.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile(
        tx, [{"startPeriod": 0, "limit": -9000.0}])})
    assert answer["status"] == "Accepted", answer
    assert st.power_w(1) == pytest.approx(-5000.0)
    # below the EVSE's 6 A floor (IEC 61851) a discharge pauses, as charging does
    answer = await peer21.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile(
        tx, [{"startPeriod": 0, "limit": -3000.0}])})
    assert answer["status"] == "Accepted"
    assert st.power_w(1) == 0.0


# ---- the scenario and the fleet -------------------------------------------------------

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def test_Q_v2g_scenario_has_a_21_v2g_station_and_a_201_one_on_an_overloaded_node():
    sc = load_scenario(SCENARIOS / "v2g-evening.toml")
    specs = {spec.station_id: (spec, node) for spec, node in sc.station_specs()}
    v2g, v2g_node = specs["V2G01"]
    home, home_node = specs["HOME01"]
    assert v2g_node == home_node == "T-V2G"
    assert (v2g.ocpp_version, v2g.subprotocols) == ("2.1", ("ocpp2.1",))
    assert v2g.evses[0].bidirectional and v2g.evses[0].max_discharge_power_w == 11_000.0
    assert (home.ocpp_version, home.evses[0].bidirectional) == ("2.0.1", False)
    node = sc.nodes[0]
    assert max(node.household_kw) > node.limit_kw  # the household peak alone is too much
    sessions = {s.station_id: s for s in draw_sessions(sc)}
    car = sessions["V2G01"]
    assert car.bidirectional and car.min_soc == 0.3 and car.soc > car.min_soc
    assert not sessions["HOME01"].bidirectional


TINY_V2G = """
name = "tiny-v2g"
seed = 1
utc_offset = "+00:00"
start = "2026-11-23T17:00:00Z"
end = "2026-11-23T18:00:00Z"
meter_interval_s = 600
trace_interval_s = 600

[[nodes]]
id = "T1"
limit_kw = 20

[[stations]]
id = "B{n:02d}"
node = "T1"
ocpp_version = "2.1"
  [[stations.evses]]
  phases = 3
  max_current_a = 16.0
  bidirectional = true

[arrivals]
arrive = ["17:00", "17:01"]
stay_h = [0.5, 0.5]
energy_kwh = [5.0, 5.0]
battery_kwh = [60.0, 60.0]
soc = [0.5, 0.5]
ac_phases = 3
max_ac_current_a = 16.0
bidirectional_share = 1.0
min_soc = 0.2
"""


async def test_Q_fleet_reports_what_each_car_gave_back(peer21, tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(TINY_V2G)
    clock = AcceleratedClock(datetime(2026, 11, 23, 17, 0, tzinfo=UTC), speed=3_600)
    fleet = Fleet(load_scenario(path), peer21.url, clock)
    await fleet.connect()
    default = {  # discharge 6.9 kW from every transaction on EVSE 1
        "id": 5, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative", "chargingSchedule": [{
            "id": 5, "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": -10.0}]}]}
    answer = await peer21.result("SetChargingProfile", {"evseId": 1, "chargingProfile": default})
    assert answer["status"] == "Accepted"
    result = await fleet.run()
    (run,) = result.sessions
    assert run.authorized_at is not None
    discharging_h = (run.session.departure - run.authorized_at).total_seconds() / 3600
    (session,) = result.to_dict()["per_session"]
    # 10 A x 3 x 230 V from authorization to departure (a few wall ms are minutes at 3600x)
    assert session["discharged_wh"] == pytest.approx(6900 * discharging_h, rel=0.03)
    assert session["delivered_wh"] == pytest.approx(-session["discharged_wh"])  # net
    assert result.to_dict()["energy_discharged_kwh"] == round(session["discharged_wh"] / 1e3, 1)


async def test_Q_a_bidirectional_dc_evse_follows_a_setpoint_in_watts(peer21, stations):
    dc = EvseSpec(1, kind="DC", max_power_w=50_000.0, bidirectional=True,
                  max_discharge_power_w=25_000.0)
    ev = EV(battery_kwh=80, soc=0.8, min_soc=0.2, bidirectional=True, energy_wanted_wh=10_000)
    st = await v2x_session(peer21, stations, ev, evses=[dc])
    (needs,) = await peer21.wait_for("NotifyEVChargingNeeds")
    assert needs["chargingNeeds"]["requestedEnergyTransfer"] == "DC_BPT"
    assert needs["chargingNeeds"]["v2xChargingParameters"]["maxDischargePower"] == 25_000.0
    tx = st.transaction_id(1)
    answer = await peer21.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile(
        tx, [{"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -40_000.0}])})
    assert answer["status"] == "Accepted"
    assert st.power_w(1) == pytest.approx(-25_000.0)  # the EVSE's discharge maximum


async def test_Q01_no_discharge_until_the_csms_allows_a_bpt_transfer(peer21, stations):
    peer21.answers["Authorize"] = lambda p: {"idTokenInfo": {"status": "Accepted"}}
    ev = EV(battery_kwh=60, soc=0.6, min_soc=0.3, bidirectional=True, energy_wanted_wh=0)
    st = await v2x_session(peer21, stations, ev)
    tx = st.transaction_id(1)
    answer = await peer21.result("SetChargingProfile", {"evseId": 1, "chargingProfile": profile(
        tx, [{"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -7000.0}])})
    assert answer["status"] == "Accepted"  # the EVSE can; this transaction may not (yet)
    assert st.power_w(1) == 0.0
    answer = await peer21.result("NotifyAllowedEnergyTransfer", {
        "transactionId": "not-here", "allowedEnergyTransfer": BPT})
    assert (answer["status"], answer["statusInfo"]["reasonCode"]) == ("Rejected", "TxNotFound")
    answer = await peer21.result("NotifyAllowedEnergyTransfer", {
        "transactionId": tx, "allowedEnergyTransfer": BPT})
    assert answer["status"] == "Accepted"
    assert st.power_w(1) == pytest.approx(-7000.0)
    await peer21.result("NotifyAllowedEnergyTransfer", {
        "transactionId": tx, "allowedEnergyTransfer": ["AC_three_phase"]})  # opted out
    assert st.power_w(1) == 0.0


async def test_Q01_notify_allowed_energy_transfer_is_not_201(peer, stations):
    st = stations(peer.url)
    await st.start()
    kind, code = await peer.call("NotifyAllowedEnergyTransfer", {
        "transactionId": "t", "allowedEnergyTransfer": ["AC_BPT"]})
    assert (kind, code) == ("error", "NotImplemented")


async def test_Q_v2g_scenario_plays_a_discharge_through_the_evening_peak():
    """The scenario end to end against a scripted CSMS that speaks both versions and gives
    the V2G station a default profile: discharge 5 kW 19:00-22:00 local, then charge. The car
    gives back 15 kWh and still leaves with its energy; the 2.0.1 car only charges."""
    peer = ScriptedCsms(version="2.1", also=("2.0.1",))
    peer.answers["Authorize"] = lambda p: {"idTokenInfo": {"status": "Accepted"},
                                           "allowedEnergyTransfer": BPT}
    await peer.start()
    scenario = load_scenario(SCENARIOS / "v2g-evening.toml")
    fleet = Fleet(scenario, peer.url, AcceleratedClock(scenario.start, speed=10_800))
    try:
        await fleet.connect()
        assert fleet.stations["V2G01"].ocpp_version == "2.1"
        assert fleet.stations["HOME01"].ocpp_version == "2.0.1"
        peak = datetime(2026, 11, 23, 11, 0, tzinfo=UTC)  # 19:00 at +08:00
        evening = {
            "id": 30, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
            "chargingProfileKind": "Absolute", "chargingSchedule": [{
                "id": 30, "chargingRateUnit": "W", "startSchedule": to_ocpp(peak),
                "chargingSchedulePeriod": [
                    {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -5000.0,
                     "dischargeLimit": -5000.0, "limit": 0.0},
                    {"startPeriod": 3 * 3600, "operationMode": "ChargingOnly",
                     "limit": 11040.0}]}]}
        answer = await peer.result("SetChargingProfile", {"evseId": 1,
                                                          "chargingProfile": evening},
                                   station_id="V2G01")
        assert answer["status"] == "Accepted"
        summary = await fleet.run()
    finally:
        await fleet.stop()
        await peer.stop()
    assert peer.schema_problems == [], peer.schema_problems
    by_station = {r.session.station_id: r for r in summary.sessions}
    car, home = by_station["V2G01"], by_station["HOME01"]
    assert car.discharged_wh == pytest.approx(15_000.0, rel=0.02)
    assert car.satisfied and home.satisfied
    assert home.discharged_wh == 0.0
