"""Block K, smart charging: the EV's charging needs and schedule (K15-K17), the profiles a
station reports (K09) and the limits external systems put on it (K11-K14)."""

from __future__ import annotations

import secrets
from dataclasses import dataclass, replace
from datetime import datetime

from csms.connection import StationContext
from csms.events import ChargingNeedsChanged, ExternalLimitChanged
from csms.frames import FrameError, Payload
from csms.ocpp.deps import Deps
from csms.ocpp.fields import bounded_int, optional_timestamp, timestamp
from csms.store.charging import ExternalLimit
from csms.v2g import EvV2x, ev_v2x


def check_schedule(schedule: Payload, field: str) -> None:
    """A chargingSchedule the scheduler will read: a real start time, and periods and a
    duration within 32 bits (some 68 years), so no arithmetic on them can overflow."""
    optional_timestamp(schedule.get("startSchedule"), f"{field}.startSchedule")
    if "duration" in schedule:
        bounded_int(schedule["duration"], f"{field}.duration")
    for j, period in enumerate(schedule["chargingSchedulePeriod"]):
        bounded_int(period["startPeriod"], f"{field}.chargingSchedulePeriod[{j}].startPeriod")


# V2X quantities the 2.1 schema leaves unbounded below but defines as magnitudes (>= 0)
V2X_MAGNITUDES = ("minChargePower", "maxChargePower", "minDischargePower",
                  "maxDischargePower", "minChargeCurrent", "maxChargeCurrent",
                  "minDischargeCurrent", "maxDischargeCurrent")


def check_v2x(needs: Payload) -> None:
    """A 2.1 car's V2X parameters the planner reads: powers and currents are magnitudes
    ("Value >= 0"), a battery capacity is positive (else PropertyConstraintViolation)."""
    v2x = needs.get("v2xChargingParameters") or {}
    for name in V2X_MAGNITUDES:
        if v2x.get(name, 0) < 0:
            raise FrameError("PropertyConstraintViolation",
                             f"chargingNeeds.v2xChargingParameters.{name}: {v2x[name]} < 0")
    capacity = (needs.get("dcChargingParameters") or {}).get("evEnergyCapacity")
    if capacity is not None and capacity <= 0:
        raise FrameError("PropertyConstraintViolation",
                         f"chargingNeeds.dcChargingParameters.evEnergyCapacity: {capacity} <= 0")


@dataclass(frozen=True)
class NotifyEVChargingNeeds:
    """Departure time and energy wanted (ISO 15118) feed the planner via the session; a
    2.1 car's V2X parameters (bidirectional modes, discharge limit, V2X floor, battery
    size and SoC) are kept with the transaction for V2G planning (csms/v2g.py)."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        needs = req["chargingNeeds"]
        check_v2x(needs)
        parameters = needs.get("acChargingParameters") or needs.get("dcChargingParameters") or {}
        departure_time = optional_timestamp(needs.get("departureTime"),
                                            "chargingNeeds.departureTime")
        energy = parameters.get("energyAmount")
        if energy is None:  # ISO 15118-20 states it among the V2X parameters
            energy = (needs.get("v2xChargingParameters") or {}).get("evTargetEnergyRequest")
            energy = energy if energy is None or energy >= 0 else None
        transaction_id = await self.deps.store.transactions.set_needs(
            ctx.station_id, bounded_int(req["evseId"], "evseId", 1),
            departure_time=departure_time,
            energy_amount_wh=float(energy) if energy is not None else None,
            transfer_mode=needs.get("requestedEnergyTransfer"),
            payload=req,
            now=self.deps.clock.now(),
        )
        ev = ev_v2x(needs)
        if transaction_id is not None and ev != EvV2x():
            await self.deps.store.v2g.set_ev(
                ctx.station_id, transaction_id, bidirectional=ev.bidirectional,
                battery_kwh=ev.battery_kwh, soc=ev.soc_percent,
                max_discharge_w=ev.max_discharge_w, min_v2x_energy_wh=ev.min_v2x_energy_wh,
                now=self.deps.clock.now())
        self.deps.events.publish(ChargingNeedsChanged(
            ctx.station_id, req["evseId"], transaction_id, departure_time,
            float(energy) if energy is not None else None,
        ))
        # Accepted: a schedule will follow in a TxProfile (K15.FR.xx), sent by the scheduler.
        return {"status": "Accepted"}


@dataclass(frozen=True)
class NotifyEVChargingSchedule:
    """K15-K17: the schedule the EV chose within the TxProfile it was given, kept per
    transaction (readable at /api/stations/{id}/ev-charging-schedules)."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        evse_id = bounded_int(req["evseId"], "evseId", 1)
        time_base = timestamp(req["timeBase"], "timeBase")
        store = self.deps.store
        tx = await store.transactions.active_on_evse(ctx.station_id, evse_id)
        await store.charging.add_ev_schedule(
            ctx.station_id, evse_id, tx.transaction_id if tx else None, time_base,
            req["chargingSchedule"], self.deps.clock.now(),
        )
        return {"status": "Accepted"}


