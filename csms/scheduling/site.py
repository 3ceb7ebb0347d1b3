"""One site's planning: read its running transactions, reserve what the EVSEs it cannot
steer may draw, run the engine in a thread, send each EVSE a TxProfile only when it changed
materially (decreases first), and store the plan with its inputs.

Why it works this way: docs/decisions/0008-scheduler.md. The decisions themselves are pure
functions in `demand`, `limits` and `reserved_load`; this module does the I/O around them.
Profile ids are fixed per EVSE, so a new profile replaces the last one (K01):
TxDefaultProfile 7_100_000 + evseId, TxProfile 7_200_000 + evseId.
"""

from __future__ import annotations

import asyncio
import time
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import numpy as np
import structlog

from csms import metrics
from csms.clock import Clock
from csms.config import SchedulerConfig
from csms.events import ChargingProfilesCleared, PowerSampled
from csms.frames import Payload
from csms.scheduling import site_energy
from csms.scheduling.demand import (
    EvseKey,
    SessionFacts,
    departure_for,
    evse_index,
    next_local_time,
    session_for,
)
from csms.scheduling.departures import DepartureHistory
from csms.scheduling.gateway import Capabilities, StationGateway, rate_unit_for
from csms.scheduling.grid_inputs import plan_inputs
from csms.scheduling.limits import (
    Change,
    Limit,
    compare,
    default_profile,
    default_shares,
    external_caps_w,
    falls_short,
    needed_decreases,
    profile_limit,
    slot_peaks_kw,
    zero_profile,
)
from csms.scheduling.reserved_load import Reservation, slot_ceil, with_reservations
from csms.scheduling.v2x import discharges, v2x_profile
from csms.store import Store
from csms.store.plans import PlanRecord
from csms.store.transactions import Transaction
from csms.v2g import V2X_COMPONENT
from csms.v2g_ledger import Lenders, lenders
from smart_charging import (
    Evse,
    Plan,
    Planner,
    PlanSettings,
    Prices,
    Session,
    Site,
    charging_profile_for,
)
from smart_charging.model import SiteEnergy, sample

log = structlog.get_logger()

TX_DEFAULT_ID = 7_100_000
TX_PROFILE_ID = 7_200_000
NON_COMPLIANCE_FACTOR = 1.1


@dataclass
class Held:
    """A profile a station accepted, and over which connection."""

    profile: Payload
    limit: Limit
    transaction_id: str | None
    connection: object
    sent_at: datetime


@dataclass
class EvseMemory:
    """What the scheduler remembers about one EVSE between plans."""

    tx: Held | None = None
    default: Held | None = None
    default_refused_on: object = None  # the connection that refused the TxDefaultProfile
    transaction_id: str | None = None
    rejected_tx: str | None = None
    car_max_kw: float | None = None


@dataclass
class Job:
    """One profile to send, and what came of it."""

    evse: Evse
    profile: Payload
    limit: Limit
    change: Change
    outcome: str = "pending"
    current: Limit | None = None  # what the EVSE held when the job was made


def _compress(slot_starts: tuple[datetime, ...], amps: tuple[float, ...],
              watts: tuple[float, ...]) -> list[list[float]]:
    """[[offset s, A, W], ...] at each change: a plan's setpoints, small enough to store."""
    out: list[list[float]] = []
    for ts, a, w in zip(slot_starts, amps, watts, strict=True):
        row = [round(a, 1), round(w)]
        if not out or out[-1][1:] != row:
            out.append([int((ts - slot_starts[0]).total_seconds()), *row])
    return out


