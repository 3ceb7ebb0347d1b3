"""The simulator's reading of OCPP 2.1 V2X in charging profiles (block Q on block K): which
periods a station accepts, the signed composite, and properties of it (hypothesis)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.profiles import (
    CHARGING_ONLY,
    V2X_OPERATION_MODES,
    ChargingProfile,
    Electrical,
    InstalledProfile,
    Operation,
    ProfileRules,
    Transaction,
    composite_schedule,
    operation_at,
    validate,
)

T0 = datetime(2026, 11, 23, 18, 0, tzinfo=UTC)
AC3 = Electrical("AC", phases=3, voltage_v=230.0)
TX = Transaction("TX1", T0)
V2X_RULES = ProfileRules(version="2.1", v2x=True, operation_modes=V2X_OPERATION_MODES)
PLAIN_21 = ProfileRules(version="2.1")


def v2x_profile(periods: list[dict], pid: int = 1, purpose: str = "TxProfile",
                stack: int = 0) -> ChargingProfile:
    return ChargingProfile.from_ocpp({
        "id": pid,
        "stackLevel": stack,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        **({"transactionId": "TX1"} if purpose == "TxProfile" else {}),
        "chargingSchedule": [{"id": pid, "chargingRateUnit": "W", "startSchedule":
                              T0.isoformat(), "chargingSchedulePeriod": periods}],
    })


def reason(p: ChargingProfile, rules: ProfileRules, evse_id: int = 1) -> str | None:
    got = validate(p, evse_id, evse_ids=[1], transactions={1: "TX1"}, installed=(),
                   rules=rules, now=T0)
    return None if got is None else got.reason_code


def test_Q_a_v2x_evse_accepts_what_it_can_do():
    for period in (
        {"startPeriod": 0, "limit": -7000.0},
        {"startPeriod": 0, "limit": 11000.0, "dischargeLimit": -7000.0,
         "operationMode": "ExternalLimits"},
        {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -5000.0},
        {"startPeriod": 0, "operationMode": "Idle"},
    ):
        assert reason(v2x_profile([period]), V2X_RULES) is None, period


def test_Q_reason_codes_where_v2x_is_not_possible_or_malformed():
    cases = [
        ({"startPeriod": 0, "limit": -1.0}, PLAIN_21, "ValuePositiveOnly"),
        ({"startPeriod": 0, "limit": 1.0, "dischargeLimit": -1.0}, PLAIN_21, "UnsupportedParam"),
        ({"startPeriod": 0, "limit": 1.0, "setpoint": 1.0}, PLAIN_21, "UnsupportedParam"),
        ({"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": 1.0}, PLAIN_21,
         "InvalidOperationMode"),
        ({"startPeriod": 0, "operationMode": "LocalFrequency", "limit": 1.0}, V2X_RULES,
         "InvalidOperationMode"),
        ({"startPeriod": 0, "operationMode": "CentralSetpoint"}, V2X_RULES, "MissingParam"),
        ({"startPeriod": 0}, V2X_RULES, "MissingParam"),  # ChargingOnly needs a limit
        ({"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -9000.0,
          "dischargeLimit": -5000.0}, V2X_RULES, "ValueOutOfRange"),
    ]
    for period, rules, code in cases:
        assert reason(v2x_profile([period]), rules) == code, period


def test_Q_2_1_only_purposes_and_kinds_are_refused_as_unsupported():
    p = v2x_profile([{"startPeriod": 0, "limit": 1.0}], purpose="PriorityCharging")
    assert reason(p, PLAIN_21) == "UnsupportedPurpose"


def test_Q_v2x_fields_survive_a_report():
    p = v2x_profile([{"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -5000.0,
                      "dischargeLimit": -7000.0, "limit": 11000.0, "v2xBaseline": 100.0}])
    assert ChargingProfile.from_ocpp(p.to_ocpp()) == p
    assert p.to_ocpp()["chargingSchedule"][0]["chargingSchedulePeriod"][0]["v2xBaseline"] == 100


def test_Q_operation_targets():
    assert Operation(-7000.0).target() == -7000.0  # legacy negative limit: discharge
    assert Operation(11000.0, -7000.0).target() == 11000.0  # ChargingOnly: charge
    assert Operation(11000.0, -7000.0).target(wanted=0.0) == 0.0
    assert Operation(11000.0, -7000.0, -9000.0, "CentralSetpoint").target() == -7000.0
    assert Operation(None, None, 3000.0, "CentralSetpoint").target() == 3000.0
    assert Operation(11000.0, -7000.0, -5000.0, "Idle").target() == 0.0


def test_Q_composite_carries_the_v2x_fields_of_the_tx_level_capped():
    cap = InstalledProfile(0, v2x_profile(
        [{"startPeriod": 0, "limit": 11000.0, "dischargeLimit": -4000.0}], pid=2,
        purpose="ChargingStationMaxProfile"))
    tx = InstalledProfile(1, v2x_profile([
        {"startPeriod": 0, "operationMode": "CentralSetpoint", "setpoint": -3000.0,
         "dischargeLimit": -9000.0, "limit": 7000.0},
        {"startPeriod": 1800, "limit": 7000.0},
    ]))
    got = composite_schedule([cap, tx], 1, T0, 3600, "W", AC3, TX, default_limit=11040.0)
    first, second = got.to_ocpp()["chargingSchedulePeriod"]
    assert first == {"startPeriod": 0, "limit": 7000.0, "dischargeLimit": -4000.0,
                     "setpoint": -3000.0, "operationMode": "CentralSetpoint"}
    assert second == {"startPeriod": 1800, "limit": 7000.0, "dischargeLimit": -4000.0}


# ---- properties -----------------------------------------------------------------------

rates = st.integers(-22000, 22000).map(float)  # whole watts, as the wire mostly carries
discharges = st.integers(-22000, 0).map(float)


@st.composite
def v2x_periods(draw) -> list[dict]:
    starts = sorted(draw(st.sets(st.integers(1, 3599), max_size=4)))
    periods = []
    for start in [0, *starts]:
        mode = draw(st.sampled_from(V2X_OPERATION_MODES))
        period: dict = {"startPeriod": start}
        if mode != CHARGING_ONLY or draw(st.booleans()):
            period["operationMode"] = mode
        limit = draw(st.none() | rates) if mode != CHARGING_ONLY else draw(rates)
        low = draw(st.none() | discharges)
        if limit is not None and low is not None and low > limit:
            low = limit  # a consistent range: dischargeLimit <= limit
        if limit is not None:
            period["limit"] = limit
        if low is not None:
            period["dischargeLimit"] = low
        if mode == "CentralSetpoint":
            hi = limit if limit is not None else 22000.0
            lo = low if low is not None else -22000.0
            if lo > hi:
                lo = hi
            period["setpoint"] = float(draw(st.integers(int(lo), int(hi))))
        periods.append(period)
    return periods


@st.composite
def caps(draw) -> list[dict]:
    return [{"startPeriod": 0, "limit": float(draw(st.integers(0, 22000))),
             **({"dischargeLimit": d} if (d := draw(st.none() | discharges)) is not None
                else {})}]


@settings(max_examples=150, deadline=None)
@given(tx_periods=v2x_periods(), cap_periods=st.none() | caps(), offset=st.integers(0, 3599))
def test_Q_property_the_rate_stays_inside_every_cap(tx_periods, cap_periods, offset):
    """Whatever the Tx level asks (setpoint, negative limit, mode), the rate the EVSE aims at
    never leaves a ChargingStationMaxProfile's [dischargeLimit, limit]."""
    tx = v2x_profile(tx_periods)
    assert reason(tx, V2X_RULES) is None, tx_periods
    installed = [InstalledProfile(1, tx)]
    if cap_periods is not None:
        installed.append(InstalledProfile(0, v2x_profile(cap_periods, pid=2,
                                                         purpose="ChargingStationMaxProfile")))
    t = T0 + timedelta(seconds=offset)
    op = operation_at(installed, 1, t, "W", AC3, TX)
    assert op is not None
    target = op.target()
    if cap_periods is not None:
        cap = cap_periods[0]
        assert target <= cap["limit"] + 1e-6
        if "dischargeLimit" in cap:
            assert target >= cap["dischargeLimit"] - 1e-6
    if op.mode == "Idle":
        assert target == 0.0
    if op.mode == CHARGING_ONLY and op.limit is not None and op.limit >= 0:
        assert target >= 0.0  # charging only never discharges
    assert math.isfinite(target) or target == math.inf


@settings(max_examples=100, deadline=None)
@given(tx_periods=v2x_periods(), cap_periods=st.none() | caps())
def test_Q_property_the_composite_schedule_is_the_operation_at_each_period(tx_periods,
                                                                          cap_periods):
    """GetCompositeSchedule reports, period by period, what the EVSE actually runs at."""
    installed = [InstalledProfile(1, v2x_profile(tx_periods))]
    if cap_periods is not None:
        installed.append(InstalledProfile(0, v2x_profile(cap_periods, pid=2,
                                                         purpose="ChargingStationMaxProfile")))
    got = composite_schedule(installed, 1, T0, 3600, "W", AC3, TX, default_limit=22080.0)
    starts = [p.start_period for p in got.periods]
    assert starts[0] == 0 and starts == sorted(set(starts))
    for period in got.periods:
        op = operation_at(installed, 1, T0 + timedelta(seconds=period.start_period), "W", AC3,
                          TX)
        assert op is not None
        assert period.limit == (op.limit if op.limit is not None else 22080.0)
        assert (period.discharge_limit, period.setpoint, period.operation_mode) == (
            op.discharge_limit, op.setpoint, op.operation_mode)