@dataclass(frozen=True)
class ReportChargingProfiles:
    """K09: one part of the answer to a GetChargingProfiles, added to its request's report."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        request_id = bounded_int(req["requestId"], "requestId")
        evse_id = bounded_int(req["evseId"], "evseId")
        items = [{"evseId": evse_id, "chargingLimitSource": req["chargingLimitSource"],
                  "chargingProfile": profile} for profile in req["chargingProfile"]]
        now = self.deps.clock.now()
        await self.deps.store.station_reports.add_part(
            ctx.station_id, "ChargingProfiles", request_id, items, bool(req.get("tbc", False)),
            now,
        )
        await self._fill_external_limit(ctx.station_id, evse_id, req, now)
        return {}

    async def _fill_external_limit(self, station_id: str, evse_id: int, req: Payload,
                                   now: datetime) -> None:
        """K12: an external limit notified without its schedule gets the schedule of the
        ChargingStationExternalConstraints profile the station reports for it."""
        schedules = [schedule for profile in req["chargingProfile"]
                     if profile["chargingProfilePurpose"] == "ChargingStationExternalConstraints"
                     for schedule in profile["chargingSchedule"]]
        if not schedules:
            return
        source = req["chargingLimitSource"]
        store = self.deps.store.charging
        known = next((x for x in await store.external_limits([station_id])
                      if x.evse_id == evse_id and x.source == source), None)
        if known is None or known.schedules:
            return
        for i, schedule in enumerate(schedules):
            check_schedule(schedule, f"chargingProfile.chargingSchedule[{i}]")
        await store.set_external_limit(replace(known, schedules=schedules))
        self.deps.events.publish(ExternalLimitChanged(station_id, evse_id, source, "set", now))


@dataclass(frozen=True)
class NotifyChargingLimit:
    """K11/K12: an external system (EMS, grid operator) limits the station or one EVSE.
    Kept as the station's current external limit, which the scheduler respects."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        limit = req["chargingLimit"]
        evse_id = bounded_int(req.get("evseId", 0), "evseId")
        schedules = req.get("chargingSchedule") or []
        for i, schedule in enumerate(schedules):
            check_schedule(schedule, f"chargingSchedule[{i}]")
        now, source = self.deps.clock.now(), limit["chargingLimitSource"]
        await self.deps.store.charging.set_external_limit(ExternalLimit(
            ctx.station_id, evse_id, source, limit.get("isGridCritical"), schedules, now,
        ))
        self.deps.events.publish(ExternalLimitChanged(ctx.station_id, evse_id, source, "set",
                                                      now))
        if not schedules:  # K12: ask for it; ReportChargingProfiles fills it in
            ctx.after(lambda: _request_external_profiles(ctx, evse_id, source))
        return {}


async def _request_external_profiles(ctx: StationContext, evse_id: int, source: str) -> None:
    assert ctx.connection is not None
    await ctx.connection.call("GetChargingProfiles", {
        "requestId": secrets.randbelow(2**31 - 1) + 1, "evseId": evse_id,
        "chargingProfile": {"chargingProfilePurpose": "ChargingStationExternalConstraints",
                            "chargingLimitSource": [source]}})


@dataclass(frozen=True)
class ClearedChargingLimit:
    """K13/K14: the external limit of that source (on that EVSE, or the station) is gone."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        evse_id = bounded_int(req.get("evseId", 0), "evseId")
        source = req["chargingLimitSource"]
        now = self.deps.clock.now()
        if await self.deps.store.charging.clear_external_limit(ctx.station_id, evse_id, source):
            self.deps.events.publish(ExternalLimitChanged(
                ctx.station_id, evse_id, source, "cleared", now))
        return {}
