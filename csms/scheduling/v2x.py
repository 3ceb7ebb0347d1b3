"""A V2G session's TxProfile for an OCPP 2.1 station: the engine's signed setpoints as the
2.1 V2X use cases carry them. Decisions only: no I/O, no clock.

Per period (OCPP 2.1 ChargingSchedulePeriodType, block Q, "Central V2X control with a
charging schedule"):
- charging (planned >= 0): `operationMode` ChargingOnly with `limit`, as a 2.0.1 profile
  says it: the car may take less;
- discharging (planned < 0): `operationMode` CentralSetpoint, `setpoint` the planned
  (negative) value, `dischargeLimit` the same (the most it may feed back: the reserve was
  planned against it), `limit` 0 (it may not charge meanwhile).
`limit` stays non-negative everywhere: 2.1 keeps negative limits only for backward
compatibility. A 2.0.1 station never gets this shape (its schema refuses the fields);
it gets `charging_profile_for`, whose limits are floored at 0.
"""

from __future__ import annotations

import math
from typing import Any

from csms.scheduling.limits import SETPOINT_MODES, ocpp_time
from smart_charging.planner import EvseSchedule

CHARGE_MODE = "ChargingOnly"
DISCHARGE_MODE = "CentralSetpoint"
assert DISCHARGE_MODE in SETPOINT_MODES  # limits.profile_limit reads its setpoint


def _floor_tenth(v: float) -> float:
    return math.floor(v * 10 + 1e-9) / 10


def _period(offset: int, value: float, number_phases: int | None) -> dict[str, Any]:
    entry: dict[str, Any] = {"startPeriod": offset}
    if value >= 0:
        entry |= {"limit": _floor_tenth(value), "operationMode": CHARGE_MODE}
    else:
        # discharge rounded up: a tenth less relief could leave a node a tenth over
        out = -math.ceil(-value * 10 - 1e-9) / 10
        entry |= {"limit": 0.0, "dischargeLimit": out, "setpoint": out,
                  "operationMode": DISCHARGE_MODE}
    if number_phases is not None:
        entry["numberPhases"] = number_phases
    return entry


def v2x_profile(schedule: EvseSchedule, *, profile_id: int, rate_unit: str,
                max_periods: int = 24, stack_level: int = 0,
                transaction_id: str | None = None) -> dict[str, Any]:
    """The TxProfile for one bidirectional EVSE's signed schedule. Equal neighbouring
    slots merge; past `max_periods`, the last period takes the lowest charge of what
    follows, or 0 (idle) if any of it discharges: never more than the plan either way."""
    if rate_unit not in ("A", "W"):
        raise ValueError("rate_unit must be A or W")
    values = schedule.current_a if rate_unit == "A" else schedule.power_w
    if any(math.isnan(v) for v in values):
        raise ValueError(f"EVSE {schedule.evse_id} has no current setpoint (DC): use W")
    start = schedule.slot_starts[0]
    steps: list[tuple[int, float]] = []
    for ts, v in zip(schedule.slot_starts, values, strict=True):
        v = float(v)
        if not steps or steps[-1][1] != v:
            steps.append((int((ts - start).total_seconds()), v))
    if len(steps) > max_periods:
        tail = [v for _, v in steps[max_periods - 1:]]
        last = min(tail) if min(tail) >= 0 else 0.0
        steps = [*steps[: max_periods - 1], (steps[max_periods - 1][0], last)]
    phases = schedule.number_phases if rate_unit == "A" else None
    tx = transaction_id or schedule.transaction_id
    if not tx:
        raise ValueError("a TxProfile needs the transaction id")
    return {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Absolute",
        "transactionId": tx,
        "chargingSchedule": [{
            "id": profile_id,
            "startSchedule": ocpp_time(start),
            "duration": int((schedule.slot_ends[-1] - start).total_seconds()),
            "chargingRateUnit": rate_unit,
            "chargingSchedulePeriod": [_period(o, v, phases) for o, v in steps],
        }],
    }


def discharges(schedule: EvseSchedule) -> bool:
    """Whether the plan has this EVSE feed back in any slot."""
    return any(w < 0 for w in schedule.power_w)