class SitePlanner:
    """Plans one site; keeps one Planner (warm starts) and what each EVSE holds.

    It reads the store and reaches the stations only through `gateway`, so it knows
    nothing of the scheduler that owns it (or of which process that is)."""

    def __init__(self, site: Site, prices: Prices, config: SchedulerConfig, clock: Clock,
                 store: Store, gateway: StationGateway, node: str = "",
                 energy: SiteEnergy | None = None) -> None:
        self.site = site
        self.energy = energy or SiteEnergy()  # stationary batteries and solar (issue 15)
        # each battery's planned energy from the last plan (None: read the stored plan)
        self._battery_plans: dict[str, site_energy.Trajectory] | None = None
        self.prices = prices
        self.config = config
        self.clock = clock
        self.store = store
        self.gateway = gateway
        self.planner = Planner(PlanSettings(slot_minutes=self.config.slot_minutes,
                                            horizon_slots=self.config.horizon_slots))
        self.by_key: dict[EvseKey, Evse] = evse_index(site)
        self.station_ids = sorted({e.station_id for e in site.evses})
        self.departures = DepartureHistory(store, site.id, self.station_ids,
                                           config.learn_departures_days)
        self.memory: dict[str, EvseMemory] = {e.id: EvseMemory() for e in site.evses}
        self.shares = default_shares(site, self.clock.now())
        self._last_power_kw: dict[str, float] = {}  # each EVSE's last sample, for the gauge
        self._ev_load_kw = 0.0
        self._wake = asyncio.Event()
        self._reasons: set[str] = set()
        # this plan's bidirectional EVSEs: how much each may feed back (kW), and versions
        self._discharge_kw: dict[str, float] = {}
        self._versions: dict[str, str | None] = {}
        self.log = log.bind(site_id=site.id, **({"node": node} if node else {}))

    # ----------------------------------------------------------------- triggers

    def trigger(self, reason: str) -> None:
        self._reasons.add(reason)
        self._wake.set()

    async def run(self) -> None:
        """Plan at once (a site just taken over has no owner's plan going out), then on
        the interval and, debounced, after events."""
        self.trigger("start")
        first = True
        while True:
            if (await self._wait(self.config.interval_s) and self.config.debounce_s
                    and not first):
                await self.clock.sleep(self.config.debounce_s)
            first = False
            reasons = ", ".join(sorted(self._reasons)) or "interval"
            self._reasons.clear()
            self._wake.clear()
            try:
                await self.plan_once(reasons)
            except asyncio.CancelledError:
                raise
            except Exception:
                metrics.plans.labels(self.site.id, "error").inc()
                self.log.exception("scheduler.plan_failed", trigger=reasons)

    async def _wait(self, seconds: float) -> bool:
        """Until an event (True) or `seconds` on the clock (False)."""
        if self._wake.is_set():
            return True
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        waker = asyncio.ensure_future(self._wake.wait())
        try:
            await asyncio.wait({sleeper, waker}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            sleeper.cancel()
            waker.cancel()
        return self._wake.is_set()

    # ----------------------------------------------------------------- meter feedback

    def on_power(self, event: PowerSampled) -> None:
        """Non-compliance check, and learning what a car takes, from one power sample."""
        evse = self.by_key.get((event.station_id, event.evse_id))
        if evse is None:
            return
        kw = event.power_w / 1000.0  # the site's measured EV load: each EVSE's last sample
        self._ev_load_kw += kw - self._last_power_kw.get(evse.id, 0.0)
        self._last_power_kw[evse.id] = kw
        metrics.site_ev_load.labels(self.site.id).set(round(self._ev_load_kw, 3))
        mem = self.memory[evse.id]
        grace = timedelta(seconds=self.config.non_compliance_grace_s)
        if mem.tx is not None and mem.tx.transaction_id == mem.transaction_id:
            held: Held | None = mem.tx
            limit = mem.tx.limit.then(self._fallback_w(evse))
        else:
            held = mem.default
            limit = Limit.constant(self._fallback_w(evse))
        if held is None or event.at < held.sent_at + grace:
            return
        allowed = limit.at(event.at)
        # 10% over what it may draw; feeding back (allowed < 0): 10% less than told
        tolerance = abs(allowed) * (NON_COMPLIANCE_FACTOR - 1.0)
        if event.power_w > allowed + tolerance + self.config.non_compliance_margin_w:
            metrics.non_compliance.labels(self.site.id).inc()
            self.log.warning("scheduler.non_compliance", station_id=event.station_id,
                             evse_id=event.evse_id, power_w=round(event.power_w),
                             limit_w=round(allowed))
        if (self.config.learn_car_max and event.power_w > 500.0
                and allowed >= event.power_w + max(1000.0, 0.15 * event.power_w)
                and event.power_w < 0.9 * evse.max_kw * 1000.0):
            seen = event.power_w / 1000.0
            mem.car_max_kw = max(mem.car_max_kw or 0.0, seen)

    def forget_profiles(self, cleared: ChargingProfilesCleared) -> None:
        """K10: profiles were cleared on the station; what it held is no longer known, so
        the next plan sends them again."""
        for evse in self.site.evses:
            if evse.station_id != cleared.station_id or cleared.evse_id not in (
                    None, 0, evse.ocpp_evse_id):
                continue
            mem = self.memory[evse.id]
            if cleared.purpose in (None, "TxProfile") and (
                    cleared.profile_id in (None, TX_PROFILE_ID + evse.ocpp_evse_id)):
                mem.tx = None
            if cleared.purpose in (None, "TxDefaultProfile") and (
                    cleared.profile_id in (None, TX_DEFAULT_ID + evse.ocpp_evse_id)):
                mem.default = None

    def _fallback_w(self, evse: Evse) -> float:
        """What the EVSE may draw without a TxProfile: its TxDefaultProfile, or its max."""
        held = self.memory[evse.id].default
        if held is not None:
            return min(held.limit.at(held.sent_at), evse.max_kw * 1000.0)
        return evse.max_kw * 1000.0

    def _allowance(self, evse: Evse, transaction_id: str | None) -> Limit:
        """What the EVSE may draw now without a new command from us."""
        mem = self.memory[evse.id]
        fallback = self._fallback_w(evse)
        if mem.tx is not None and transaction_id and mem.tx.transaction_id == transaction_id:
            return mem.tx.limit.then(fallback).capped(evse.max_kw * 1000.0)
        return Limit.constant(fallback)

    # ----------------------------------------------------------------- one plan

    async def plan_once(self, trigger: str) -> int:
        """Plan the site, send what changed, store the plan; returns the plan's id."""
        # whole seconds: OCPP times and startPeriods are whole seconds, so every
        # station then switches at exactly the plan's slot boundaries
        cfg, now = self.config, self.clock.now().replace(microsecond=0)
        await self.gateway.prefetch(self.station_ids)
        await self._ensure_defaults()
        active, records = await self._active_transactions()
        stations = await self.store.stations.list()
        booted = {s.id for s in stations if s.last_boot_at is not None}
        # the live connection's version first: the stored one is written in batches and
        # may not be there yet for a station that just connected (a 2.1 station then
        # planned as 2.0.1 would not discharge until the next re-plan)
        self._versions = {s.id: self._live_version(s.id) or s.ocpp_version for s in stations}
        v2g = await self._lenders(records)
        horizon_end = now + timedelta(minutes=cfg.slot_minutes * cfg.horizon_slots)
        overstay = timedelta(seconds=cfg.overstay_s)
        external = external_caps_w(  # K11-K14: limits external systems put on stations
            await self.store.charging.external_limits(self.station_ids), self.site,
            now, horizon_end)
        sessions: list[Session] = []
        summaries: list[dict[str, Any]] = []
        reserved: list[Reservation] = []
        held_for_driver = await self._held_for_drivers(now)
        for evse in self.site.evses:
            mem = self.memory[evse.id]
            tx = active.get(evse.id)
            if tx is None:
                mem.transaction_id, mem.car_max_kw, mem.rejected_tx = None, None, None
                until = held_for_driver.get(evse.id)
                if until is not None:  # block H: a car is expected, as at an idle charger
                    reserved.append(Reservation(evse.id, self._allowance(evse, None),
                                                min(until, horizon_end), "reserved"))
                if evse.station_id in booted and (until is None or until < horizon_end):
                    reserved.append(Reservation(evse.id, self._allowance(evse, None),
                                                horizon_end, "idle", start=until))
                continue
            if mem.transaction_id != tx.transaction_id:
                mem.transaction_id, mem.car_max_kw = tx.transaction_id, None
            connected = self.gateway.connection(evse.station_id) is not None
            if connected:
                departure = departure_for(tx, self.site, now, overstay)[0]
            else:  # offline: the transaction may have ended unseen; no overstay
                departure = tx.departure_time or next_local_time(
                    tx.started_at, self.site.default_departure, self.site.utc_offset)
            free_from = slot_ceil(departure, cfg.slot_minutes)
            if free_from < horizon_end and evse.station_id in booted:
                # once the car has left, the next one may charge at the idle share: plan
                # for it from the end of that slot, so the others are not cut back then
                # (and the car keeps its last slot whole); from now if an offline
                # station's car is due to have left
                reserved.append(Reservation(evse.id, self._allowance(evse, None),
                                            horizon_end, "idle", start=free_from))
            if not connected or mem.rejected_tx == tx.transaction_id:
                if departure > now:
                    limit = self._allowance(evse, tx.transaction_id)
                    if mem.car_max_kw is not None:
                        limit = limit.capped(mem.car_max_kw * 1000.0)
                    reason = "offline" if not connected else "rejected"
                    reserved.append(Reservation(evse.id, limit, departure, reason))
                continue
            car_max = None if mem.car_max_kw is None else mem.car_max_kw * 1.05
            if evse.id in external:
                cap_kw = external[evse.id] / 1000.0
                car_max = cap_kw if car_max is None else min(car_max, cap_kw)
            session, summary = session_for(
                tx, evse, self.site, now, overstay=overstay,
                margin=timedelta(seconds=cfg.departure_margin_s), car_max_kw=car_max)
            session, summary["v2g"] = v2g.session(session, evse)
            sessions.append(session)
            summaries.append(summary)
        grid = await plan_inputs(self.store, self.site, self.prices, now)
        site = with_reservations(grid.site, reserved, now, horizon_end)
        site = v2g.site(site)  # only what can discharge now may (2.1 only)
        started = time.perf_counter()
        departures = await self.departures.model(now)
        token_of = {tx.transaction_id: tx.id_token for tx in records.values() if tx.id_token}
        own = await self.departures.drivers(now, set(token_of.values()))
        drivers = {sid: own[t] for sid, t in token_of.items() if t in own}
        on_site = await self._site_energy(now, horizon_end)  # batteries and solar
        plan = await asyncio.to_thread(self.planner.plan, site, sessions, grid.prices, now,
                                       grid.target_kw, departures, storage=on_site.storage,
                                       solar=on_site.solar, drivers=drivers)
        if self.energy:
            self._battery_plans = site_energy.trajectories(plan, on_site)
        metrics.plan_seconds.labels(self.site.id).observe(time.perf_counter() - started)
        metrics.plans.labels(self.site.id, "fallback" if plan.fallback_used else "solved").inc()
        if plan.fallback_used:
            self.log.warning("scheduler.fallback", reason=plan.fallback_reason)
        jobs = await self._jobs(plan, sessions, now)
        await self._send(jobs)
        record = self._record(plan, trigger, summaries, reserved, site, jobs, sessions)
        record.inputs.update(site_energy.record_entries(plan, on_site, self.site.root.id, {
            n.id: self.site.path_to_root(n.id) for n in self.site.nodes}))
        plan_id = await self.store.plans.add(record)
        self.log.info("scheduler.planned", plan_id=plan_id, trigger=trigger,
                      sessions=len(sessions), reserved=len(reserved), status=plan.status,
                      sent=record.profiles_sent, rejected=record.profiles_rejected)
        return plan_id

    async def _site_energy(self, now: datetime, end: datetime) -> site_energy.SiteEnergyNow:
        """The site's batteries (state of charge now) and solar forecasts; the first plan
        of a site just taken over continues the stored plan's battery trajectories."""
        if self.energy and self._battery_plans is None:
            last = await self.store.plans.latest(self.site.id)
            self._battery_plans = {} if last is None else \
                site_energy.trajectories_from_record(last.inputs, last.planned_at)
        return await site_energy.read_site_energy(self.store, self.site.id, self.energy, now,
                                                  end, self._battery_plans or {})

    async def _held_for_drivers(self, now: datetime) -> dict[str, datetime]:
        """Site EVSEs a station holds for a driver (an Accepted reservation of that EVSE,
        block H), and until when."""
        out: dict[str, datetime] = {}
        for r in await self.store.reservations.active(self.station_ids, now):
            evse = self.by_key.get((r.station_id, r.evse_id or 0))
            if evse is not None:
                out[evse.id] = max(out.get(evse.id, r.expires_at), r.expires_at)
        return out

    async def _active_transactions(self) -> tuple[dict[str, SessionFacts],
                                                  dict[str, Transaction]]:
        """The newest running transaction per site EVSE (an older one left open is stale),
        as the engine's facts and as stored."""
        stations = set(self.station_ids)
        out: dict[str, SessionFacts] = {}
        records: dict[str, Transaction] = {}
        for tx in await self.store.transactions.list(active=True, limit=1_000_000):
            if tx.station_id not in stations or tx.evse_id is None or tx.started_at is None:
                continue
            evse = self.by_key.get((tx.station_id, tx.evse_id))
            if evse is None or evse.id in out:
                continue
            out[evse.id] = SessionFacts(tx.transaction_id, tx.started_at, tx.departure_time,
                                        tx.energy_wanted_wh, tx.energy_wh, tx.charge_now)
            records[evse.id] = tx
        return out, records

    def _live_version(self, station_id: str) -> str | None:
        conn = self.gateway.connection(station_id)
        version = getattr(getattr(conn, "ctx", None), "ocpp_version", None)
        return version if isinstance(version, str) else None

    async def _lenders(self, records: dict[str, Transaction]) -> Lenders:
        """Which running sessions may discharge and how much (csms/v2g_ledger.py); a 2.1
        station that has not reported its V2X variables is asked (once a connection)."""
        async def devices(station_id: str) -> Sequence[Any]:
            found = await self.store.devices.variables(station_id, V2X_COMPONENT)
            if not found:
                await self.gateway.ask_v2x(station_id, sorted(
                    e.ocpp_evse_id for e in self.site.evses if e.station_id == station_id))
                found = await self.store.devices.variables(station_id, V2X_COMPONENT)
            return found

        found = await lenders(self.store, self.site, records, self._versions, devices)
        self._discharge_kw = dict(found.discharge_kw)
        return found

    async def _jobs(self, plan: Plan, sessions: list[Session], now: datetime) -> list[Job]:
        """The TxProfile each planned EVSE should hold, and whether it must be sent."""
        cfg = self.config
        jobs = []
        duration = int((plan.slot_ends[-1] - plan.now).total_seconds())
        for session in sessions:
            evse = self.site.evse(session.evse_id)
            tx_id = session.transaction_id
            assert tx_id is not None
            caps = await self.gateway.capabilities(evse.station_id)
            unit = self._unit(evse, caps)
            profile_id = TX_PROFILE_ID + evse.ocpp_evse_id
            if unit is None:
                profile = zero_profile(tx_id, plan.now, duration, "W", profile_id=profile_id,
                                       stack_level=cfg.stack_level, number_phases=1)
                job = Job(evse, profile, profile_limit(profile, evse, now),
                          Change(False, False, "no supported rate unit"), "unsupported")
                self.memory[evse.id].rejected_tx = tx_id
                self.trigger("no supported rate unit")
                jobs.append(job)
                continue
            try:
                profile = self._profile(plan, evse, profile_id, unit, caps.periods, tx_id)
            except (KeyError, ValueError):  # the engine counts it as full (needs < 20 Wh)
                profile = zero_profile(
                    tx_id, plan.now, duration, unit, profile_id=profile_id,
                    stack_level=cfg.stack_level,
                    number_phases=len(evse.phases) if evse.wiring.value == "wye" else 1)
            limit = profile_limit(profile, evse, now)
            current = self._allowance(evse, tx_id)
            held = self.memory[evse.id].tx
            if (held is not None
                    and held.connection is not self.gateway.connection(evse.station_id)):
                current = Limit.constant(self._fallback_w(evse))  # a new connection: resend
            change = compare(current, limit, now, material_w=cfg.material_change_kw * 1000.0,
                             lookahead=timedelta(seconds=cfg.lookahead_s))
            if not change.send:
                cap_w = 1000.0 * (evse.max_kw if session.max_power_kw is None
                                  else min(evse.max_kw, session.max_power_kw))
                short = falls_short(current, limit.then(self._fallback_w(evse)), now,
                                    session.departure, session.energy_needed_kwh, cap_w,
                                    timedelta(seconds=cfg.lookahead_s))
                if short is not None:
                    change = replace(change, send=True, why=short)
            if change.lower and session.id not in plan.session_ids:
                change = replace(change, send=True)  # counted full: no row covers it
            jobs.append(Job(evse, profile, limit, change,
                            "pending" if change.send else "unchanged", current))
        self._safety_decreases(plan, jobs)
        return jobs

    def _profile(self, plan: Plan, evse: Evse, profile_id: int, unit: str, periods: int,
                 tx_id: str) -> Payload:
        """A 2.1 V2X profile where the EVSE may discharge and the plan has it do so; else
        the charge-only profile, whose limits are floored at 0: a discharge planned for
        an EVSE that cannot be told it (2.0.1) is clamped, logged and counted."""
        cfg = self.config
        if plan.bidirectional:
            schedule = plan.schedule_for(evse.id)
            if discharges(schedule):
                if self._discharge_kw.get(evse.id, 0.0) > 0:
                    return v2x_profile(schedule, profile_id=profile_id, rate_unit=unit,
                                       max_periods=periods, stack_level=cfg.stack_level,
                                       transaction_id=tx_id)
                metrics.discharge_clamped.labels(self.site.id).inc()
                self.log.warning("scheduler.discharge_clamped", station_id=evse.station_id,
                                 evse_id=evse.ocpp_evse_id,
                                 ocpp_version=self._versions.get(evse.station_id),
                                 least_w=round(min(schedule.power_w)))
        return charging_profile_for(plan, evse.id, profile_id=profile_id, rate_unit=unit,
                                    max_periods=periods, stack_level=cfg.stack_level,
                                    transaction_id=tx_id)

    def _safety_decreases(self, plan: Plan, jobs: list[Job]) -> None:
        """Send the small decreases the site needs: with every EVSE holding what it holds
        (or its new profile where that goes), every limit row must hold in every slot."""
        idx = {sid: i for i, sid in enumerate(plan.session_ids)}
        planned = [j for j in jobs if j.current is not None
                   and j.profile.get("transactionId") in idx]
        if not any(j.change.lower and not j.change.send for j in planned):
            return
        n, T = len(plan.session_ids), len(plan.slot_starts)
        held, new = np.zeros((n, T)), np.zeros((n, T))
        sending, optional = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
        rows: dict[int, Job] = {}
        for job in planned:
            i = idx[job.profile["transactionId"]]
            assert job.current is not None
            held[i] = slot_peaks_kw(job.current, plan.slot_starts, plan.slot_ends)
            new[i] = slot_peaks_kw(job.limit, plan.slot_starts, plan.slot_ends)
            sending[i] = job.change.send
            optional[i] = job.change.lower and not job.change.send
            rows[i] = job
        # sessions without a job keep what the plan gives them (nothing to hold against)
        for i in set(range(n)) - set(rows):
            held[i] = new[i] = plan.power_w[i] / 1000.0
        _, why = needed_decreases(plan.row_coef, plan.row_headroom, held, new, sending,
                                  optional)
        for i, (r, t) in why.items():
            job = rows[i]
            node, quantity = plan.rows[r]
            job.change = replace(job.change, send=True, why=(
                f"{job.change.why}; needed: {node} {quantity} over its limit at "
                f"{plan.slot_starts[t].isoformat()} with what the EVSEs hold"))
            job.outcome = "pending"

    def _unit(self, evse: Evse, caps: Capabilities) -> str | None:
        return rate_unit_for(evse, caps)

    async def _send(self, jobs: list[Job]) -> None:
        """Profiles that allow more right away go last, once every decrease has landed;
        stations in parallel (bounded), each station's EVSEs in order."""
        for raises_now in (False, True):
            batch = [j for j in jobs
                     if j.outcome == "pending" and j.change.raises_now == raises_now]
            if raises_now and any(j.outcome.startswith(("rejected", "failed")) for j in jobs):
                # the plan counted on a decrease that did not land: no increase now, and
                # a re-plan at once with that EVSE reserved
                for job in batch:
                    job.outcome = "deferred"
                self.trigger("increases deferred")
                return
            by_station: dict[str, list[Job]] = defaultdict(list)
            for job in batch:
                by_station[job.evse.station_id].append(job)
            await asyncio.gather(*(self.gateway.bounded(self._send_station(sid, js))
                                   for sid, js in by_station.items()))

    async def _send_station(self, station_id: str, jobs: list[Job]) -> None:
        for job in jobs:
            evse, mem = job.evse, self.memory[job.evse.id]
            reply = await self.gateway.set_profile(station_id, evse.ocpp_evse_id, job.profile)
            if reply is None:
                job.outcome = "failed"
                continue
            if reply.get("status") == "Accepted":
                job.outcome = "sent"
                mem.tx = Held(job.profile, job.limit, job.profile.get("transactionId"),
                              self.gateway.connection(station_id), self.clock.now())
                continue
            reason = (reply.get("statusInfo") or {}).get("reasonCode", "none")
            job.outcome = f"rejected: {reason}"
            mem.rejected_tx = job.profile.get("transactionId")
            self.log.warning("scheduler.profile_rejected", station_id=station_id,
                             evse_id=evse.ocpp_evse_id, purpose="TxProfile",
                             reason_code=reason)
            self.trigger("profile rejected")

    async def _ensure_defaults(self) -> None:
        """Give every connected, booted station's EVSEs their TxDefaultProfile share."""
        if not self.config.tx_default_profile:
            return
        todo: dict[str, list[tuple[Evse, Payload]]] = defaultdict(list)
        for evse in self.site.evses:
            if not self.gateway.booted(evse.station_id):
                continue
            conn = self.gateway.connection(evse.station_id)
            mem = self.memory[evse.id]
            if mem.default_refused_on is conn:
                continue
            caps = await self.gateway.capabilities(evse.station_id)
            unit = self._unit(evse, caps)
            if unit is None:
                continue
            profile = default_profile(evse, self.shares[evse.id], unit,
                                      profile_id=TX_DEFAULT_ID + evse.ocpp_evse_id,
                                      stack_level=self.config.stack_level)
            if (mem.default is not None and mem.default.connection is conn
                    and mem.default.profile == profile):
                continue
            todo[evse.station_id].append((evse, profile))

        async def send(station_id: str, items: list[tuple[Evse, Payload]]) -> None:
            for evse, profile in items:
                conn = self.gateway.connection(station_id)
                reply = await self.gateway.set_profile(station_id, evse.ocpp_evse_id, profile,
                                                     purpose="TxDefaultProfile")
                mem = self.memory[evse.id]
                if reply is None:
                    continue
                if reply.get("status") == "Accepted":
                    now = self.clock.now()
                    limit = profile_limit(profile, evse, now).then(evse.max_kw * 1000.0)
                    mem.default = Held(profile, Limit.constant(limit.at(now)), None, conn, now)
                    continue
                mem.default_refused_on = conn
                mem.default = None
                self.log.warning("scheduler.profile_rejected", station_id=station_id,
                                 evse_id=evse.ocpp_evse_id, purpose="TxDefaultProfile",
                                 reason_code=(reply.get("statusInfo") or {}).get("reasonCode"))

        await asyncio.gather(*(self.gateway.bounded(send(s, items)) for s, items in todo.items()))

    # ----------------------------------------------------------------- the stored plan

    def _record(self, plan: Plan, trigger: str, summaries: list[dict[str, Any]],
                reserved: list[Reservation], site: Site, jobs: list[Job],
                sessions: list[Session]) -> PlanRecord:
        starts, ends = list(plan.slot_starts), list(plan.slot_ends)
        root, reserved_root = self.site.root, site.root
        household = sample(root.load_kw, starts, ends, "max", 0.0)
        with_res = sample(reserved_root.load_kw, starts, ends, "max", 0.0)
        limit = reserved_root.limit_over(starts, ends)  # with grid events and overrides
        if len(limit) and np.isfinite(limit[0]):
            metrics.site_limit.labels(self.site.id).set(float(limit[0]))
        if len(household):
            metrics.site_household.labels(self.site.id).set(float(household[0]))

        def kw(values: np.ndarray) -> list[float | None]:
            return [round(float(v), 3) if np.isfinite(v) else None for v in values]

        inputs = {
            "now": starts[0].isoformat(),
            "slot_starts": [t.isoformat() for t in starts],
            "root": root.id,
            "limit_kw": kw(limit),
            "household_kw": kw(household),
            "reserved_kw": kw(with_res - household),
            "ev_headroom_kw": kw(np.clip(limit - household, 0, None)),
            "planned_ev_kw": kw(plan.site_power_kw()),
            "sessions": summaries,
            "reserved": [{
                "evse_id": r.evse_id, "station_id": self.site.evse(r.evse_id).station_id,
                "reason": r.reason, "from": r.begin(starts[0]).isoformat(),
                "until": r.until.isoformat(),
                "max_kw": round(r.peak_kw(starts[0]), 3),
            } for r in reserved],
        }
        by_evse = {j.evse.id: j for j in jobs}
        schedule: dict[str, Any] = {}
        for s in sessions:
            job = by_evse.get(s.evse_id)
            entry: dict[str, Any] = {
                "session_id": s.id, "transaction_id": s.transaction_id,
                "energy_needed_kwh": round(s.energy_needed_kwh, 3),
                "energy_planned_kwh": 0.0, "setpoints": [],
                "profile": job.outcome if job else "none",
                "why": job.change.why if job else "",
            }
            if s.id in plan.session_ids:
                i = plan.session_ids.index(s.id)
                entry["energy_planned_kwh"] = round(float(plan.energy_planned_kwh[i]), 3)
                entry["setpoints"] = _compress(plan.slot_starts, tuple(plan.current_a[i]),
                                               tuple(plan.power_w[i]))
                if plan.discharged_kwh is not None:  # V2G: what it feeds back
                    entry["discharge_planned_kwh"] = round(float(plan.discharged_kwh[i]), 3)
            schedule[s.evse_id] = entry
        outcomes = [j.outcome for j in jobs]
        return PlanRecord(
            site_id=self.site.id, planned_at=plan.now, trigger=trigger,
            sessions=len(sessions), inputs=inputs, schedule=schedule, status=plan.status,
            iterations=plan.iterations, fallback_used=plan.fallback_used,
            fallback_reason=plan.fallback_reason, solve_seconds=plan.solve_seconds,
            build_seconds=plan.build_seconds,
            profiles_sent=outcomes.count("sent"),
            profiles_rejected=sum(o.startswith("rejected") or o == "unsupported"
                                  for o in outcomes),
            profiles_failed=outcomes.count("failed"),
        )
