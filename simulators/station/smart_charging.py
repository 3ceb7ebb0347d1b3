"""Block K, smart charging: install, clear and report charging profiles and compute the
composite schedule; the profile rules come from SmartChargingCtrlr in the device model.

V2X (OCPP 2.1 block Q) rides on the same messages: an EVSE accepts discharge, setpoints and
the operation modes of `V2X_OPERATION_MODES` only when it is bidirectional and the
connection is 2.1; otherwise `validate` rejects them with the reason codes in profiles.py."""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.profiles import (
    CHARGING_ONLY,
    V2X_OPERATION_MODES,
    ChargingProfile,
    Electrical,
    ProfileRules,
    composite_schedule,
    validate,
)
from simulators.station.model import EvseState
from simulators.station.replies import Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station


def profile_rules(station: Station, evse_id: int | None = None) -> ProfileRules:
    """The limits SmartChargingCtrlr sets on what profiles the station accepts, and what V2X
    the EVSE (any EVSE, for evseId 0) can do on this connection."""
    dm = station.device_model
    v2x = station.ocpp_version == "2.1" and any(
        e.spec.bidirectional for e in station.evses.values() if evse_id in (None, 0, e.spec.evse_id)
    )
    return ProfileRules(
        rate_units=tuple(dm.value("SmartChargingCtrlr", "RateUnit").split(",")),
        periods_per_schedule=int(dm.number("SmartChargingCtrlr", "PeriodsPerSchedule")),
        max_stack_level=int(dm.number("SmartChargingCtrlr", "ProfileStackLevel")),
        max_entries=int(dm.number("SmartChargingCtrlr", "Entries")),
        phases3to1=dm.flag("SmartChargingCtrlr", "Phases3to1"),
        version=station.ocpp_version,
        v2x=v2x,
        operation_modes=V2X_OPERATION_MODES if v2x else (CHARGING_ONLY,),
    )


async def set_charging_profile(station: Station, req: dict) -> Reply:
    evse_id = req["evseId"]
    try:
        profile = ChargingProfile.from_ocpp(req["chargingProfile"])
    except (KeyError, ValueError, TypeError) as exc:
        return rejected("InvalidProfile", str(exc)), None
    if not station.device_model.flag("SmartChargingCtrlr", "Enabled"):
        return rejected("NotEnabled", "SmartChargingCtrlr.Enabled is false"), None
    now = station.clock.now()
    station.profiles.expire(now)
    rejection = validate(
        profile,
        evse_id,
        evse_ids=station.evses.keys(),
        transactions={e.spec.evse_id: e.tx.transaction_id for e in station.evses.values() if e.tx},
        installed=station.profiles,
        rules=profile_rules(station, evse_id),
        now=now,
    )
    if rejection is not None:
        return rejected(rejection.reason_code, rejection.additional_info), None
    station.profiles.install(evse_id, profile)
    station._recompute_all()
    return {"status": "Accepted"}, None


async def clear_charging_profile(station: Station, req: dict) -> Reply:
    criteria = req.get("chargingProfileCriteria") or {}
    cleared = station.profiles.clear(
        profile_id=req.get("chargingProfileId"),
        evse_id=criteria.get("evseId"),
        purpose=criteria.get("chargingProfilePurpose"),
        stack_level=criteria.get("stackLevel"),
    )
    station._recompute_all()
    return {"status": "Accepted" if cleared else "Unknown"}, None


async def get_charging_profiles(station: Station, req: dict) -> Reply:
    crit = req.get("chargingProfile") or {}
    station.profiles.expire(station.clock.now())
    found = station.profiles.select(
        evse_id=req.get("evseId"),
        ids=crit.get("chargingProfileId"),
        purpose=crit.get("chargingProfilePurpose"),
        stack_level=crit.get("stackLevel"),
        sources=crit.get("chargingLimitSource"),
    )
    if not found:
        return {"status": "NoProfiles"}, None
    groups: dict[tuple[int, str], list] = {}
    for e in found:
        groups.setdefault((e.evse_id, e.source), []).append(e.profile.to_ocpp())
    request_id = req["requestId"]

    async def report() -> None:
        items = list(groups.items())
        for i, ((evse_id, source), profiles) in enumerate(items):
            await station.call(
                "ReportChargingProfiles",
                {
                    "requestId": request_id,
                    "chargingLimitSource": source,
                    "evseId": evse_id,
                    "chargingProfile": profiles,
                    "tbc": i < len(items) - 1,
                },
            )

    return {"status": "Accepted"}, report


async def get_composite_schedule(station: Station, req: dict) -> Reply:
    evse_id = req["evseId"]
    if evse_id != 0 and evse_id not in station.evses:
        return rejected("UnknownEVSE", f"no EVSE {evse_id}"), None
    unit = req.get("chargingRateUnit") or ("A" if station._all_ac() else "W")
    if unit not in profile_rules(station).rate_units:
        return rejected("UnsupportedRateUnit", unit), None
    now = station.clock.now()
    station.profiles.expire(now)
    if evse_id == 0:
        electrical = Electrical(
            "AC" if station._all_ac() else "DC", max(e.phases for e in station.spec.evses), 230.0
        )
        total_w = sum(e.max_power_w or 0.0 for e in station.spec.evses)
        default = electrical.to_unit(total_w, "W", unit, None)
        tx = None
    else:
        evse = station.evses[evse_id]
        electrical = station._electrical(evse)
        default = electrical.to_unit(evse.spec.max_power_w or 0.0, "W", unit, None)
        tx = station._tx(evse)
    schedule = composite_schedule(
        station.profiles,
        evse_id,
        now,
        int(req["duration"]),
        unit,
        electrical,
        tx,
        default_limit=round(default, 1),
    )
    return {"status": "Accepted", "schedule": schedule.to_ocpp()}, None


def install_remote_profile(station: Station, evse: EvseState) -> None:
    """Install the TxProfile a RequestStartTransaction carried, once its transaction runs
    (K05); a profile the station would reject is dropped."""
    req = evse.pending_remote_start or {}
    data = req.get("chargingProfile")
    if data is None or evse.tx is None:
        return
    try:
        profile = ChargingProfile.from_ocpp({**data, "transactionId": evse.tx.transaction_id})
    except (KeyError, ValueError, TypeError):
        return
    rejection = validate(
        profile,
        evse.spec.evse_id,
        evse_ids=station.evses.keys(),
        transactions={evse.spec.evse_id: evse.tx.transaction_id},
        installed=station.profiles,
        rules=profile_rules(station, evse.spec.evse_id),
        now=station.clock.now(),
    )
    if rejection is None:
        station.profiles.install(evse.spec.evse_id, profile)
