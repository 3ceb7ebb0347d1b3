"""A site's flexibility for the next 24 h: the engine's plan (the baseline) and how far the
EV load can go down (shed) or up (absorb) from each interval, held for a given duration,
while every opted-in session still gets its energy by departure.

One engine plan per site (plugged-in cars plus every car history expects), then closed-form
bounds on the engine's own `Grid` (pair caps, energy needs, limit headroom), so 50 sites
forecast in seconds rather than one solve per interval. Why the bounds hold: a car must draw
inside a window only what it cannot draw outside it at full power (`must`), spread over the
window in proportion to its caps; what the baseline draws above that can be shed, and made up
outside the window within the spare capacity of every limit above the cars that shed it
(the root's, and a full feeder's or phase's). Upward, a car can take up to its caps
until it is full, inside every limit row. "Charge now" (opted-out) cars are never moved.
A V2G car that may discharge (opted in, at a bidirectional EVSE) can go below zero through
a window it is there for all of: within its discharge power, what its battery holds above
the reserve, and what it can charge back outside the window besides its own need.
`engine_check` re-plans with the engine against a shed to confirm it.

The baseline is the engine's plan before whole-amp rounding: what the site draws on
average, since its re-plans make up what each rounding leaves (a car's energy is fixed).
One plan's rounded setpoints are not: they dither between 0 and a car's 6 A minimum, and
at a tight site each interval leaves up to an amp per car unused, so a target of that
baseline minus a share asked for more than the share and could cost drivers energy
(found by the random-site property test, 2026-12-06).

The band: the same bounds under three arrival scenarios (`arrivals.expected`), cars counted
up to the hour's P90, P50 and P10 count (P90: reached on 90% of days, the cautious one).
Flexibility grows with cars, so the band reads as exceedance: `p90` is what is there with
90% confidence.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

import numpy as np

from smart_charging import (
    Evse,
    Plan,
    Planner,
    PlanSettings,
    Prices,
    Session,
    Site,
    StepSeries,
)
from smart_charging.bidirectional import can_discharge
from smart_charging.departures import DepartureModel
from smart_charging.problem import Grid, build_grid, make_slots
from vpp.arrivals import ExpectedArrival

SCENARIOS = ("p90", "p50", "p10")
ENERGY_TOL_KWH = 0.1  # per session: the solver's tolerance on an energy row (OSQP eps 1e-3)


@dataclass(frozen=True)
class Band:
    """One value per interval for each arrival scenario (see the module's docstring)."""

    p90: tuple[float, ...]
    p50: tuple[float, ...]
    p10: tuple[float, ...]

    def of(self, scenario: str) -> tuple[float, ...]:
        return tuple(getattr(self, scenario))

    @staticmethod
    def total(bands: Sequence[Band], n: int) -> Band:
        def add(name: str) -> tuple[float, ...]:
            out = np.zeros(n)
            for b in bands:
                out += np.asarray(getattr(b, name), dtype=float)
            return tuple(float(round(v, 3)) for v in out)
        return Band(add("p90"), add("p50"), add("p10"))


@dataclass(frozen=True)
class Flexibility:
    """A site's (or a portfolio's) forecast: per interval from `slot_starts[i]`, the
    baseline EV load, and the shed and absorb held for `duration` from that interval."""

    site_ids: tuple[str, ...]
    slot_starts: tuple[datetime, ...]
    slot_ends: tuple[datetime, ...]
    duration: timedelta
    baseline_kw: Band
    shed_kw: Band
    absorb_kw: Band
    sessions: int = 0  # plugged in now
    expected: dict[str, float] = field(default_factory=dict)  # cars expected, by scenario
    status: str = ""

    def slot_of(self, t: datetime) -> int | None:
        """The interval containing `t` (None: outside the horizon)."""
        for i, (a, b) in enumerate(zip(self.slot_starts, self.slot_ends, strict=True)):
            if a <= t < b:
                return i
        return None


def scenario_weights(plugged: int, arrivals: Sequence[ExpectedArrival]) -> dict[str, np.ndarray]:
    """How much of each session counts in each scenario: plugged-in cars fully, the
    `rank`-th expected car of an hour by how far the hour's count reaches past it."""
    out = {}
    for name in SCENARIOS:
        w = [min(1.0, max(0.0, _count(a, name) - a.rank)) for a in arrivals]
        out[name] = np.concatenate([np.ones(plugged), np.asarray(w, dtype=float)])
    return out


def _count(a: ExpectedArrival, scenario: str) -> float:
    if scenario == "p90":
        return a.bucket_p90
    if scenario == "p50":
        return a.bucket_p50
    return math.inf  # p10: every car `expected` made (it stops at the hour's P10 count)


def site_flexibility(site: Site, plugged: Sequence[Session], prices: Prices, now: datetime,
                     duration: timedelta, arrivals: Sequence[ExpectedArrival] = (),
                     settings: PlanSettings | None = None,
                     departures: DepartureModel | None = None,
                     drivers: Mapping[str, DepartureModel] | None = None) -> Flexibility:
    """The forecast of one site from `now` (see the module's docstring); `departures`
    and `drivers` (by session id): how its drivers really leave, as the site's
    scheduler plans with them."""
    st = settings or PlanSettings()
    everyone = [*plugged, *(a.session for a in arrivals)]
    weights = scenario_weights(len(plugged), arrivals)
    plan = Planner(st).plan(site, everyone, prices, now, departures=departures,
                            drivers=drivers)
    grid = build_grid(site, everyone, prices, now, st.slot_minutes, st.horizon_slots)
    slots = make_slots(now, st.slot_minutes, st.horizon_slots)
    T = len(slots)
    idx = {s.id: i for i, s in enumerate(everyone)}
    kept = np.array([idx[s.id] for s in grid.sessions], dtype=int)
    base = np.zeros((len(grid.sessions), T))
    row = {sid: i for i, sid in enumerate(plan.session_ids)}
    width = min(len(plan.slot_starts), T)
    for j, s in enumerate(grid.sessions):  # by id: a bidirectional plan orders its own way
        if s.id in row:  # the engine's plan before whole-amp rounding (see the docstring)
            kw = plan.planned_kw[row[s.id], :width]  # a V2G car's net: it may discharge
            base[j, :width] = kw if _lends(s, grid.evses[j]) else np.clip(kw, 0.0, None)
    d = max(1, math.ceil(duration / timedelta(minutes=st.slot_minutes)))
    bands: dict[str, dict[str, np.ndarray]] = {}
    for name, w in weights.items():
        bands[name] = window_bounds(grid, base, T, d, w[kept] if len(kept) else np.zeros(0))
    pick = {key: Band(*(tuple(float(round(v, 3)) for v in bands[n][key]) for n in SCENARIOS))
            for key in ("baseline", "shed", "absorb")}
    return Flexibility(
        (site.id,), slots.starts, slots.ends, duration, pick["baseline"], pick["shed"],
        pick["absorb"], sessions=len(plugged),
        expected={n: round(float(weights[n][len(plugged):].sum()), 2) for n in SCENARIOS},
        status=plan.status)


def window_bounds(grid: Grid, base: np.ndarray, T: int, d: int,
                  weight: np.ndarray) -> dict[str, np.ndarray]:
    """Baseline, shed and absorb per interval for windows of `d` intervals (cut at the
    horizon's end); `base` is sessions x T of planned kW, `weight` each session's share."""
    J = len(grid.sessions)
    out = {k: np.zeros(T) for k in ("baseline", "shed", "absorb")}
    if J == 0:
        return out
    lender = np.array([_lends(s, e) for s, e in zip(grid.sessions, grid.evses, strict=True)])
    # what a kWh lent costs to make up: it comes back through both conversions
    trip = np.array([1.0 / (s.v2g.charge_efficiency * s.v2g.discharge_efficiency)
                     if lends and s.v2g is not None else 1.0
                     for s, lends in zip(grid.sessions, lender, strict=True)])
    Tg = len(grid.slots)
    hours = np.zeros(T)
    hours[:Tg] = grid.slots.hours
    hours[Tg:] = grid.slots.hours[-1] if Tg else 0.25
    cap = np.zeros((J, T))
    cap[:, :Tg] = grid.per_session(grid.cap_kw)
    flexible = np.array([not s.opted_out for s in grid.sessions], dtype=bool)
    cap_kwh = cap * hours
    cum = np.concatenate([np.zeros((J, 1)), np.cumsum(cap_kwh, axis=1)], axis=1)
    total = cum[:, -1]
    wb = weight[:, None] * base
    load = wb.sum(axis=0)
    out["baseline"] = load
    # setpoints are whole amps (or the station's step), rounded down: each car present may
    # leave up to one step of the limit unused
    step = np.array([e.kw_per_amp * (e.current_step_a or 1.0) for e in grid.evses])
    present = cap[:, :Tg] > 0
    lost = step @ present
    # every limit's spare kWh per interval, where what the cars under it shed is made up
    # (the root's and each feeder's or phase's: a full feeder's cars cannot shed what
    # they could not draw again later), in kW at the row's largest coefficient, and no
    # more than the flexible cars under it, present then, can draw above their plan
    makeup: list[tuple[np.ndarray, np.ndarray]] = []  # (cars under it, spare kWh)
    above = np.where(flexible[:, None], weight[:, None] * np.clip(cap - base, 0.0, None), 0.0)
    for r in range(len(grid.rows)):
        coef = grid.row_coef[r]
        if not (coef > 0).any():
            continue
        under = coef > 0
        spare = np.zeros(T)
        spare[:Tg] = np.minimum(
            np.clip(grid.headroom[r] - coef @ wb[:, :Tg] - (coef * step) @ present, 0.0,
                    None) / coef.max(), above[under, :Tg].sum(axis=0)) * hours[:Tg]
        makeup.append((under, spare))
    cut = _cut_shed(grid, base, cap, hours, weight, flexible, lost, T, d)
    flex_kwh = (np.where(flexible, weight, 0.0) @ base) * hours  # flexible baseline energy
    # every row's room in kW, converted by the row's largest coefficient (conservative)
    room = np.full(T, np.inf)
    for r in range(len(grid.rows)):
        coef = grid.row_coef[r]
        if not (coef > 0).any():
            continue
        left = grid.headroom[r] - coef @ wb[:, :Tg]
        room[:Tg] = np.minimum(room[:Tg], np.clip(left, 0.0, None) / coef.max())
    for t in range(T):
        e = min(T, t + d)
        inside = cum[:, e] - cum[:, t]
        with np.errstate(divide="ignore", invalid="ignore"):
            must = np.clip(grid.target_kwh - (total - inside), 0.0, None)
            low = np.where(inside > 0, must / inside, 0.0)
            high = np.where(inside > 0, np.minimum(1.0, grid.need_kwh / inside), 0.0)
        sl = slice(t, e)
        b = base[:, sl]
        floor = np.where(flexible[:, None], low[:, None] * cap[:, sl], b)
        lend = np.zeros(J)  # a V2G car's discharge over the window (kWh at the EVSE)
        if lender.any():
            lend = _lendable(grid, cap, hours, t, e, inside, total, lender, trip)
            floor = np.where(lend[:, None] > 0, -lend[:, None] / float(hours[sl].sum()),
                             floor)
        ceil = np.where(flexible[:, None], np.maximum(b, high[:, None] * cap[:, sl]), b)
        sheddable = weight[:, None] * (b - floor)
        down = float(np.min(sheddable.sum(axis=0)))
        up = float(np.min(np.minimum(weight @ (ceil - b), room[sl])))
        window_h = float(hours[sl].sum())
        # the cars under a limit shed what it can make up (a kWh lent costs `trip` kWh
        # to make up), the others all they can
        for under, spare in makeup:
            others = float((sheddable[~under] @ hours[sl]).sum())
            lost_in_trip = float((weight[under] * lend[under] * (trip[under] - 1.0)).sum())
            down = min(down, (float(spare.sum() - spare[sl].sum()) - lost_in_trip + others)
                       / window_h)
        # nothing to lend where the root cannot carry even the cars' own needs outside
        lent = float(weight @ lend) if np.isinf(cut[t]) else 0.0
        down = min(down, (float(flex_kwh[sl].sum()) + lent) / window_h, float(cut[t]))
        out["shed"][t] = max(0.0, down)
        out["absorb"][t] = max(0.0, up)
    return out


def _lends(session: Session, evse: Evse) -> bool:
    """A V2G car that may discharge here (opted in, a bidirectional EVSE), not "charge
    now"."""
    return can_discharge(session, evse) and not session.opted_out


def _lendable(grid: Grid, cap: np.ndarray, hours: np.ndarray, t: int, e: int,
              inside: np.ndarray, total: np.ndarray, lenders: np.ndarray,
              trip: np.ndarray) -> np.ndarray:
    """Per car, the kWh (at the EVSE) a V2G car can discharge over the window [t, e), 0
    for the others: only a car there the whole window, within its discharge power, what
    its battery holds above the reserve now (charging before the window is not counted),
    and what it can charge back outside the window (through both conversions) on top of
    what it still needs (`trip`: kWh charged back per kWh lent)."""
    out = np.zeros(len(grid.sessions))
    window_h = float(hours[t:e].sum())
    for j in np.flatnonzero(lenders):
        terms, evse = grid.sessions[j].v2g, grid.evses[j]
        if terms is None or not (cap[j, t:e] > 0).all():
            continue
        power = evse.max_discharge if terms.max_discharge_kw is None else min(
            evse.max_discharge, terms.max_discharge_kw)
        stored = max(0.0, terms.energy_now_kwh - terms.reserve) * terms.discharge_efficiency
        back = (total[j] - inside[j] - grid.need_kwh[j]) / trip[j]
        out[j] = max(0.0, min(power * window_h, stored, back))
    return out


def _cut_shed(grid: Grid, base: np.ndarray, cap: np.ndarray, hours: np.ndarray,
              weight: np.ndarray, flexible: np.ndarray, lost: np.ndarray, T: int,
              d: int) -> np.ndarray:
    """Per window start, the most the flexible cars can shed through the window (inf
    where nothing binds), because the root's room outside it (less "charge now" cars
    and rounding) cannot carry all they need by departure. A cut of the transport
    problem (cars -> intervals -> root): for any set A of cars, need(A) <= sum over
    intervals of min(room, caps of A); checked for the sets of cars arriving from a given
    interval and gone by a given departure, the sets that bind when availability is an
    interval per car. What A must draw inside the window it draws while it is there:
    under a target of the baseline less the shed, at most the cars' baseline less the
    shed over those intervals of the window (not over the whole window, where A may have
    left: found by the random-site property test, 2026-12-06)."""
    J, Tg = cap.shape[0], len(grid.slots)
    root = (grid.site.root.id, "kW")
    out = np.full(T, np.inf)
    if root not in grid.rows or J == 0:
        return out
    r = grid.rows.index(root)
    room = np.zeros(T)
    fixed = (~flexible * weight) @ base[:, :Tg]
    room[:Tg] = np.clip(grid.headroom[r] - fixed - lost, 0.0, None)
    present = cap > 0
    arrive = np.where(present.any(axis=1), present.argmax(axis=1), T)
    depart = np.where(present.any(axis=1), T - present[:, ::-1].argmax(axis=1), 0)
    fw = np.where(flexible, weight, 0.0)
    order = np.argsort(depart, kind="stable")
    capw = (fw[:, None] * cap)[order]
    need = (fw * grid.target_kwh)[order]
    gone = depart[order][:, None]  # a prefix's cars have all left by its last departure
    flex_kwh = np.concatenate([[0.0], np.cumsum((fw @ base) * hours)])
    elapsed = np.concatenate([[0.0], np.cumsum(hours)])
    starts = np.arange(T)
    ends = np.minimum(T, starts + d)
    for a in np.unique(arrive[fw > 0]):
        member = arrive[order] >= a
        group = np.minimum(np.cumsum(capw * member[:, None], axis=0), room) * hours
        cum = np.concatenate([np.zeros((J, 1)), np.cumsum(group, axis=1)], axis=1)
        outside = cum[:, -1:] - (cum[:, ends] - cum[:, starts])  # J x windows
        must = np.cumsum(need * member)[:, None] - outside
        lo = np.broadcast_to(np.maximum(starts, a), must.shape)
        hi = np.maximum(lo, np.minimum(ends[None, :], gone))
        there_h = elapsed[hi] - elapsed[lo]
        with np.errstate(divide="ignore", invalid="ignore"):
            bound = np.where((must > 0) & (there_h > 0),
                             (flex_kwh[hi] - flex_kwh[lo] - must) / there_h, np.inf)
        out = np.minimum(out, bound.min(axis=0))
    return out


def total(forecasts: Sequence[Flexibility]) -> Flexibility:
    """A portfolio's forecast: its sites' summed, on the first one's intervals (every
    forecast of one call shares `now`, so their intervals match)."""
    if not forecasts:
        raise ValueError("a portfolio forecast needs at least one site")
    first = forecasts[0]
    n = len(first.slot_starts)
    if any(f.slot_starts != first.slot_starts for f in forecasts):
        raise ValueError("forecasts on different intervals")
    return Flexibility(
        tuple(s for f in forecasts for s in f.site_ids), first.slot_starts, first.slot_ends,
        first.duration, Band.total([f.baseline_kw for f in forecasts], n),
        Band.total([f.shed_kw for f in forecasts], n),
        Band.total([f.absorb_kw for f in forecasts], n),
        sum(f.sessions for f in forecasts),
        {k: round(sum(f.expected.get(k, 0.0) for f in forecasts), 2) for k in SCENARIOS},
        ", ".join(sorted({f.status for f in forecasts})))


def engine_check(site: Site, sessions: Sequence[Session], prices: Prices, now: datetime,
                 target: Sequence[tuple[datetime, datetime, float]],
                 settings: PlanSettings | None = None) -> tuple[np.ndarray, bool]:
    """Plan with the engine following `target` ((start, end, kW) steps, contiguous): the
    planned site load per interval (after rounding), and whether every session still gets,
    in the engine's solution, its energy by departure (the part that cannot wait past the
    horizon); where even the plan without a target cannot serve everyone, whether the
    target costs no energy in total. The solution before rounding to whole amps is judged:
    rounding (and a setpoint under a car's minimum current) loses a little with or without
    a target, and the scheduler's re-plans make it up."""
    st = settings or PlanSettings()
    nan = float("nan")
    times = [now - timedelta(days=1), *(a for a, _, _ in target), target[-1][1]]
    values = [nan, *(kw for _, _, kw in target), nan]
    plan = Planner(st).plan(site, sessions, prices, now, target_kw=StepSeries(
        tuple(times), tuple(values)))
    free = Planner(st).plan(site, sessions, prices, now)
    grid = build_grid(site, sessions, prices, now, st.slot_minutes, st.horizon_slots)

    def solved_kwh(p: Plan) -> np.ndarray:
        return grid.delivered_kwh(p.planned_kw[grid.pair_session, grid.pair_slot])

    got, alone = solved_kwh(plan), solved_kwh(free)
    if np.all(alone >= grid.target_kwh - ENERGY_TOL_KWH):
        short = float(np.max(grid.target_kwh - got, initial=0.0))
    else:  # the site cannot serve everyone anyway: the event may not cost energy in total
        short = float(alone.sum() - got.sum()) / max(1, len(got))
    return plan.site_power_kw(), short <= ENERGY_TOL_KWH


def share_holds(site: Site, plugged: Sequence[Session], arrivals: Sequence[ExpectedArrival],
                prices: Prices, now: datetime, steps: Sequence[tuple[datetime, datetime, float]],
                scenario: str, settings: PlanSettings | None = None) -> bool:
    """Whether the engine follows `steps` ((start, end, kW) targets: a site's baseline
    less or plus its share of an offer) with every session served: the cars plugged in
    and those the history expects at the offer's confidence (`scenario`; a car only
    partly expected is left out). The forecast's bounds are approximations; this is the
    engine's own answer for one site and one window."""
    weights = scenario_weights(len(plugged), arrivals)[scenario]
    cars = [*plugged, *(a.session for a, w in zip(arrivals, weights[len(plugged):],
                                                    strict=True) if w >= 1.0 - 1e-9)]
    if not cars or not steps:
        return True
    return engine_check(site, cars, prices, now, steps, settings)[1]
