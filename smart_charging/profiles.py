"""Turn one EVSE's planned setpoints into an OCPP 2.0.1 ChargingProfile.

The result is a plain dict in the exact JSON shape of SetChargingProfileRequest's
`chargingProfile` (camelCase), so the CSMS can send it as is and tests can validate it
against the official schema.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

from smart_charging.planner import EvseSchedule, Plan

PURPOSES = ("TxProfile", "TxDefaultProfile", "ChargingStationMaxProfile")


def _ocpp_time(ts: datetime) -> str:
    return ts.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def _floor_tenth(v: float) -> float:
    """OCPP accepts one decimal; flooring keeps the limit at or below the plan."""
    return math.floor(v * 10 + 1e-9) / 10


def charging_profile_for(plan: Plan, evse_id: str, *, profile_id: int, rate_unit: str = "A",
                         max_periods: int = 24, stack_level: int = 0,
                         purpose: str = "TxProfile",
                         transaction_id: str | None = None) -> dict[str, Any]:
    """The ChargingProfile for the session on `evse_id` in `plan`.

    `rate_unit` and `max_periods` come from the station's SmartChargingCtrlr.RateUnit and
    .PeriodsPerSchedule. Equal neighbouring slots are merged; if more periods remain than
    allowed, the last allowed period takes the lowest limit of everything after it, so
    the profile never allows more than the plan in any slot. The schedule lasts the
    horizon; after it the station falls back to its TxDefaultProfile.
    """
    return profile_from_schedule(plan.schedule_for(evse_id), profile_id=profile_id,
                                 rate_unit=rate_unit, max_periods=max_periods,
                                 stack_level=stack_level, purpose=purpose,
                                 transaction_id=transaction_id)


def profile_from_schedule(schedule: EvseSchedule, *, profile_id: int, rate_unit: str = "A",
                          max_periods: int = 24, stack_level: int = 0,
                          purpose: str = "TxProfile",
                          transaction_id: str | None = None) -> dict[str, Any]:
    """As `charging_profile_for`, from one EVSE's schedule."""
    if rate_unit not in ("A", "W"):
        raise ValueError("rate_unit must be A or W")
    if purpose not in PURPOSES:
        raise ValueError(f"purpose must be one of {PURPOSES}")
    if max_periods < 1:
        raise ValueError("max_periods must be at least 1")
    values = schedule.current_a if rate_unit == "A" else schedule.power_w
    if any(math.isnan(v) for v in values):
        raise ValueError(f"EVSE {schedule.evse_id} has no current setpoint (DC): use W")
    start = schedule.slot_starts[0]
    periods: list[tuple[int, float]] = []
    for ts, v in zip(schedule.slot_starts, values, strict=True):
        limit = _floor_tenth(max(v, 0.0))
        if not periods or periods[-1][1] != limit:
            periods.append((int((ts - start).total_seconds()), limit))
    if len(periods) > max_periods:
        tail = min(limit for _, limit in periods[max_periods - 1 :])
        periods = [*periods[: max_periods - 1], (periods[max_periods - 1][0], tail)]
    entries: list[dict[str, Any]] = []
    for offset, limit in periods:
        entry: dict[str, Any] = {"startPeriod": offset, "limit": limit}
        if rate_unit == "A":
            entry["numberPhases"] = schedule.number_phases
        entries.append(entry)
    duration = int((schedule.slot_ends[-1] - start).total_seconds())
    profile: dict[str, Any] = {
        "id": profile_id,
        "stackLevel": stack_level,
        "chargingProfilePurpose": purpose,
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [{
            "id": profile_id,
            "startSchedule": _ocpp_time(start),
            "duration": duration,
            "chargingRateUnit": rate_unit,
            "chargingSchedulePeriod": entries,
        }],
    }
    if purpose == "TxProfile":
        tx = transaction_id or schedule.transaction_id
        if not tx:
            raise ValueError("a TxProfile needs the transaction id")
        profile["transactionId"] = tx
    return profile
