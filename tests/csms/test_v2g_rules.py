"""The CSMS's V2G decisions without sockets: whose terms win, when an EVSE may discharge,
what the driver is still owed, and the 2.1 profile that carries a discharge."""

from __future__ import annotations

import ast
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from csms.frames import FrameError
from csms.ocpp.schemas import validate_request
from csms.scheduling.limits import profile_limit
from csms.scheduling.v2x import v2x_profile
from csms.v2g import (
    Accounting,
    EvV2x,
    Terms,
    engine_terms,
    ev_v2x,
    max_discharge_kw,
    remaining_kwh,
)
from smart_charging import Evse, EvseSchedule

T0 = datetime(2026, 12, 5, 10, 0, tzinfo=UTC)
EVSE = Evse(id="e1", node="t", station_id="S", max_current_a=32, v2g=True,
            max_discharge_kw=7.0)


def test_the_rules_module_does_no_io() -> None:
    tree = ast.parse((Path(__file__).resolve().parents[2] / "csms/v2g.py").read_text())
    modules = {n.module for n in ast.walk(tree) if isinstance(n, ast.ImportFrom)}
    modules |= {a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    assert not {m for m in modules if m and m.startswith(
        ("asyncio", "asyncpg", "csms.store", "csms.connection", "socket"))}


def test_session_terms_override_the_vehicles_field_by_field() -> None:
    vehicle = Terms(True, "export_allowed", 0.2, 0.5)
    assert Terms(mode="backup_only").over(vehicle) == Terms(True, "backup_only", 0.2, 0.5)
    assert Terms(opted_in=False).over(vehicle).may_discharge is False
    assert Terms(True, "charge_only").over(vehicle).may_discharge is False


def test_an_evse_discharges_only_over_21_and_only_as_much_as_the_car_allows() -> None:
    unsaid = EvV2x()
    assert max_discharge_kw(EVSE, "2.0.1", True, EvV2x(True)) == 0.0
    assert max_discharge_kw(EVSE, "2.1", False, unsaid) == 7.0  # the site file says so
    plain = Evse(id="e2", node="t", station_id="S", max_current_a=32)
    assert max_discharge_kw(plain, "2.1", False, unsaid) == 0.0
    assert max_discharge_kw(plain, "2.1", True, unsaid) == pytest.approx(7.36)  # device
    assert max_discharge_kw(EVSE, "2.1", False, EvV2x(False)) == 0.0  # the car: no BPT
    assert max_discharge_kw(EVSE, "2.1", False, EvV2x(True, max_discharge_w=3000)) == 3.0


def test_the_cars_v2x_floor_raises_the_drivers_reserve_where_it_is_stricter() -> None:
    terms = Terms(True, "export_allowed", 0.2, 0.4)
    ev = EvV2x(True, 60.0, 50.0, 7000.0, -6000.0)  # floor 6 kWh below 30 kWh now: 24 kWh
    planned, why = engine_terms(terms, ev, None, None, 7.0)
    assert why == "planned" and planned is not None
    assert planned.energy_now_kwh == 30.0 and planned.reserve_kwh == 24.0
    assert planned.reserve == 24.0  # above 0.2 x 60 = 12
    strict = engine_terms(Terms(True, "export_allowed", 0.5, 0.0), ev, None, None, 7.0)[0]
    assert strict is not None and strict.reserve == 30.0  # the driver's 50% is stricter
    assert engine_terms(terms, EvV2x(True), None, 50.0, 7.0) == (
        None, "battery size or state of charge unknown")
    assert engine_terms(Terms(False, "export_allowed"), ev, 60.0, 50.0, 7.0)[1] == \
        "not opted in"
    assert engine_terms(terms, ev, 60.0, 50.0, 0.0)[1] == "EVSE not bidirectional"


def test_ev_v2x_reads_the_2_1_charging_needs() -> None:
    ev = ev_v2x({"requestedEnergyTransfer": "DC_BPT", "dcChargingParameters": {
        "evMaxCurrent": 100, "evMaxVoltage": 400, "evEnergyCapacity": 75000,
        "stateOfCharge": 40}, "v2xChargingParameters": {"maxDischargePower": 11000}})
    assert ev == EvV2x(True, 75.0, 40.0, 11000.0, None)
    assert ev_v2x({"requestedEnergyTransfer": "AC_three_phase",
                   "availableEnergyTransfer": ["AC_three_phase"]}).bidirectional is False
    assert ev_v2x({"requestedEnergyTransfer": "AC_three_phase"}) == EvV2x()


def test_what_a_car_fed_back_is_owed_back_with_the_round_trip_losses() -> None:
    assert remaining_kwh(10.0, 4.0, 0.0) == 6.0
    assert remaining_kwh(10.0, 4.0, 3.0) == pytest.approx(6.0 + 3.0 / 0.9025)
    assert remaining_kwh(10.0, 12.0, 0.0) == 0.0
    assert Accounting.of(6000.0, 60.0, 0.5) == Accounting(6.0, 0.1, 3.0)
    assert Accounting.of(6000.0, None, None) == Accounting(6.0, None, 0.0)


def _schedule(watts: list[float], amps: list[float] | None = None) -> EvseSchedule:
    starts = tuple(T0 + timedelta(minutes=15 * i) for i in range(len(watts)))
    ends = tuple(t + timedelta(minutes=15) for t in starts)
    return EvseSchedule("e1", "s1", "TX1", starts, ends,
                        tuple(amps or [w / 230 for w in watts]), tuple(watts), 1)


def test_a_discharge_goes_to_21_as_a_central_setpoint_within_its_discharge_limit() -> None:
    profile = v2x_profile(_schedule([-7000.0, -7000.0, 0.0, 3680.0]), profile_id=7,
                          rate_unit="W", transaction_id="TX1")
    periods = profile["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert periods == [
        {"startPeriod": 0, "limit": 0.0, "dischargeLimit": -7000.0, "setpoint": -7000.0,
         "operationMode": "CentralSetpoint"},
        {"startPeriod": 1800, "limit": 0.0, "operationMode": "ChargingOnly"},
        {"startPeriod": 2700, "limit": 3680.0, "operationMode": "ChargingOnly"},
    ]
    request = {"evseId": 1, "chargingProfile": profile}
    validate_request("SetChargingProfile", request, version="2.1")
    with pytest.raises(FrameError):  # 2.0.1 has no such fields: never sent there
        validate_request("SetChargingProfile", request, version="2.0.1")
    held = profile_limit(profile, EVSE, T0)  # what the scheduler compares and checks
    assert held.at(T0) == -7000.0 and held.at(T0 + timedelta(minutes=50)) == 3680.0


def test_too_many_periods_end_idle_rather_than_discharge_unplanned() -> None:
    profile = v2x_profile(_schedule([1000.0, -2000.0, 3000.0, -1000.0]), profile_id=7,
                          rate_unit="A", max_periods=2, transaction_id="TX1")
    periods = profile["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert [p["limit"] for p in periods] == [4.3, 0.0]
    assert "setpoint" not in periods[1] and periods[1]["numberPhases"] == 1


def test_a_car_may_keep_its_bidirectional_modes_only_under_terms_that_discharge() -> None:
    from csms.v2g import allowed_modes

    offered = ["AC_three_phase", "AC_BPT"]
    assert allowed_modes(offered, Terms(True, "backup_only")) == offered
    assert allowed_modes(offered, Terms(True, "charge_only")) == ["AC_three_phase"]
    assert allowed_modes(["DC_BPT"], Terms(False, "export_allowed")) == []


def test_a_discharge_is_one_signed_power_however_the_station_says_it() -> None:
    from csms.ocpp.metering import signed_power

    assert signed_power(7000.0, None) == 7000.0
    assert signed_power(0.0, 5000.0) == -5000.0  # export as a magnitude
    assert signed_power(-5000.0, 5000.0) == -5000.0  # signed import and export both
    assert signed_power(-5000.0, None) == -5000.0
    assert signed_power(None, 3000.0) == -3000.0
