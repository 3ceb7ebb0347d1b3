"""Bidirectional planning: V2G cars, a site's stationary battery and on-site solar.

Why a problem beside problem.py rather than inside it: the charge-only QP, its
projection, rounding and warm starts all rest on every coefficient being >= 0 (drawing
less never raises a row). Discharge breaks that, so it gets its own small QP, used only
when a site has something that can discharge or solar (`needed`); every other caller
gets the charge-only engine unchanged. See docs/decisions/0025-v2g-engine.md.

Per (lane, slot) pair: charge c >= 0 and discharge d >= 0 at the EVSE (kW, metered),
net p = c - d. A lane with a battery (an opted-in car on a bidirectional EVSE, or a
stationary battery) has its stored energy e after each slot:
e_k = e_{k-1} + eta_ch c_k h - d_k h / eta_dis, reserve <= e_k <= capacity. The driver's
energy counts in the battery: e at departure >= e at arrival + eta_ch x target (what
charging the target alone would store), so a car may lend energy but leaves with it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np
import scipy.sparse as sp

from smart_charging.model import (
    PHASES,
    Evse,
    Prices,
    Session,
    Site,
    SolarForecast,
    StationaryBattery,
    StepSeries,
    Wiring,
    sample,
)
from smart_charging.problem import (
    MIN_NEED_KWH,
    Grid,
    Slots,
    Weights,
    _overlap_hours,
    current_rows,
    make_slots,
)

TOL_KW = 0.01  # final check: row units (kW or A)
TOL_KWH = 1e-3  # final check: stored energy
RELIEF_LOAN_KWH = 0.05  # what `relieve` may borrow from a driver for `top_up` to return


def can_discharge(session: Session, evse: Evse) -> bool:
    """Opted in, a mode that allows discharge, and a bidirectional EVSE."""
    return session.v2g is not None and session.v2g.may_discharge and evse.max_discharge > 0


def needed(site: Site, sessions: Sequence[Session], storage: Sequence[StationaryBattery],
           solar: Sequence[SolarForecast]) -> bool:
    """Whether the bidirectional problem is needed; if not, the charge-only engine runs
    exactly as before (a non-opted-in or charge-only session never goes negative)."""
    if storage or solar:
        return True
    evse = {e.id: e for e in site.evses}
    return any(s.evse_id in evse and can_discharge(s, evse[s.evse_id]) for s in sessions)


@dataclass(frozen=True)
class Lanes:
    """Pairs of every lane (sessions first, then stationary batteries) and the rows.

    `row_coef[r, l]`: row units per kW lane l charges; `dis_coef[r, l]` per kW it
    discharges: -row_coef on rows where currents add as signed numbers (kW rows and
    phase rows with only wye/DC EVSEs), +row_coef elsewhere (line-to-line or primary
    rows, where a safe bound cannot count on relief).
    """

    site: Site
    slots: Slots
    sessions: tuple[Session, ...]
    evses: tuple[Evse, ...]  # per lane; a DC stand-in for a battery's inverter
    batteries: tuple[StationaryBattery, ...]
    pair_lane: np.ndarray
    pair_slot: np.ndarray
    pair_hours: np.ndarray
    cap_c: np.ndarray
    cap_d: np.ndarray
    soc: np.ndarray  # per lane: has a stored-energy state
    e0: np.ndarray
    e_lo: np.ndarray
    e_hi: np.ndarray
    end_lo: np.ndarray
    end_hi: np.ndarray
    eta_c: np.ndarray
    eta_d: np.ndarray
    wear: np.ndarray  # per lane: wear + compensation per kWh discharged
    need: np.ndarray  # metered kWh (0 for batteries)
    target: np.ndarray
    backup: np.ndarray  # per lane: may only cover the site's own load
    rows: tuple[tuple[str, str], ...]
    row_coef: np.ndarray
    dis_coef: np.ndarray
    collinear: np.ndarray
    row_unit: np.ndarray  # kW per row unit
    limit: np.ndarray
    load_hi: np.ndarray
    load_lo: np.ndarray
    root_load: np.ndarray
    root_load_lo: np.ndarray
    price: np.ndarray
    scale_kw: float

    @property
    def n_pairs(self) -> int:
        return len(self.pair_lane)

    @property
    def n_lanes(self) -> int:
        return len(self.evses)

    @property
    def least_root_load(self) -> float:
        return float(self.root_load.min()) if len(self.root_load) else 0.0

    @property
    def upper(self) -> np.ndarray:
        """What the lanes together may add to each row: limit - non-EV load, at least 0
        (when the household alone is over, EVs may not add, only relieve)."""
        return np.clip(self.limit - self.load_hi, 0.0, None)

    def room(self, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        """What more charging each row can take: on signed rows up to the limit itself
        (none where the node is still over it: relief is not for charging another
        car), elsewhere up to `upper`."""
        exact = self.limit - self.load_hi - self.signed_loads(c, d)
        return np.where(self.collinear[:, None], exact, self.upper - self.row_loads(c, d))

    @property
    def lower(self) -> np.ndarray:
        """The least (most negative) the lanes may add: reverse flow within the limit."""
        return np.minimum(-self.limit - self.load_lo, 0.0)

    def row_loads(self, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Lanes' contribution to every row in every slot (R x T), as rows count it."""
        out = np.zeros((len(self.rows), len(self.slots)))
        for r in range(len(self.rows)):
            val = self.row_coef[r, self.pair_lane] * c + self.dis_coef[r, self.pair_lane] * d
            np.add.at(out[r], self.pair_slot, val)
        return out

    def signed_loads(self, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Net contribution on every row (c - d), for reverse-flow limits."""
        out = np.zeros((len(self.rows), len(self.slots)))
        for r in range(len(self.rows)):
            np.add.at(out[r], self.pair_slot, self.row_coef[r, self.pair_lane] * (c - d))
        return out

    def stored(self, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Stored energy after each pair (NaN for lanes without a battery state)."""
        e = np.full(self.n_pairs, np.nan)
        level = self.e0.copy()
        for t in range(len(self.slots)):
            k = np.nonzero(self.pair_slot == t)[0]
            lane = self.pair_lane[k]
            h = self.pair_hours[k]
            level[lane] = level[lane] + (self.eta_c[lane] * c[k] - d[k] / self.eta_d[lane]) * h
            e[k] = np.where(self.soc[lane], level[lane], np.nan)
        return e

    def charged_kwh(self, x: np.ndarray) -> np.ndarray:
        return np.bincount(self.pair_lane, weights=x * self.pair_hours, minlength=self.n_lanes)

    def backup_slack(self, c: np.ndarray, d: np.ndarray) -> np.ndarray:
        """Per slot: room left for behind-the-meter discharge (negative: it exports)."""
        t = len(self.slots)
        dis = np.bincount(self.pair_slot, weights=d * self.backup[self.pair_lane], minlength=t)
        chg = np.bincount(self.pair_slot, weights=c, minlength=t)
        return np.maximum(self.root_load_lo, 0.0) + chg - dis


def _battery_evse(b: StationaryBattery, site: Site) -> Evse:
    """A battery's inverter as a balanced three-phase (DC-like) load on its node."""
    return Evse(id=f"battery:{b.id}", node=b.node, wiring=Wiring.DC,
                max_power_kw=max(b.max_charge_kw, b.max_discharge_kw, 1e-3),
                voltage_v=site.node(b.node).voltage_ln_v, v2g=True,
                max_discharge_kw=b.max_discharge_kw)


def build_lanes(site: Site, sessions: Sequence[Session], prices: Prices, now: datetime,
                weights: Weights, storage: Sequence[StationaryBattery] = (),
                solar: Sequence[SolarForecast] = (), slot_minutes: int = 15,
                horizon_slots: int = 96) -> Lanes:
    """Index the lanes, their pairs and every limit row (two-sided where it is exact)."""
    slots = make_slots(now, slot_minutes, horizon_slots)
    horizon_end = slots.ends[-1]
    evse_by_id = {e.id: e for e in site.evses}
    node_ids = {n.id for n in site.nodes}
    for b in storage:
        if b.node not in node_ids:
            raise ValueError(f"battery {b.id}: unknown node {b.node}")
    for f in solar:
        if f.node not in node_ids:
            raise ValueError(f"solar {f.id}: unknown node {f.node}")

    kept: list[Session] = []
    seen: dict[str, Session] = {}
    for s in sessions:
        if s.evse_id not in evse_by_id:
            raise ValueError(f"session {s.id}: unknown EVSE {s.evse_id}")
        bidi = can_discharge(s, evse_by_id[s.evse_id])
        if s.departure <= now or s.arrival >= horizon_end or (
                s.energy_needed_kwh < MIN_NEED_KWH and not bidi):
            continue
        other = seen.get(s.evse_id)
        if other is not None and other.arrival < s.departure and s.arrival < other.departure:
            raise ValueError(f"sessions {other.id} and {s.id} overlap on EVSE {s.evse_id}")
        seen[s.evse_id] = s
        kept.append(s)
    evses = [evse_by_id[s.evse_id] for s in kept] + [_battery_evse(b, site) for b in storage]
    n_lanes = len(evses)

    slot_s = np.array([t.timestamp() for t in slots.starts])
    slot_e = np.array([t.timestamp() for t in slots.ends])
    pl, pt, ph, cc, cd = [], [], [], [], []
    soc = np.zeros(n_lanes, dtype=bool)
    e0, e_lo, e_hi = np.zeros(n_lanes), np.zeros(n_lanes), np.zeros(n_lanes)
    end_lo, end_hi = np.zeros(n_lanes), np.zeros(n_lanes)
    eta_c, eta_d = np.ones(n_lanes), np.ones(n_lanes)
    wear = np.zeros(n_lanes)
    need, target = np.zeros(n_lanes), np.zeros(n_lanes)
    backup = np.zeros(n_lanes, dtype=bool)
    for j, s in enumerate(kept):
        e = evses[j]
        hours = _overlap_hours(max(s.arrival, now), s.departure, slot_s, slot_e)
        idx = np.nonzero(hours > 1e-9)[0]
        c = e.max_kw if s.max_power_kw is None else min(e.max_kw, s.max_power_kw)
        n = s.energy_needed_kwh if s.energy_needed_kwh >= MIN_NEED_KWH else 0.0
        need[j] = target[j] = n
        if s.departure > horizon_end:  # only what cannot wait until after the horizon
            after = (s.departure - max(horizon_end, s.arrival)).total_seconds() / 3600.0
            target[j] = max(0.0, n - c * after)
        dcap = 0.0
        if can_discharge(s, e):
            v = s.v2g
            assert v is not None
            soc[j] = True
            e0[j], e_hi[j] = v.energy_now_kwh, v.battery_kwh
            eta_c[j], eta_d[j] = v.charge_efficiency, v.discharge_efficiency
            wear[j] = (weights.wear if v.wear_per_kwh is None else v.wear_per_kwh) \
                + v.compensation_per_kwh
            backup[j] = v.mode == "backup_only"
            if v.energy_now_kwh >= v.reserve:  # below the reserve: charge first
                e_lo[j] = v.reserve
                dcap = e.max_discharge if v.max_discharge_kw is None else min(
                    e.max_discharge, v.max_discharge_kw)
            else:
                e_lo[j] = v.energy_now_kwh
            end_hi[j] = min(e0[j] + eta_c[j] * need[j], e_hi[j])
            end_lo[j] = min(e0[j] + eta_c[j] * target[j], end_hi[j])
        pl.append(np.full(len(idx), j))
        pt.append(idx)
        ph.append(hours[idx])
        cc.append(np.full(len(idx), max(c, 0.0)))
        cd.append(np.full(len(idx), dcap))
    for i, b in enumerate(storage):
        j = len(kept) + i
        idx = np.arange(len(slots))
        soc[j] = True
        top = b.capacity_kwh if b.max_kwh is None else b.max_kwh
        e0[j] = b.energy_now_kwh
        e_lo[j], e_hi[j] = min(b.min_kwh, e0[j]), max(top, e0[j])
        end_lo[j] = float(np.clip(e0[j] if b.end_energy_kwh is None else b.end_energy_kwh,
                                  e_lo[j], e_hi[j]))
        end_hi[j] = e_hi[j]
        eta_c[j], eta_d[j] = b.charge_efficiency, b.discharge_efficiency
        wear[j] = weights.wear if b.wear_per_kwh is None else b.wear_per_kwh
        backup[j] = not b.export_allowed
        pl.append(np.full(len(idx), j))
        pt.append(idx)
        ph.append(slots.hours.copy())
        cc.append(np.full(len(idx), b.max_charge_kw))
        cd.append(np.full(len(idx), b.max_discharge_kw if e0[j] >= b.min_kwh else 0.0))

    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    pair_lane, pair_slot = cat(pl, int), cat(pt, int)
    pair_hours, cap_c, cap_d = cat(ph, float), cat(cc, float), cat(cd, float)
    if len(pair_slot):  # no slots after the last pair
        n_slots = int(pair_slot.max()) + 1
        slots = Slots(slots.starts[:n_slots], slots.ends[:n_slots], slots.hours[:n_slots])

    battery_evses = [evses[len(kept) + i] for i in range(len(storage))]
    all_evses = list(site.evses) + battery_evses
    paths = {e.id: set(site.path_to_root(e.node)) for e in all_evses}
    lane_paths = [paths[e.id] for e in evses]

    def solar_under(node_id: str, worst: str) -> np.ndarray:
        out = np.zeros(len(slots))
        for f in solar:
            if node_id in site.path_to_root(f.node):
                out += f.power_kw.over(slots.starts, slots.ends, worst) if slots.starts \
                    else 0.0
        return out

    rows: list[tuple[str, str]] = []
    coefs, limits, his, los, units, col = [], [], [], [], [], []
    root_hi = root_lo = np.zeros(len(slots))
    for n in site.nodes:
        under = np.array([n.id in p for p in lane_paths], dtype=bool)
        hi_kw = sample(n.load_kw, slots.starts, slots.ends, "max", 0.0) - solar_under(n.id, "min")
        lo_kw = sample(n.load_kw, slots.starts, slots.ends, "min", 0.0) - solar_under(n.id, "max")
        if n.parent is None:
            root_hi, root_lo = hi_kw, lo_kw
        lim_kw = n.limit_over(slots.starts, slots.ends)
        if np.isfinite(lim_kw).any():
            rows.append((n.id, "kW"))
            coefs.append(under.astype(float))
            limits.append(lim_kw)
            his.append(hi_kw)
            los.append(lo_kw)
            units.append(1.0)
            col.append(True)
        site_under = [e for e in all_evses if n.id in paths[e.id]]
        for q, coef, amps_per_kw, lim_a in current_rows(n, evses, site_under):
            rows.append((n.id, q))
            coefs.append(np.where(under, coef, 0.0))
            limits.append(np.full(len(slots), lim_a))
            unbalanced = n.phase_load_a.get(q.split("/")[0])
            his.append(hi_kw * amps_per_kw + sample(unbalanced, slots.starts, slots.ends,
                                                     "max", 0.0))
            los.append(lo_kw * amps_per_kw + sample(unbalanced, slots.starts, slots.ends,
                                                     "min", 0.0))
            units.append(n.voltage_ln_v / 1000.0)
            col.append(q in PHASES)
    R, T = len(rows), len(slots)
    row_coef = np.array(coefs).reshape(R, n_lanes)
    collinear = np.array(col, dtype=bool)
    dis_coef = np.where(collinear[:, None], -row_coef, row_coef)
    root = site.root
    scale = root.limit_kw if root.limit_kw else float(sum(e.max_kw for e in all_evses)) or 1.0
    return Lanes(
        site, slots, tuple(kept), tuple(evses), tuple(storage), pair_lane, pair_slot,
        pair_hours, cap_c, cap_d, soc, e0, e_lo, e_hi, end_lo, end_hi, eta_c, eta_d, wear,
        need, target, backup, tuple(rows), row_coef, dis_coef, collinear, np.array(units),
        np.array(limits).reshape(R, T), np.array(his).reshape(R, T),
        np.array(los).reshape(R, T), root_hi, root_lo, prices.slot_cost(
            slots.starts, slots.ends), float(scale))


@dataclass(frozen=True)
class BidiQp:
    """OSQP's form, 1/2 v'Pv + q'v, lo <= Av <= hi, with
    v = [c (K) | d (pairs that may discharge) | e (pairs of battery lanes) | s (lanes) |
    y_ch (T) | y_net (T) | z (0/1) | o (n_o)].
    The attribute names match `problem.Qp` so `solve` can run either."""

    P: sp.csc_matrix
    q: np.ndarray
    A: sp.csc_matrix
    lo: np.ndarray
    hi: np.ndarray
    n_pairs: int
    n_lanes: int
    n_slots: int
    overload_rows: np.ndarray  # (r * T + t) of each o
    d_pairs: np.ndarray  # the pairs that have a discharge variable (may discharge)
    e_pairs: np.ndarray  # the pairs that have a stored-energy variable (battery lanes)
    # what each variable and each constraint row is, stable across plans (lane id, slot
    # end): the planner warm-starts the next plan from the last answer by these keys
    var_keys: tuple[tuple, ...] = ()
    con_keys: tuple[tuple, ...] = ()

    def complete_warm(self, v: np.ndarray, dual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return v, dual

    def warm_from(self, values: dict, duals: dict) -> tuple[np.ndarray, np.ndarray]:
        """The last answer laid out on this problem (0 where it had nothing)."""
        return (np.array([values.get(k, 0.0) for k in self.var_keys]),
                np.array([duals.get(k, 0.0) for k in self.con_keys]))

    def split(self, v: np.ndarray) -> tuple[np.ndarray, ...]:
        """c, d, e (per pair, 0 / NaN where a pair has none) and s (per lane)."""
        K, L = self.n_pairs, self.n_lanes
        nd, ne = len(self.d_pairs), len(self.e_pairs)
        d = np.zeros(K)
        d[self.d_pairs] = v[K : K + nd]
        e = np.full(K, np.nan)
        e[self.e_pairs] = v[K + nd : K + nd + ne]
        return v[:K], d, e, v[K + nd + ne : K + nd + ne + L]


def build_bidi_qp(lanes: Lanes, weights: Weights, demand_charge_per_kw: float = 0.0,
                  target_kw: StepSeries | None = None, margin_kwh: float = 0.0) -> BidiQp:
    """Assemble the bidirectional QP (terms in docs/decisions/0025-v2g-engine.md).

    `margin_kwh` plans each reserve that much higher (where the battery is above it
    now): the solver's tolerance then cannot leave a car a few Wh short of the relief
    it planned, and `relieve` has those Wh to close a limit exactly."""
    w, g = weights, lanes
    K, L, T = g.n_pairs, g.n_lanes, len(g.slots)
    R = len(g.rows)
    dt = g.slots.hours
    S = g.scale_kw
    lane, slot, h = g.pair_lane, g.pair_slot, g.pair_hours
    n_ses = len(g.sessions)
    is_ses = lane < n_ses

    upper, lower = g.upper, g.lower
    # per (row, slot): rows with a pair in them; overload variables where the non-EV
    # load alone is over a two-sided (exactly counted) row
    mc = g.row_coef[:, lane]
    # discharge only where it may happen: a d fixed at 0 in every long row would only
    # add nonzeros (and OSQP's ordering time grows with them)
    md = np.where(g.cap_d > 0, g.dis_coef[:, lane], 0.0)
    r_idx, k_idx = np.nonzero((mc != 0) | (md != 0))
    row_id = r_idx * T + slot[k_idx]
    used = np.unique(row_id)
    excess = (g.load_hi - g.limit).reshape(-1)
    col_rt = np.repeat(g.collinear, T)
    o_rows = used[(excess[used] > 0) & col_rt[used]]
    n_o = len(o_rows)
    track = None if target_kw is None else sample(target_kw, g.slots.starts, g.slots.ends,
                                                   "max", 0.0)
    n_z = 1 if demand_charge_per_kw > 0 else 0
    # discharge and stored-energy variables only where they can be non-zero: a car that
    # may not discharge has neither (fewer variables and rows for OSQP)
    kd = np.nonzero(g.cap_d > 0)[0]
    ke = np.nonzero(g.soc[lane])[0]
    pos_d = np.full(K, -1)
    pos_d[kd] = np.arange(len(kd))
    pos_e = np.full(K, -1)
    pos_e[ke] = np.arange(len(ke))
    c0, d0, e0_ = 0, K, K + len(kd)
    s0 = e0_ + len(ke)
    yc0 = s0 + L
    yn0 = yc0 + T
    z0 = yn0 + T
    o0 = z0 + n_z
    has_target = np.zeros(T, dtype=bool) if track is None else np.isfinite(track)
    track_slots = np.nonzero(has_target)[0]
    n_a = len(track_slots)
    a0 = o0 + n_o  # |y_net - target| per slot with a dispatch target
    n = a0 + n_a

    # objective ---------------------------------------------------------------
    hours_from_now = np.cumsum(dt) - dt / 2
    t_k = hours_from_now[slot]
    opted = np.array([s.opted_out for s in g.sessions] + [False] * (L - n_ses), dtype=bool)
    prio = np.array([s.priority for s in g.sessions] + [1.0] * (L - n_ses))
    delay = np.where(opted[lane], np.minimum(w.opted_out_delay * t_k, w.shortfall / 2),
                     np.where(is_ses, w.early * t_k, 0.0))
    q_c = h * (w.cost * g.price[slot] + delay)
    q_d = h * (-w.cost * g.price[slot] + g.wear[lane])
    p_c = np.where(g.cap_c > 0, 2 * w.fairness * dt[slot] / np.maximum(g.cap_c, 1e-3), 0.0)
    p_d = np.where(g.cap_d > 0, 2 * w.fairness * dt[slot] / np.maximum(g.cap_d, 1e-3), 0.0)
    q_s = np.where(np.arange(L) < n_ses, w.shortfall * prio, 0.0)
    p_s = 2 * w.shortfall_quadratic / np.maximum(g.target, 1.0)
    flat = np.where(has_target, 0.0, w.flatness)
    # flatness shapes charging only (discharging to flatten would pay wear for nothing),
    # measured from the horizon's lowest non-EV load: the same shape as the charge-only
    # engine's (y + load)^2 for a fixed energy, without pricing each extra kWh a V2G car
    # recharges at (load / rating), which would swamp any price spread
    p_yc = 2 * flat * dt / S
    q_yc = 2 * flat * dt * (g.root_load - g.least_root_load) / S
    p_yn, q_yn = np.zeros(T), np.zeros(T)
    if track is not None:
        tw = np.where(has_target, w.tracking, 0.0)
        p_yn = 2 * tw * dt / S
        q_yn = -2 * tw * dt * np.nan_to_num(track) / S
    o_t = o_rows % T
    o_r = o_rows // T
    q_o = w.overload * dt[o_t] * g.row_unit[o_r]
    P = sp.diags(np.concatenate([p_c, p_d[kd], np.zeros(len(ke)), p_s, p_yc, p_yn, np.zeros(n_z),
                                 np.zeros(n_o + n_a)]) + w.regulariser, format="csc")
    q = np.concatenate([q_c, q_d[kd], np.zeros(len(ke)), q_s, q_yc, q_yn,
                        np.full(n_z, demand_charge_per_kw), q_o, w.dispatch * dt[track_slots]])

    # constraints -------------------------------------------------------------
    rows_i: list[np.ndarray] = []
    cols_i: list[np.ndarray] = []
    vals: list[np.ndarray] = []
    los: list[np.ndarray] = []
    his: list[np.ndarray] = []
    m = 0

    con_keys: list[tuple] = []
    lk = [x.id for x in g.sessions] + [f"battery:{b.id}" for b in g.batteries]
    tk = [t.timestamp() for t in g.slots.ends]
    pk = [(lk[j], tk[t]) for j, t in zip(lane.tolist(), slot.tolist(), strict=True)]

    def add(ri: np.ndarray, ci: np.ndarray, vi: np.ndarray, lo: np.ndarray,
            hi: np.ndarray, keys: list[tuple]) -> None:
        nonlocal m
        con_keys.extend(keys)
        rows_i.append(np.asarray(ri, dtype=int) + m)
        cols_i.append(np.asarray(ci, dtype=int))
        vals.append(np.asarray(vi, dtype=float))
        los.append(np.asarray(lo, dtype=float))
        his.append(np.asarray(hi, dtype=float))
        m += len(lo)

    ak = np.arange(K)
    add(ak, c0 + ak, np.ones(K), np.zeros(K), g.cap_c, [("c", x) for x in pk])
    nd, ne = len(kd), len(ke)
    add(np.arange(nd), d0 + np.arange(nd), np.ones(nd), np.zeros(nd), g.cap_d[kd],
        [("d", pk[k]) for k in kd])
    floor = np.where(g.e0 >= g.e_lo + margin_kwh, g.e_lo + margin_kwh, g.e_lo)
    add(np.arange(ne), e0_ + np.arange(ne), np.ones(ne), floor[lane[ke]], g.e_hi[lane[ke]],
        [("e", pk[k]) for k in ke])
    # stored energy: e_k - e_prev - eta_c h c_k + h / eta_d d_k = e0 (first pair) or 0
    order = np.lexsort((slot, lane))
    prev = np.full(K, -1)
    same = lane[order][1:] == lane[order][:-1]
    prev[order[1:][same]] = order[:-1][same]
    ks = ke
    ri = np.arange(len(ks))
    has_prev = prev[ks] >= 0
    has_d = pos_d[ks] >= 0  # below its reserve a car has no discharge variable
    add(np.concatenate([ri, ri, ri[has_d], ri[has_prev]]),
        np.concatenate([e0_ + pos_e[ks], c0 + ks, d0 + pos_d[ks][has_d],
                        e0_ + pos_e[prev[ks][has_prev]]]),
        np.concatenate([np.ones(len(ks)), -g.eta_c[lane[ks]] * h[ks],
                        h[ks][has_d] / g.eta_d[lane[ks][has_d]],
                        -np.ones(int(has_prev.sum()))]),
        np.where(has_prev, 0.0, g.e0[lane[ks]]), np.where(has_prev, 0.0, g.e0[lane[ks]]),
        [("dyn", pk[k]) for k in ks])
    # energy by departure: metered (target - s <= E, E + s <= need) or stored (the last
    # pair's e plus eta_ch s between end_lo and end_hi)
    last = np.full(L, -1)
    last[lane[order]] = order  # the last pair of each lane in slot order
    plain = ~g.soc
    kp = np.nonzero(plain[lane])[0]
    lanes_p = np.nonzero(plain)[0]
    pos = {int(x): i for i, x in enumerate(lanes_p)}
    rp = np.array([pos[int(x)] for x in lane[kp]], dtype=int)
    add(np.concatenate([rp, np.arange(len(lanes_p))]),
        np.concatenate([c0 + kp, s0 + lanes_p]),
        np.concatenate([h[kp], np.ones(len(lanes_p))]), g.target[lanes_p], g.need[lanes_p],
        [("energy", lk[j]) for j in lanes_p])
    lanes_s = np.nonzero(g.soc & (last >= 0))[0]
    rs = np.arange(len(lanes_s))
    add(np.concatenate([rs, rs]), np.concatenate([e0_ + pos_e[last[lanes_s]], s0 + lanes_s]),
        np.concatenate([np.ones(len(lanes_s)), g.eta_c[lanes_s]]), g.end_lo[lanes_s],
        g.end_hi[lanes_s], [("stored", lk[j]) for j in lanes_s])
    al = np.arange(L)
    add(al, s0 + al, np.ones(L), np.zeros(L), np.where(al < n_ses, g.target, 0.0),
        [("s", x) for x in lk])
    # limit rows: two-sided where currents add as signed numbers (with o for what the
    # non-EV load alone is over), upper only (discharge adds, triangle) elsewhere
    pos_rt = np.full(R * T, -1)
    pos_rt[used] = np.arange(len(used))
    ri_all = pos_rt[row_id]
    cv, dv = mc[r_idx, k_idx], md[r_idx, k_idx]
    has_c, has_d = cv != 0, dv != 0
    o_pos = pos_rt[o_rows]
    rt_col = col_rt[used]
    row_hi = (g.limit - g.load_hi).reshape(-1)[used]
    row_hi = np.where(rt_col, row_hi, upper.reshape(-1)[used])
    row_lo = np.where(rt_col, lower.reshape(-1)[used], -np.inf)
    add(np.concatenate([ri_all[has_c], ri_all[has_d], o_pos]),
        np.concatenate([c0 + k_idx[has_c], d0 + pos_d[k_idx[has_d]], o0 + np.arange(n_o)]),
        np.concatenate([cv[has_c], dv[has_d], -np.ones(n_o)]), row_lo, row_hi,
        [("row", g.rows[u // T], tk[u % T]) for u in used.tolist()])
    o_keys = [("o", g.rows[u // T], tk[u % T]) for u in o_rows.tolist()]
    add(np.arange(n_o), o0 + np.arange(n_o), np.ones(n_o), np.zeros(n_o),
        excess[o_rows], o_keys)
    # y_ch = charging per slot, y_net = net per slot
    add(np.concatenate([slot, np.arange(T)]), np.concatenate([c0 + ak, yc0 + np.arange(T)]),
        np.concatenate([np.ones(K), -np.ones(T)]), np.zeros(T), np.zeros(T),
        [("yc", t) for t in tk])
    if track is not None or n_z:  # y_net only where a dispatch or a demand charge uses it
        add(np.concatenate([slot, slot[kd], np.arange(T)]),
            np.concatenate([c0 + ak, d0 + pos_d[kd], yn0 + np.arange(T)]),
            np.concatenate([np.ones(K), -np.ones(len(kd)), -np.ones(T)]), np.zeros(T),
            np.zeros(T), [("yn", t) for t in tk])
    if n_z:  # z >= y_net + non-EV load: the peak a demand charge bills
        at = np.arange(T)
        add(np.concatenate([at, at]), np.concatenate([np.full(T, z0), yn0 + at]),
            np.concatenate([np.ones(T), -np.ones(T)]), g.root_load, np.full(T, np.inf),
            [("z", t) for t in tk])
    if n_a:  # a >= |y_net - target|: the linear dispatch term prices it
        assert track is not None
        ia = np.arange(n_a)
        for sign, lo, hi, name in ((-1.0, np.full(n_a, -np.inf), track[track_slots], "a-"),
                                   (1.0, track[track_slots], np.full(n_a, np.inf), "a+")):
            add(np.concatenate([ia, ia]), np.concatenate([yn0 + track_slots, a0 + ia]),
                np.concatenate([np.ones(n_a), np.full(n_a, sign)]), lo, hi,
                [(name, tk[t]) for t in track_slots.tolist()])
    kb = np.nonzero(g.backup[lane] & (g.cap_d > 0))[0]
    if len(kb):  # behind the meter: backup discharge <= the site's own load + charging
        add(np.concatenate([slot[kb], slot]), np.concatenate([d0 + pos_d[kb], c0 + ak]),
            np.concatenate([np.ones(len(kb)), -np.ones(K)]), np.full(T, -np.inf),
            np.maximum(g.root_load_lo, 0.0), [("backup", t) for t in tk])
    A = sp.csc_matrix((np.concatenate(vals), (np.concatenate(rows_i),
                                              np.concatenate(cols_i))), shape=(m, n))
    var_keys = ([("c", x) for x in pk] + [("d", pk[k]) for k in kd] + [("e", pk[k]) for k in ke]
                + [("s", x) for x in lk] + [("yc", t) for t in tk] + [("yn", t) for t in tk]
                + [("z",)] * n_z + o_keys + [("a", tk[t]) for t in track_slots.tolist()])
    return BidiQp(P, q, A, np.concatenate(los), np.concatenate(his), K, L, T, o_rows, kd, ke,
                  tuple(var_keys), tuple(con_keys))


# --------------------------------------------------------------------------- safety


def project(lanes: Lanes, c: np.ndarray, d: np.ndarray, passes: int = 6
            ) -> tuple[np.ndarray, np.ndarray]:
    """Pull a solver answer inside every limit and battery window.

    Never both at one pair (net them: same power at the EVSE, less loss), then
    alternately: cut discharge where the stored energy would fall below its window and
    charge where it would rise above it, and scale pairs down per row (charging on
    upper rows, discharge on reverse-flow and behind-the-meter rows, both on rows that
    cannot count relief). A few passes settle the solver's tolerance-sized errors;
    `violation` checks the result.
    """
    g = lanes
    c = np.clip(np.nan_to_num(c), 0.0, g.cap_c)
    d = np.clip(np.nan_to_num(d), 0.0, g.cap_d)
    net = c - d
    c, d = np.maximum(net, 0.0), np.maximum(-net, 0.0)
    for _ in range(passes):
        c, d = _fix_stored(g, c, d)
        c, d = _fix_rows(g, c, d)
    return c, d


def _fix_stored(g: Lanes, c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    c, d = c.copy(), d.copy()
    level = g.e0.copy()
    for t in range(len(g.slots)):
        k = np.nonzero(g.pair_slot == t)[0]
        k = k[g.soc[g.pair_lane[k]]]
        lane, h = g.pair_lane[k], g.pair_hours[k]
        ec, ed = g.eta_c[lane], g.eta_d[lane]
        after = level[lane] + (ec * c[k] - d[k] / ed) * h
        low = after < g.e_lo[lane]
        d[k] = np.where(low, np.maximum((level[lane] + ec * c[k] * h - g.e_lo[lane]) * ed / h,
                                        0.0), d[k])
        after = level[lane] + (ec * c[k] - d[k] / ed) * h
        high = after > g.e_hi[lane]
        c[k] = np.where(high, np.maximum((g.e_hi[lane] - level[lane] + d[k] * h / ed)
                                         / (ec * h), 0.0), c[k])
        level[lane] = level[lane] + (ec * c[k] - d[k] / ed) * h
    return c, d


def _scale(g: Lanes, x: np.ndarray, factor: np.ndarray, coef: np.ndarray) -> np.ndarray:
    """Scale each pair by the least factor (R x T) of the rows it has coef in."""
    pf = np.ones(g.n_pairs)
    for r in range(len(g.rows)):
        touches = coef[r, g.pair_lane] != 0
        pf = np.where(touches, np.minimum(pf, factor[r, g.pair_slot]), pf)
    return x * pf


def _fix_rows(g: Lanes, c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    upper, lower = g.upper, g.lower
    col = g.collinear[:, None]
    pos = np.abs(g.row_coef)

    def flows(x: np.ndarray) -> np.ndarray:
        out = np.zeros((len(g.rows), len(g.slots)))
        for r in range(len(g.rows)):
            np.add.at(out[r], g.pair_slot, pos[r, g.pair_lane] * x)
        return out

    with np.errstate(divide="ignore", invalid="ignore"):
        fc, fd = flows(c), flows(d)
        # rows without relief: charge and discharge both count, scale both
        both = np.where(~col & (fc + fd > upper), upper / (fc + fd), 1.0)
        mask = np.where(col, 0.0, pos)
        c, d = _scale(g, c, np.clip(both, 0, 1), mask), _scale(g, d, np.clip(both, 0, 1), mask)
        fc, fd = flows(c), flows(d)
        # reverse flow: discharge at most charging - lower
        rev = np.where(col & (fd > fc - lower), (fc - lower) / fd, 1.0)
        mask = np.where(col, pos, 0.0)
        d = _scale(g, d, np.clip(np.nan_to_num(rev, nan=1.0), 0, 1), mask)
        fc, fd = flows(c), flows(d)
        # upper: charging at most upper + discharge relief
        up = np.where(col & (fc > upper + fd), (upper + fd) / fc, 1.0)
        c = _scale(g, c, np.clip(np.nan_to_num(up, nan=1.0), 0, 1), mask)
    # behind the meter: backup discharge at most the site's own load plus charging
    slack = g.backup_slack(c, d)
    T = len(g.slots)
    dis = np.bincount(g.pair_slot, weights=d * g.backup[g.pair_lane], minlength=T)
    with np.errstate(divide="ignore", invalid="ignore"):
        f = np.where(slack < 0, np.clip((dis + slack) / dis, 0.0, 1.0), 1.0)
    d = np.where(g.backup[g.pair_lane], d * f[g.pair_slot], d)
    return c, d


def round_watts(lanes: Lanes, c: np.ndarray, d: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Whole watts, each rounded the way that keeps the limits: charge down, discharge
    up (a watt less relief would put a node that is at its limit a watt over it), then
    discharge back down only where that watt would cross a battery's reserve."""
    c = np.floor(c * 1000.0 + 1e-9) / 1000.0
    # under half a watt is solver noise, not a planned discharge
    up = np.where(d < 5e-4, 0.0, np.minimum(np.ceil(d * 1000.0 - 1e-9) / 1000.0, lanes.cap_d))
    c2, d2 = _fix_stored(lanes, c, up)
    d = np.where(d2 < up, np.floor(d2 * 1000.0 + 1e-9) / 1000.0, up)
    c = np.where(c2 < c, np.floor(c2 * 1000.0 + 1e-9) / 1000.0, c)
    return c, d


def relieve(lanes: Lanes, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Discharge a little more where a node is still over its limit after solving and
    rounding (the overload is a penalty, so OSQP's tolerance can leave a few watts of
    it), from cars with spare discharge power and energy above their reserve in every
    later slot; whole watts, up."""
    g = lanes
    d = d.copy()
    for r in np.nonzero(g.collinear)[0]:
        over = g.load_hi[r] + g.signed_loads(c, d)[r] - g.limit[r]
        for t in np.nonzero(over > 1e-9)[0]:
            e = g.stored(c, d)
            need = float(over[t])
            k = np.nonzero((g.pair_slot == t) & (g.row_coef[r, g.pair_lane] > 0)
                           & (g.cap_d > d) & (c == 0))[0]
            for kk in k[np.argsort(-(g.cap_d[k] - d[k]))]:
                if need <= 0:
                    break
                j = g.pair_lane[kk]
                later = (g.pair_lane == j) & (g.pair_slot >= t)
                # never below the reserve later, nor more than a few Wh below the
                # driver's energy at the end (`top_up` charges them back in the valley)
                last = np.nonzero(later)[0][np.argmax(g.pair_slot[later])]
                spare = min(float(e[later].min()) - g.e_lo[j],
                            float(e[last]) - g.end_lo[j] + RELIEF_LOAN_KWH
                            if j < len(g.sessions) else np.inf)
                energy = spare * g.eta_d[j] / g.pair_hours[kk]
                coef = g.row_coef[r, j]
                add = min(g.cap_d[kk] - d[kk], max(energy, 0.0), need / coef,
                          _discharge_room(g, c, d, kk))
                add = min(np.ceil(add * 1000.0 - 1e-9) / 1000.0, g.cap_d[kk] - d[kk])
                if add > energy:  # the watt up would cross the reserve
                    add = np.floor(energy * 1000.0) / 1000.0
                if add <= 0:
                    continue
                d[kk] += add
                need -= add * coef
    return d


def _discharge_room(g: Lanes, c: np.ndarray, d: np.ndarray, kk: int) -> float:
    """How much more pair kk may discharge before any other row breaks: reverse flow on
    signed rows, added current on rows without relief, export on behind-the-meter."""
    j, t = g.pair_lane[kk], g.pair_slot[kk]
    out = np.inf
    signed = g.signed_loads(c, d)[:, t]
    loads = g.row_loads(c, d)[:, t]
    for r in np.nonzero(g.row_coef[:, j] > 0)[0]:
        coef = g.row_coef[r, j]
        room = signed[r] - g.lower[r, t] if g.collinear[r] else g.upper[r, t] - loads[r]
        out = min(out, max(room, 0.0) / coef)
    if g.backup[j]:
        out = min(out, max(float(g.backup_slack(c, d)[t]), 0.0))
    return out


def top_up(lanes: Lanes, c: np.ndarray, d: np.ndarray, margin_kwh: float = 0.005
           ) -> np.ndarray:
    """Charge a battery lane that ends short of its driver's energy (a stationary
    battery: of its end energy; solver tolerance, rounding) where every row it counts
    in still has room, latest slots first (the
    valley), in whole watts. Only adds charging where it does not discharge, so the
    energy at departure stays hard without giving up any relief."""
    g = lanes
    c = c.copy()
    e = g.stored(c, d)
    for j in np.nonzero(g.soc)[0]:  # a stationary battery's end energy too
        k = np.nonzero(g.pair_lane == j)[0]
        if len(k) == 0:
            continue
        k = k[np.argsort(g.pair_slot[k])]
        short = g.end_lo[j] - e[k[-1]] + margin_kwh
        if short <= margin_kwh:
            continue
        room = g.room(c, d)
        coef = g.row_coef[:, j]
        for kk in k[::-1]:
            if short <= 0:
                break
            if d[kk] > 0:
                continue
            t = g.pair_slot[kk]
            with np.errstate(divide="ignore", invalid="ignore"):
                fit = np.where(coef > 0, room[:, t] / coef, np.inf)
            # never above the window: what is stored from this slot on
            later = e[k][g.pair_slot[k] >= t]
            window = (g.e_hi[j] - float(later.max())) / (g.eta_c[j] * g.pair_hours[kk])
            add = min(float(fit.min(initial=np.inf)), g.cap_c[kk] - c[kk], window,
                      short / (g.eta_c[j] * g.pair_hours[kk]))
            add = np.floor(max(add, 0.0) * 1000.0) / 1000.0
            if add <= 0:
                continue
            c[kk] += add
            room[:, t] -= coef * add
            gain = g.eta_c[j] * add * g.pair_hours[kk]
            e[k[g.pair_slot[k] >= t]] += gain
            short -= gain
    return c


def driver_short(lanes: Lanes, c: np.ndarray, d: np.ndarray) -> np.ndarray:
    """Per lane, the stored kWh a car that discharges in the plan is short of its
    driver's energy at departure (0 for every other lane)."""
    g = lanes
    e = g.stored(c, d)
    out = np.zeros(g.n_lanes)
    dis = g.charged_kwh(d)
    for j in np.nonzero(g.soc[: len(g.sessions)] & (dis[: len(g.sessions)] > 0))[0]:
        k = np.nonzero(g.pair_lane == j)[0]
        last = k[np.argmax(g.pair_slot[k])]
        out[j] = max(float(g.end_lo[j] - e[last]), 0.0)
    return out


def violation(lanes: Lanes, c: np.ndarray, d: np.ndarray) -> float:
    """Worst excess over any row, reverse-flow limit, power cap, battery window or the
    behind-the-meter rule (0 when all hold; row units, kW or kWh)."""
    g = lanes
    if g.n_pairs == 0:
        return 0.0
    worst = max(float(np.max(c - g.cap_c, initial=0.0)), float(np.max(d - g.cap_d, initial=0.0)),
                float(np.max(-c, initial=0.0)), float(np.max(-d, initial=0.0)))
    worst = max(worst, float(np.max(g.row_loads(c, d) - g.upper, initial=0.0)))
    signed = g.signed_loads(c, d)
    worst = max(worst, float(np.max((g.lower - signed)[g.collinear], initial=0.0)))
    e = g.stored(c, d)
    k = g.soc[g.pair_lane]
    lane = g.pair_lane[k]
    worst = max(worst, float(np.max(g.e_lo[lane] - e[k], initial=0.0)),
                float(np.max(e[k] - g.e_hi[lane], initial=0.0)))
    worst = max(worst, float(np.max(-g.backup_slack(c, d), initial=0.0)))
    return worst


def surrogate_grid(lanes: Lanes, plain: np.ndarray, c: np.ndarray, d: np.ndarray) -> Grid:
    """The charge-only lanes as a `Grid` whose headroom is what the battery lanes leave
    (their charging taken, their discharge given where it relieves, nothing in a slot
    where the node is still over its limit), so the charge-only rounding (minimum
    current, whole amps, carry) runs on them unchanged and safely."""
    g = lanes
    other = ~plain[g.pair_lane]
    c_o, d_o = np.where(other, c, 0.0), np.where(other, d, 0.0)
    taken = g.row_loads(c_o, d_o)
    headroom = np.clip(np.nan_to_num(g.room(c_o, d_o), posinf=1e9), 0.0, None)
    lanes_p = np.nonzero(plain)[0]
    remap = np.full(g.n_lanes, -1)
    remap[lanes_p] = np.arange(len(lanes_p))
    kp = np.nonzero(plain[g.pair_lane])[0]
    return Grid(
        site=g.site, slots=g.slots,
        sessions=tuple(g.sessions[j] for j in lanes_p),
        evses=tuple(g.evses[j] for j in lanes_p),
        pair_session=remap[g.pair_lane[kp]], pair_slot=g.pair_slot[kp],
        pair_hours=g.pair_hours[kp], cap_kw=g.cap_c[kp], need_kwh=g.need[lanes_p],
        target_kwh=g.target[lanes_p], rows=g.rows, row_coef=g.row_coef[:, lanes_p],
        limit=g.limit, load=g.load_hi + taken, headroom=headroom, root_load_kw=g.root_load,
        root_limit_kw=g.site.root.limit_over(g.slots.starts, g.slots.ends), price=g.price,
        scale_kw=g.scale_kw)
