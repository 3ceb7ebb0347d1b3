"""The entry point the CSMS scheduler calls: `Planner(settings).plan(site, sessions, prices, now)`.

One Planner per site, kept between calls: it holds the last solution to warm-start the
next solve (re-plans every few minutes move the horizon a little, so the last answer is
a good first guess) and the OSQP workspace to reuse when only numbers changed.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime

import numpy as np

from smart_charging import bidirectional as bidi
from smart_charging.baselines import equal_share
from smart_charging.departures import DepartureModel
from smart_charging.model import (
    Prices,
    Session,
    Site,
    SolarForecast,
    StationaryBattery,
    StepSeries,
    sample,
)
from smart_charging.pattern import Embedded, Pattern, embed
from smart_charging.problem import (
    Grid,
    Qp,
    Weights,
    build_grid,
    build_qp,
    make_slots,
    pair_gone,
)
from smart_charging.setpoints import SHORT_KWH, Rounding, round_setpoints
from smart_charging.solve import (
    OsqpSession,
    SolverSettings,
    project,
    solve_interior,
    violations,
)

DRIVER_TOL_KWH = 0.02  # a discharging car this short at departure: plan charge only
FINE_PAIRS = 20000  # bidirectional plans up to this many pairs solve at eps 1e-4


@dataclass(frozen=True)
class PlanSettings:
    """How to plan: horizon, objective weights, solver limits, rounding."""

    slot_minutes: int = 15
    horizon_slots: int = 96
    weights: Weights = field(default_factory=Weights)
    solver: SolverSettings = field(default_factory=SolverSettings)
    rounding: Rounding = field(default_factory=Rounding)
    warm_start: bool = True
    # keep the QP's sparsity pattern across slot boundaries, departures and arrivals on
    # a kept (EVSE, slot), for up to this many passed slots (0: a new OSQP setup at every
    # boundary or event); see smart_charging/pattern.py
    pattern_slots: int = 8
    # rebuild the pattern (one new OSQP setup) once more than this share of its pairs is
    # dead (passed slots, cars gone): dead variables still cost every iteration
    pattern_dead_share: float = 0.5


@dataclass(frozen=True)
class EvseSchedule:
    """One EVSE's setpoints over the horizon, ready for `profiles.charging_profile_for`."""

    evse_id: str
    session_id: str
    transaction_id: str | None
    slot_starts: tuple[datetime, ...]
    slot_ends: tuple[datetime, ...]
    current_a: tuple[float, ...]
    power_w: tuple[float, ...]
    number_phases: int


