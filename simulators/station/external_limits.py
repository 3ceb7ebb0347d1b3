"""Blocks K11-K14 on the station: an external system (an EMS, the grid operator) limits the
station or one EVSE. The station installs the limit as a ChargingStationExternalConstraints
profile, so its composite schedule obeys it, and tells the CSMS (NotifyChargingLimit);
when the limit is lifted it removes it and says so (ClearedChargingLimit).

The schedule goes with the notification only when
SmartChargingCtrlr.NotifyChargingLimitWithSchedules is true (the CSMS sets it).

A test drives it: `await notify(station, "EMS", 16.0, "A")`, `await clear(station, "EMS")`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.clock import to_ocpp
from simulators.profiles import ChargingProfile

if TYPE_CHECKING:
    from simulators.station.core import Station

PROFILE_ID_BASE = 9_900_000  # the ids this station gives the external limits it installs


def _profile_id(source: str, evse_id: int) -> int:
    return PROFILE_ID_BASE + {"EMS": 0, "Other": 1, "SO": 2, "CSO": 3}[source] * 1000 + evse_id


async def notify(station: Station, source: str, limit: float, unit: str = "A", *,
                 evse_id: int = 0, duration_s: int | None = None,
                 grid_critical: bool | None = None) -> dict:
    """An external limit from now on (for `duration_s`, or until cleared)."""
    now = station.clock.now()
    schedule: dict = {
        "id": 1, "chargingRateUnit": unit, "startSchedule": to_ocpp(now),
        "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
    }
    if duration_s is not None:
        schedule["duration"] = duration_s
    profile = ChargingProfile.from_ocpp({
        "id": _profile_id(source, evse_id), "stackLevel": 0,
        "chargingProfilePurpose": "ChargingStationExternalConstraints",
        "chargingProfileKind": "Absolute", "chargingSchedule": [schedule],
    })
    station.profiles.install(evse_id, profile, source)
    station._recompute_all()
    charging_limit: dict = {"chargingLimitSource": source}
    if grid_critical is not None:
        charging_limit["isGridCritical"] = grid_critical
    payload: dict = {"chargingLimit": charging_limit}
    if station.device_model.flag("SmartChargingCtrlr", "NotifyChargingLimitWithSchedules"):
        payload["chargingSchedule"] = [schedule]  # K12.FR.02: only when configured to
    if evse_id:
        payload["evseId"] = evse_id
    return await station.call("NotifyChargingLimit", payload)


async def clear(station: Station, source: str, *, evse_id: int = 0) -> dict:
    """The external system lifted its limit."""
    station.profiles.clear(profile_id=_profile_id(source, evse_id))
    station._recompute_all()
    payload: dict = {"chargingLimitSource": source}
    if evse_id:
        payload["evseId"] = evse_id
    return await station.call("ClearedChargingLimit", payload)