@dataclass(frozen=True)
class Plan:
    """A site's plan at `now`: setpoints per session and slot, and why.

    Matrices are sessions x slots in the order of `session_ids`; `power_w`/`current_a`
    are after rounding (what chargers get), `planned_kw` before. `row_load` is the total
    load (non-EV + EVs after rounding) on every limit row of `rows` (node id, "kW" or a
    phase), in kW or A, next to `row_limit`; `row_coef` and `row_headroom` let a caller
    check any other per-session power against every limit (what stations hold).
    """

    site_id: str
    now: datetime
    slot_starts: tuple[datetime, ...]
    slot_ends: tuple[datetime, ...]
    session_ids: tuple[str, ...]
    evse_ids: tuple[str, ...]
    transaction_ids: tuple[str | None, ...]
    number_phases: tuple[int, ...]
    power_w: np.ndarray
    current_a: np.ndarray
    planned_kw: np.ndarray
    energy_needed_kwh: np.ndarray
    energy_planned_kwh: np.ndarray
    rows: tuple[tuple[str, str], ...]
    row_load: np.ndarray
    row_limit: np.ndarray
    row_coef: np.ndarray  # rows x sessions: row units per kW each session draws
    row_headroom: np.ndarray  # rows x slots: limit minus non-EV load, never below 0
    status: str
    iterations: int
    solve_seconds: float
    build_seconds: float
    fallback_used: bool
    fallback_reason: str | None
    pattern_kept: bool = False  # solved on the last plan's sparsity pattern (no new setup)
    solver: str = ""  # "osqp", "clarabel" (OSQP failed, the interior point solved) or ""
    # bidirectional plans only (V2G, storage, solar; see bidirectional.py): power_w and
    # current_a are signed (negative: discharge); per session the kWh it discharges and
    # its stored energy after each slot (NaN without a battery state); per stationary
    # battery its signed power and stored energy; kWh any node stays over its limit
    # because its non-EV load is more than every discharge could relieve
    bidirectional: bool = False
    discharged_kwh: np.ndarray | None = None
    stored_kwh: np.ndarray | None = None
    storage_ids: tuple[str, ...] = ()
    storage_power_kw: np.ndarray | None = None
    storage_stored_kwh: np.ndarray | None = None
    overload_kwh: float = 0.0

    def schedule_for(self, evse_id: str) -> EvseSchedule:
        """The setpoints of the session on `evse_id`; KeyError if it has none."""
        i = self.evse_ids.index(evse_id)
        return EvseSchedule(evse_id, self.session_ids[i], self.transaction_ids[i],
                            self.slot_starts, self.slot_ends,
                            tuple(float(a) for a in self.current_a[i]),
                            tuple(float(w) for w in self.power_w[i]), self.number_phases[i])

    def site_power_kw(self) -> np.ndarray:
        """EV power of the whole site per slot, after rounding."""
        return self.power_w.sum(axis=0) / 1000.0


@dataclass
class _Warm:
    """The last solution, keyed by session id and slot start so it survives a shift."""

    session_index: dict[str, int]
    slot_starts: np.ndarray
    x: np.ndarray  # sessions x slots (NaN where there was no pair)
    dual_x: np.ndarray
    s: np.ndarray
    dual_e: np.ndarray
    dual_s: np.ndarray
    rows: dict[tuple[str, str], int]
    dual_rows: np.ndarray  # rows x slots
    y: np.ndarray
    dual_y: np.ndarray


def _slot_map(old_starts: np.ndarray, new_starts: np.ndarray) -> np.ndarray:
    """For each new slot, the old slot containing its start (-1 if none)."""
    if len(old_starts) == 0:
        return np.full(len(new_starts), -1)
    idx = np.searchsorted(old_starts, new_starts, side="right") - 1
    width = np.median(np.diff(old_starts)) if len(old_starts) > 1 else np.inf
    idx[(idx < 0) | (new_starts >= old_starts[-1] + width)] = -1
    return idx


def _arrival_duals(known_dual_e: np.ndarray, q_s: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Warm duals for new cars' energy rows and shortfall bounds.

    From zeros OSQP needs 10x the iterations of a re-plan to price a new car's energy
    (its energy-row dual is the marginal cost of its energy, a few tenths, not 0).
    Cars already plugged in price theirs at about the same, so the new car starts at
    their median with no shortfall (s = 0, the lower bound of 0 <= s <= target) and that
    bound's dual from stationarity (q_s + dual_e + dual_s = 0). Starting with the
    whole target short (s = target) starts far from the answer: most cars are served.
    """
    de = float(np.median(known_dual_e)) if len(known_dual_e) else 0.0
    return np.full(len(q_s), de), np.minimum(0.0, -(q_s + de))


class Planner:
    """Plans one site; keep one per site so warm starts carry over between calls."""

    def __init__(self, settings: PlanSettings | None = None) -> None:
        self.settings = settings or PlanSettings()
        self._osqp = OsqpSession(self.settings.solver)
        self._bidi_osqp = OsqpSession(self.settings.solver)
        # small bidirectional plans solve to 1e-4: at 1e-3 a single car's arbitrage
        # stopped at 70% of its discharge where the spread barely pays (bench/v2g.py)
        s = self.settings.solver
        self._bidi_osqp_fine = OsqpSession(replace(s, eps_abs=min(s.eps_abs, 1e-4),
                                                   eps_rel=min(s.eps_rel, 1e-4)))
        self._warm: _Warm | None = None
        self._bidi_warm: tuple[dict, dict] | None = None
        self._pattern: Pattern | None = None
        # plans where OSQP did not solve, by its status; plans on the equal-share
        # fallback (every solver failed), by the statuses: for the caller to log/export
        self.osqp_failures: Counter[str] = Counter()
        self.fallbacks: Counter[str] = Counter()

    def plan(self, site: Site, sessions: Sequence[Session], prices: Prices, now: datetime,
             target_kw: StepSeries | None = None,
             departures: DepartureModel | None = None,
             storage: Sequence[StationaryBattery] = (),
             solar: Sequence[SolarForecast] = (),
             drivers: Mapping[str, DepartureModel] | None = None) -> Plan:
        """Plan from `now`; `target_kw` is a site EV power curve to follow (DR dispatch);
        `departures` how the site's drivers really leave against their estimates, and
        `drivers` (by session id) how a driver with enough history of their own does.

        With a session that may discharge (`Session.v2g` opted in, not charge only, on an
        EVSE with `v2g`), a stationary battery or solar, the bidirectional problem plans
        (`target_kw` then counts storage and may be negative: export); otherwise the
        charge-only engine below, unchanged."""
        if bidi.needed(site, sessions, storage, solar):
            return self._plan_bidirectional(site, sessions, prices, now, target_kw,
                                            storage, solar)
        st = self.settings
        t0 = time.perf_counter()
        end = self._kept_end(now)
        grid = build_grid(site, sessions, prices, now, st.slot_minutes, st.horizon_slots, end)
        emb: Embedded | None = None
        if self._pattern is not None and st.pattern_slots > 0:
            emb = embed(grid, self._pattern, st.pattern_slots, st.pattern_dead_share)
        if emb is None and end is not None:  # a new pattern anyway: take the full horizon
            grid = build_grid(site, sessions, prices, now, st.slot_minutes, st.horizon_slots)
        full = emb.full if emb is not None else grid
        gone = pair_gone(full, departures, now, drivers) if (
            departures is not None or drivers) else None
        # the completion term only where energy is short (see `_with_completion`)
        qp = build_qp(full, replace(st.weights, completion=0.0), prices.demand_charge_per_kw,
                      target_kw, gone=gone)
        build_seconds = time.perf_counter() - t0

        fallback_reason: str | None = None
        solver_used = ""
        status, iterations, solve_seconds = "no sessions", 0, 0.0
        x = np.zeros(grid.n_pairs)
        if grid.n_pairs:
            warm_v, warm_d = self._warm_vectors(full, qp) if st.warm_start else (None, None)
            res = self._osqp.solve(qp, warm_v, warm_d)
            solve_seconds = res.setup_seconds + res.solve_seconds
            if not res.ok:  # OSQP's cause, kept for the count whatever rescues the plan
                self.osqp_failures[res.status] += 1
                # the same problem by an interior-point method (scaling-insensitive), then
                # OSQP cold (a bad warm start) and unscaled (tiny end-of-night problems)
                first = res
                if st.solver.interior_backup:
                    res = solve_interior(qp, time_limit_s=st.solver.time_limit_s)
                    solve_seconds += res.setup_seconds + res.solve_seconds
                retries = ([{}] if warm_v is not None else []) + [{"scaling": 0}]
                for kwargs in retries:
                    if res.ok:
                        break
                    res = self._osqp.solve(qp, **kwargs)
                    solve_seconds += res.setup_seconds + res.solve_seconds
                if not res.ok:
                    res = replace(res, status=f"{first.status}; then {res.status}")
            if res.ok and st.weights.completion > 0 and float(np.max(
                    res.v[qp.n_x : qp.n_x + qp.n_s], initial=0.0)) > SHORT_KWH:
                # energy is short: re-solve with the completion term, warm from this answer.
                # Not always on: its per-session prices moved with every re-plan and
                # doubled OSQP's iterations where every car is served anyway
                qp = build_qp(full, st.weights, prices.demand_charge_per_kw, target_kw,
                              gone=gone)
                second = self._osqp.solve(qp, res.v, res.dual)
                solve_seconds += second.setup_seconds + second.solve_seconds
                if not second.ok:
                    self.osqp_failures[second.status] += 1
                    second = solve_interior(qp, time_limit_s=st.solver.time_limit_s)
                    solve_seconds += second.setup_seconds + second.solve_seconds
                if second.ok:
                    res = second
            solver_used = "clarabel" if res.status.startswith("clarabel") else "osqp"
            status, iterations = res.status, res.iterations
            if res.ok:
                v = res.v[: qp.n_x]
                x = project(grid, v[emb.pair_index] if emb is not None else v)
                self._remember(full, qp, res.v, res.dual)
            else:
                fallback_reason = f"solver status {status} after {iterations} iterations"
                self.fallbacks[status] += 1
                x = project(grid, equal_share(grid))
                self._warm = None
        if emb is None:
            self._pattern = Pattern.of(grid)
        track = None if target_kw is None else sample(
            target_kw, grid.slots.starts, grid.slots.ends, "max", 0.0)
        sp = round_setpoints(grid, x, st.rounding, track)
        worst = violations(grid, sp.power_kw)
        if worst > 1e-6:  # cannot happen by construction; refuse to hand out an unsafe plan
            raise AssertionError(f"setpoints exceed a limit by {worst}")
        plan = self._to_plan(grid, x, sp.power_kw, sp.current_a, status, iterations,
                             solve_seconds, build_seconds, fallback_reason)
        return replace(plan, pattern_kept=emb is not None, solver=solver_used)

    # ----------------------------------------------------------------- bidirectional

    def _plan_bidirectional(self, site: Site, sessions: Sequence[Session], prices: Prices,
                            now: datetime, target_kw: StepSeries | None,
                            storage: Sequence[StationaryBattery],
                            solar: Sequence[SolarForecast]) -> Plan:
        """Solve the bidirectional QP (cold: no pattern or warm start yet), then keep the
        driver's energy hard: a car that would discharge and still leave short is
        re-planned without discharge. Anything unsafe falls back to the charge-only
        engine, which ignores storage and solar (both only add room there)."""
        st = self.settings
        t0 = time.perf_counter()
        lanes = bidi.build_lanes(site, sessions, prices, now, st.weights, storage, solar,
                                 st.slot_minutes, st.horizon_slots)
        build_seconds = time.perf_counter() - t0
        K = lanes.n_pairs
        c, d = np.zeros(K), np.zeros(K)
        status, iterations, solve_seconds, solver_used = "no sessions", 0, 0.0, ""
        reason: str | None = None
        o = np.zeros(0)
        qp = None
        for _ in range(2):
            qp = bidi.build_bidi_qp(lanes, st.weights, prices.demand_charge_per_kw, target_kw,
                                    margin_kwh=0.02)
            if K == 0:
                break
            warm_v, warm_d = (qp.warm_from(*self._bidi_warm)
                              if st.warm_start and self._bidi_warm else (None, None))
            osqp_session = self._bidi_osqp_fine if K <= FINE_PAIRS else self._bidi_osqp
            res = osqp_session.solve(qp, warm_v, warm_d)  # type: ignore[arg-type]
            solve_seconds += res.setup_seconds + res.solve_seconds
            if not res.ok:
                self.osqp_failures[res.status] += 1
                res = solve_interior(qp)  # type: ignore[arg-type]
                solve_seconds += res.setup_seconds + res.solve_seconds
            status, iterations = res.status, res.iterations
            solver_used = "clarabel" if res.status.startswith("clarabel") else "osqp"
            if not res.ok:
                reason = f"solver status {status} after {iterations} iterations"
                self._bidi_warm = None
                break
            c, d, _, s = qp.split(res.v)
            # the next plan starts here (keyed by lane and slot end, as `_Warm` is)
            self._bidi_warm = (dict(zip(qp.var_keys, res.v, strict=True)),
                               dict(zip(qp.con_keys, res.dual, strict=True)))
            o = res.v[qp.A.shape[1] - len(qp.overload_rows):]
            dis = lanes.charged_kwh(np.maximum(d, 0.0))
            short = (s > SHORT_KWH) & (dis > 1e-3)
            if not short.any():
                break
            # the driver's energy is hard: no discharge for a car the plan leaves short
            lanes = replace(lanes, cap_d=np.where(short[lanes.pair_lane], 0.0, lanes.cap_d))
        if reason is None:
            c, d = bidi.project(lanes, c, d)
            plain = ~lanes.soc
            plain[len(lanes.sessions):] = False
            grid = bidi.surrogate_grid(lanes, plain, c, d)
            kp = np.nonzero(plain[lanes.pair_lane])[0]
            rounded = round_setpoints(grid, c[kp], st.rounding) if len(kp) else None
            # battery lanes in whole watts (OCPP 2.1 V2X setpoints are in W)
            c, d = bidi.round_watts(lanes, c, d)
            if rounded is not None:
                c[kp] = rounded.power_kw
            relieved = bidi.relieve(lanes, c, d)
            topped = bidi.top_up(lanes, c, relieved)
            # a car whose loan to `relieve` the valley cannot pay back keeps its plan
            back = bidi.driver_short(lanes, topped, relieved) > DRIVER_TOL_KWH
            if back.any():
                relieved = np.where(back[lanes.pair_lane], d, relieved)
                topped = bidi.top_up(lanes, c, relieved)
            c, d = topped, relieved
            worst = bidi.violation(lanes, c, d)
            short = float(np.max(bidi.driver_short(lanes, c, d), initial=0.0))
            if worst > bidi.TOL_KW:
                reason = f"bidirectional plan {worst:.3f} over a limit after rounding"
            elif short > DRIVER_TOL_KWH:  # discharge may never cost a driver energy
                reason = f"a discharging car {short:.3f} kWh short of its driver's energy"
        if reason is not None:  # charge only, the engine every site had before
            self.fallbacks[status] += 1
            plain_plan = self.plan(site, [replace(x, v2g=None) for x in sessions], prices, now,
                                   target_kw)
            return replace(plain_plan, fallback_used=True,
                           fallback_reason=f"{reason}; planned charge only")
        return self._to_bidi_plan(lanes, c, d, o, qp, status, iterations, solve_seconds,
                                  build_seconds, solver_used)

    def _to_bidi_plan(self, g: bidi.Lanes, c: np.ndarray, d: np.ndarray, o: np.ndarray,
                      qp: bidi.BidiQp | None, status: str, iterations: int,
                      solve_seconds: float, build_seconds: float, solver: str) -> Plan:
        J, T = len(g.sessions), len(g.slots)
        net = c - d
        ses = g.pair_lane < J
        power = np.zeros((J, T))
        power[g.pair_lane[ses], g.pair_slot[ses]] = net[ses]
        kpa = np.array([e.kw_per_amp if e.is_ac else np.nan for e in g.evses[:J]])
        with np.errstate(invalid="ignore", divide="ignore"):
            current = np.where(power != 0, power / kpa[:, None], 0.0) if J else power
        e = g.stored(c, d)
        stored = np.full((J, T), np.nan)
        stored[g.pair_lane[ses], g.pair_slot[ses]] = e[ses]
        B = len(g.batteries)
        bat = ~ses
        st_power = np.zeros((B, T))
        st_power[g.pair_lane[bat] - J, g.pair_slot[bat]] = net[bat]
        st_stored = np.zeros((B, T))
        st_stored[g.pair_lane[bat] - J, g.pair_slot[bat]] = e[bat]
        phases = tuple(len(x.phases) if x.wiring.value == "wye" else (1 if x.is_ac else 3)
                       for x in g.evses[:J])
        over = 0.0
        if qp is not None and len(o):
            rt = qp.overload_rows
            kw_rows = np.array([g.rows[r][1] == "kW" for r in rt // T], dtype=bool)
            over = float(np.sum(np.maximum(o, 0.0)[kw_rows] * g.slots.hours[rt % T][kw_rows]))
        return Plan(
            site_id=g.site.id, now=g.slots.starts[0], slot_starts=g.slots.starts,
            slot_ends=g.slots.ends, session_ids=tuple(s.id for s in g.sessions),
            evse_ids=tuple(s.evse_id for s in g.sessions),
            transaction_ids=tuple(s.transaction_id for s in g.sessions), number_phases=phases,
            power_w=power * 1000.0, current_a=current, planned_kw=power.copy(),
            energy_needed_kwh=g.need[:J].copy(),
            energy_planned_kwh=(g.charged_kwh(c) - g.charged_kwh(d))[:J],
            rows=g.rows, row_load=g.load_hi + g.signed_loads(c, d), row_limit=g.limit,
            row_coef=g.row_coef[:, :J].copy(), row_headroom=g.upper,
            status=status, iterations=iterations, solve_seconds=solve_seconds,
            build_seconds=build_seconds, fallback_used=False, fallback_reason=None,
            solver=solver, bidirectional=True, discharged_kwh=g.charged_kwh(d)[:J],
            stored_kwh=stored, storage_ids=tuple(b.id for b in g.batteries),
            storage_power_kw=st_power, storage_stored_kwh=st_stored, overload_kwh=over)

    # ----------------------------------------------------------------- warm start

    def _kept_end(self, now: datetime) -> datetime | None:
        """The last pattern's horizon end, while it is at most `pattern_slots` slots
        short of a full horizon: a horizon end moving with every slot boundary would add
        pairs and change the pattern."""
        st, p = self.settings, self._pattern
        if p is None or st.pattern_slots <= 0:
            return None
        full_end = make_slots(now, st.slot_minutes, st.horizon_slots).ends[-1]
        short = (full_end - p.end).total_seconds() / 60.0 / st.slot_minutes
        return p.end if 0 < short <= st.pattern_slots else None

    def _remember(self, grid: Grid, qp: Qp, v: np.ndarray, dual: np.ndarray) -> None:
        K, J, T = qp.n_x, qp.n_s, len(grid.slots)
        R = len(grid.rows)
        d_rows = np.zeros(R * T)
        n_rows = len(qp.node_row_ids)
        d_rows[qp.node_row_ids] = dual[K + 2 * J : K + 2 * J + n_rows]
        off = K + 2 * J + n_rows
        root = grid.rows.index((grid.site.root.id, "kW")) if (
            (grid.site.root.id, "kW") in grid.rows) else None
        if root is not None:  # the root kW row lives in the y-bound block
            d_rows[root * T : (root + 1) * T] = dual[off + T : off + 2 * T]
        x = np.full((J, T), np.nan)
        x[grid.pair_session, grid.pair_slot] = v[:K]
        dx = np.zeros((J, T))
        dx[grid.pair_session, grid.pair_slot] = dual[:K]
        self._warm = _Warm(
            {s.id: j for j, s in enumerate(grid.sessions)},
            np.array([t.timestamp() for t in grid.slots.starts]),
            x, dx, v[K : K + J].copy(), dual[K : K + J].copy(), dual[K + J : K + 2 * J].copy(),
            {r: i for i, r in enumerate(grid.rows)}, d_rows.reshape(R, T),
            v[K + J : K + J + T].copy(), dual[off : off + T].copy(),
        )

    def _warm_vectors(self, grid: Grid, qp: Qp) -> tuple[np.ndarray | None, np.ndarray | None]:
        w = self._warm
        if w is None:
            return None, None
        K, J, T = qp.n_x, qp.n_s, len(grid.slots)
        new_starts = np.array([t.timestamp() for t in grid.slots.starts])
        tmap = _slot_map(w.slot_starts, new_starts)
        jmap = np.array([w.session_index.get(s.id, -1) for s in grid.sessions], dtype=int)
        pj, pt = jmap[grid.pair_session], tmap[grid.pair_slot]
        have = (pj >= 0) & (pt >= 0)
        x0 = np.zeros(K)
        dx0 = np.zeros(K)
        x0[have] = np.nan_to_num(w.x[pj[have], pt[have]])
        x0 = np.minimum(x0, grid.cap_kw)
        dx0[have] = w.dual_x[pj[have], pt[have]]
        known = jmap >= 0
        s0, de0, ds0 = np.zeros(J), np.zeros(J), np.zeros(J)
        s0[known], de0[known], ds0[known] = (w.s[jmap[known]], w.dual_e[jmap[known]],
                                             w.dual_s[jmap[known]])
        y0, dy0 = np.zeros(T), np.zeros(T)
        ok_t = tmap >= 0
        y0[ok_t], dy0[ok_t] = w.y[tmap[ok_t]], w.dual_y[tmap[ok_t]]
        R = len(grid.rows)
        rmap = np.array([w.rows.get(r, -1) for r in grid.rows], dtype=int)
        d_rows = np.zeros((R, T))
        for r in range(R):
            if rmap[r] >= 0:
                d_rows[r, ok_t] = w.dual_rows[rmap[r], tmap[ok_t]]
        d_rows_used = d_rows.reshape(-1)[qp.node_row_ids]
        root = grid.rows.index((grid.site.root.id, "kW")) if (
            (grid.site.root.id, "kW") in grid.rows) else None
        d_ycap = d_rows[root] if root is not None else np.zeros(T)
        new = ~known & (grid.need_kwh > 0)
        if new.any():  # a car the last plan did not have: see `_arrival_duals`
            de0[new], ds0[new] = _arrival_duals(de0[known & (grid.need_kwh > 0)],
                                                qp.q[K : K + J][new])
        n_z = qp.n_z
        v0 = np.concatenate([x0, s0, y0, np.full(n_z, float(np.max(y0, initial=0.0)))])
        d0 = np.concatenate([dx0, de0, ds0, d_rows_used, dy0, d_ycap, np.zeros(n_z * T)])
        return v0, d0

    # ----------------------------------------------------------------- output

    def _to_plan(self, grid: Grid, x: np.ndarray, power_kw: np.ndarray, current_a: np.ndarray,
                 status: str, iterations: int, solve_seconds: float, build_seconds: float,
                 fallback_reason: str | None) -> Plan:
        cur = np.full((len(grid.sessions), len(grid.slots)), np.nan)
        cur[grid.pair_session, grid.pair_slot] = current_a
        present = grid.per_session(np.ones(grid.n_pairs)) > 0
        cur = np.where(present, cur, 0.0)
        phases = tuple(len(e.phases) if e.wiring.value == "wye" else (1 if e.is_ac else 3)
                       for e in grid.evses)
        return Plan(
            site_id=grid.site.id,
            now=grid.slots.starts[0],
            slot_starts=grid.slots.starts,
            slot_ends=grid.slots.ends,
            session_ids=tuple(s.id for s in grid.sessions),
            evse_ids=tuple(s.evse_id for s in grid.sessions),
            transaction_ids=tuple(s.transaction_id for s in grid.sessions),
            number_phases=phases,
            power_w=grid.per_session(power_kw) * 1000.0,
            current_a=cur,
            planned_kw=grid.per_session(x),
            energy_needed_kwh=grid.need_kwh.copy(),
            energy_planned_kwh=grid.delivered_kwh(power_kw),
            rows=grid.rows,
            row_load=grid.load + grid.row_loads(power_kw),
            row_limit=grid.limit,
            row_coef=grid.row_coef.copy(),
            row_headroom=grid.headroom.copy(),
            status=status,
            iterations=iterations,
            solve_seconds=solve_seconds,
            build_seconds=build_seconds,
            fallback_used=fallback_reason is not None,
            fallback_reason=fallback_reason,
        )
