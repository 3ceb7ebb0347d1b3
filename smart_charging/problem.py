"""From a site, its sessions and prices to a sparse quadratic programme for OSQP.

Decision: power (kW) per (session, slot) pair, only where the car is plugged in, so a
1,000-session site has ~50k variables instead of a dense N x T block. Every limit is a
linear row (node kW, node phase current), the objective is a sum of weighted terms
(see docs/decisions/engine-rules.md). The `Grid` (which pairs exist, their caps, the
limit rows and headroom) is shared with the baselines, the fallback and the rounding.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

import numpy as np
import scipy.sparse as sp

from smart_charging.model import PHASES, Evse, Prices, Session, Site, StepSeries, sample

MIN_FIRST_SLOT = timedelta(seconds=60)
MIN_NEED_KWH = 0.02  # below this a session counts as full: tiny targets stall OSQP


@dataclass(frozen=True)
class Weights:
    """Objective weights, in currency per kWh at full scale so they compare with prices.

    `shortfall` must stay above every other marginal term (prices, flatness, early) so
    energy by departure dominates; the rest trade off among themselves.
    """

    shortfall: float = 20.0
    shortfall_quadratic: float = 1.0
    cost: float = 1.0
    flatness: float = 0.5
    fairness: float = 0.01
    tracking: float = 200.0
    early: float = 0.001
    opted_out_delay: float = 2.0
    regulariser: float = 1e-6


@dataclass(frozen=True)
class Slots:
    """The horizon: slot 0 starts at `now` and ends at the next slot boundary."""

    starts: tuple[datetime, ...]
    ends: tuple[datetime, ...]
    hours: np.ndarray

    def __len__(self) -> int:
        return len(self.starts)


def make_slots(now: datetime, slot_minutes: int, count: int) -> Slots:
    """Slots aligned to whole multiples of the slot length (UTC), starting at `now`.

    A first slot shorter than a minute is merged into the next so no slot is degenerate.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if count < 1 or slot_minutes < 1:
        raise ValueError("need at least one slot of at least a minute")
    step = timedelta(minutes=slot_minutes)
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    boundary = epoch + ((now - epoch) // step + 1) * step
    if boundary - now < MIN_FIRST_SLOT:
        boundary += step
    starts = [now] + [boundary + i * step for i in range(count - 1)]
    ends = [*starts[1:], starts[-1] + step if count > 1 else boundary]
    hours = np.array([(b - a).total_seconds() / 3600.0 for a, b in zip(starts, ends, strict=True)])
    return Slots(tuple(starts), tuple(ends), hours)


@dataclass(frozen=True)
class Grid:
    """Which (session, slot) pairs exist and every limit they share.

    Row r of `rows` is a (node id, quantity) pair, quantity "kW" or a phase "L1".."L3";
    `row_coef[r, j]` is how much session j's EVSE adds to row r per kW it draws;
    `headroom[r, t]` is the row's limit minus its non-EV load, never below zero.
    """

    site: Site
    slots: Slots
    sessions: tuple[Session, ...]
    evses: tuple[Evse, ...]
    pair_session: np.ndarray
    pair_slot: np.ndarray
    pair_hours: np.ndarray
    cap_kw: np.ndarray
    need_kwh: np.ndarray
    target_kwh: np.ndarray
    rows: tuple[tuple[str, str], ...]
    row_coef: np.ndarray
    limit: np.ndarray
    load: np.ndarray
    headroom: np.ndarray
    root_load_kw: np.ndarray
    root_limit_kw: np.ndarray
    price: np.ndarray
    scale_kw: float

    @property
    def n_pairs(self) -> int:
        return len(self.pair_session)

    def slot_pairs(self) -> list[np.ndarray]:
        """Pair indices per slot, in increasing order."""
        order = np.argsort(self.pair_slot, kind="stable")
        bounds = np.searchsorted(self.pair_slot[order], np.arange(len(self.slots) + 1))
        return [order[bounds[t] : bounds[t + 1]] for t in range(len(self.slots))]

    def row_matrix(self) -> sp.csr_matrix:
        """Sparse (rows x slots) by pairs: entry (r*T + t, k) = row_coef[r, session(k)]."""
        n_rows, n_slots = len(self.rows), len(self.slots)
        coef = self.row_coef[:, self.pair_session]  # R x K
        r_idx, k_idx = np.nonzero(coef)
        data = coef[r_idx, k_idx]
        return sp.csr_matrix(
            (data, (r_idx * n_slots + self.pair_slot[k_idx], k_idx)),
            shape=(n_rows * n_slots, self.n_pairs),
        )

    def row_loads(self, x: np.ndarray) -> np.ndarray:
        """EV load on every row in every slot (R x T), in the row's unit."""
        out = np.zeros((len(self.rows), len(self.slots)))
        for r in range(len(self.rows)):
            np.add.at(out[r], self.pair_slot, self.row_coef[r, self.pair_session] * x)
        return out

    def delivered_kwh(self, x: np.ndarray) -> np.ndarray:
        """Energy each session gets from schedule x."""
        return np.bincount(self.pair_session, weights=x * self.pair_hours,
                           minlength=len(self.sessions))

    def per_session(self, x: np.ndarray) -> np.ndarray:
        """Pair values as a sessions x slots matrix (zero where a car is not plugged in)."""
        out = np.zeros((len(self.sessions), len(self.slots)))
        out[self.pair_session, self.pair_slot] = x
        return out


def _overlap_hours(a: datetime, b: datetime, s: np.ndarray, e: np.ndarray) -> np.ndarray:
    """Hours of [a, b) inside each slot [s, e) (slot bounds as POSIX seconds)."""
    return np.clip(np.minimum(e, b.timestamp()) - np.maximum(s, a.timestamp()), 0, None) / 3600.0


def build_grid(site: Site, sessions: Sequence[Session], prices: Prices, now: datetime,
               slot_minutes: int = 15, horizon_slots: int = 96) -> Grid:
    """Index the plugged-in (session, slot) pairs and the limit rows of `site`."""
    slots = make_slots(now, slot_minutes, horizon_slots)
    horizon_end = slots.ends[-1]
    evse_by_id = {e.id: e for e in site.evses}

    kept: list[Session] = []
    seen_evse: dict[str, Session] = {}
    for s in sessions:
        if s.evse_id not in evse_by_id:
            raise ValueError(f"session {s.id}: unknown EVSE {s.evse_id}")
        if s.departure <= now or s.energy_needed_kwh < MIN_NEED_KWH or s.arrival >= horizon_end:
            continue
        other = seen_evse.get(s.evse_id)
        if other is not None and other.arrival < s.departure and s.arrival < other.departure:
            raise ValueError(f"sessions {other.id} and {s.id} overlap on EVSE {s.evse_id}")
        seen_evse[s.evse_id] = s
        kept.append(s)
    evses = tuple(evse_by_id[s.evse_id] for s in kept)

    slot_s = np.array([t.timestamp() for t in slots.starts])
    slot_e = np.array([t.timestamp() for t in slots.ends])
    ps, pt, ph, cap = [], [], [], []
    need = np.array([s.energy_needed_kwh for s in kept])
    target = need.copy()
    for j, (s, e) in enumerate(zip(kept, evses, strict=True)):
        hours = _overlap_hours(max(s.arrival, now), s.departure, slot_s, slot_e)
        idx = np.nonzero(hours > 1e-9)[0]
        c = e.max_kw if s.max_power_kw is None else min(e.max_kw, s.max_power_kw)
        ps.append(np.full(len(idx), j))
        pt.append(idx)
        ph.append(hours[idx])
        cap.append(np.full(len(idx), max(c, 0.0)))
        if s.departure > horizon_end:  # only what cannot wait until after the horizon
            after = (s.departure - max(horizon_end, s.arrival)).total_seconds() / 3600.0
            target[j] = max(0.0, need[j] - c * after)
    def cat(parts: list[np.ndarray], dtype: type) -> np.ndarray:
        return np.concatenate(parts).astype(dtype) if parts else np.zeros(0, dtype=dtype)

    pair_session = cat(ps, int)
    pair_slot = cat(pt, int)
    pair_hours = cat(ph, float)
    cap_kw = cat(cap, float)
    if len(pair_slot):  # no slots after the last departure: empty slots only slow OSQP
        n_slots = int(pair_slot.max()) + 1
        slots = Slots(slots.starts[:n_slots], slots.ends[:n_slots], slots.hours[:n_slots])

    paths = {e.id: set(site.path_to_root(e.node)) for e in site.evses}
    rows: list[tuple[str, str]] = []
    limits, loads = [], []
    for n in site.nodes:
        load_kw = sample(n.load_kw, slots.starts, slots.ends, "max", 0.0)
        lim_kw = n.limit_over(slots.starts, slots.ends)
        if np.isfinite(lim_kw).any():
            rows.append((n.id, "kW"))
            limits.append(lim_kw)
            loads.append(load_kw)
        if n.phase_limit_a is not None:
            for p in PHASES:
                rows.append((n.id, p))
                limits.append(np.full(len(slots), float(n.phase_limit_a)))
                loads.append(load_kw * 1000.0 / (3 * n.voltage_ln_v))
    row_coef = np.zeros((len(rows), len(kept)))
    for r, (node_id, q) in enumerate(rows):
        for j, e in enumerate(evses):
            if node_id in paths[e.id]:
                row_coef[r, j] = 1.0 if q == "kW" else e.phase_amps_per_kw(q)
    limit = np.array(limits).reshape(len(rows), len(slots))
    load = np.array(loads).reshape(len(rows), len(slots))
    headroom = np.clip(limit - load, 0.0, None)

    root = site.root
    root_load = sample(root.load_kw, slots.starts, slots.ends, "max", 0.0)
    root_limit = root.limit_over(slots.starts, slots.ends)
    scale = root.limit_kw if root.limit_kw else float(sum(e.max_kw for e in site.evses)) or 1.0
    price = prices.energy_price(slots.starts, slots.ends)
    return Grid(site, slots, tuple(kept), evses, pair_session, pair_slot, pair_hours, cap_kw,
                need, target, tuple(rows), row_coef, limit, load, headroom, root_load,
                root_limit, price, float(scale))


@dataclass(frozen=True)
class Qp:
    """OSQP's form: minimise 1/2 v'Pv + q'v subject to l <= Av <= u.

    v = [x (pairs, kW), s (shortfall per session, kWh), y (site EV kW per slot),
    z (site peak kW, only with a demand charge)]. `row_*` give where each block of
    constraints starts in A.
    """

    P: sp.csc_matrix
    q: np.ndarray
    A: sp.csc_matrix
    lo: np.ndarray
    hi: np.ndarray
    n_x: int
    n_s: int
    n_y: int
    n_z: int
    node_row_ids: np.ndarray  # which (r*T + t) rows of the limit matrix are in A


def build_qp(grid: Grid, weights: Weights, demand_charge_per_kw: float = 0.0,
             target_kw: StepSeries | None = None) -> Qp:
    """Assemble the sparse QP; see docs/decisions/engine-rules.md for the terms."""
    w = weights
    K, J, T = grid.n_pairs, len(grid.sessions), len(grid.slots)
    dt = grid.slots.hours
    S = grid.scale_kw
    track = None
    if target_kw is not None:
        track = sample(target_kw, grid.slots.starts, grid.slots.ends, "max", 0.0)
    n_z = 1 if demand_charge_per_kw > 0 else 0
    n_y = T
    n = K + J + n_y + n_z

    # objective ---------------------------------------------------------------
    hours_from_now = np.cumsum(dt) - dt / 2
    t_k = hours_from_now[grid.pair_slot]
    opted = np.array([s.opted_out for s in grid.sessions], dtype=bool)
    prio = np.array([s.priority for s in grid.sessions])
    delay = np.where(opted[grid.pair_session],
                     np.minimum(w.opted_out_delay * t_k, w.shortfall / 2), w.early * t_k)
    q_x = grid.pair_hours * (w.cost * grid.price[grid.pair_slot] + delay)
    p_x = 2 * w.fairness * dt[grid.pair_slot] / np.maximum(grid.cap_kw, 1e-3) + w.regulariser
    q_s = w.shortfall * prio
    p_s = 2 * w.shortfall_quadratic / np.maximum(grid.target_kwh, 1.0) + w.regulariser
    # flatness where there is no target to follow (a NaN target means none in that slot)
    has_target = np.zeros(T, dtype=bool) if track is None else np.isfinite(track)
    flat = np.where(has_target, 0.0, w.flatness)
    p_y = 2 * flat * dt / S + w.regulariser
    q_y = 2 * flat * dt * grid.root_load_kw / S
    if track is not None:
        tw = np.where(has_target, w.tracking, 0.0)
        p_y = p_y + 2 * tw * dt / S
        q_y = q_y - 2 * tw * dt * np.nan_to_num(track) / S
    p_z = np.full(n_z, w.regulariser)
    q_z = np.full(n_z, demand_charge_per_kw)
    P = sp.diags(np.concatenate([p_x, p_s, p_y, p_z]), format="csc")
    q = np.concatenate([q_x, q_s, q_y, q_z])

    # constraints -------------------------------------------------------------
    ar = np.arange(K)
    blocks: list[sp.spmatrix] = []
    los: list[np.ndarray] = []
    his: list[np.ndarray] = []

    def add(mat: sp.spmatrix, lo: np.ndarray, hi: np.ndarray) -> None:
        blocks.append(mat)
        los.append(lo)
        his.append(hi)

    # 0 <= x <= cap
    add(sp.csr_matrix((np.ones(K), (ar, ar)), shape=(K, n)), np.zeros(K), grid.cap_kw)
    # target - shortfall <= energy <= need
    E = sp.csr_matrix((grid.pair_hours, (grid.pair_session, ar)), shape=(J, n))
    E = E + sp.csr_matrix((np.ones(J), (np.arange(J), K + np.arange(J))), shape=(J, n))
    add(E, grid.target_kwh, grid.need_kwh)
    # 0 <= shortfall <= target
    add(sp.csr_matrix((np.ones(J), (np.arange(J), K + np.arange(J))), shape=(J, n)),
        np.zeros(J), grid.target_kwh)
    # every limit row in every slot that has an EV under it; the root's kW row is the
    # site total y_t, so it becomes a bound on y instead of a second copy of the sum
    M = grid.row_matrix()
    root_row = grid.rows.index((grid.site.root.id, "kW")) if (
        (grid.site.root.id, "kW") in grid.rows) else -1
    keep = np.diff(M.indptr) > 0
    if root_row >= 0:
        keep[root_row * T : (root_row + 1) * T] = False
    used = np.nonzero(keep)[0]
    M = M[used]
    M.resize((len(used), n))
    add(M, np.full(len(used), -np.inf), grid.headroom.reshape(-1)[used])
    # y_t = site EV load in slot t
    Y = sp.csr_matrix((np.ones(K), (grid.pair_slot, ar)), shape=(T, n))
    Y = Y - sp.csr_matrix((np.ones(T), (np.arange(T), K + J + np.arange(T))), shape=(T, n))
    add(Y, np.zeros(T), np.zeros(T))
    y_cap = grid.headroom[root_row] if root_row >= 0 else np.full(T, np.inf)
    add(sp.csr_matrix((np.ones(T), (np.arange(T), K + J + np.arange(T))), shape=(T, n)),
        np.full(T, -np.inf), y_cap)
    if n_z:  # z >= y_t + non-EV load: the peak the demand charge bills
        Z = sp.csr_matrix((np.concatenate([np.ones(T), -np.ones(T)]),
                           (np.concatenate([np.arange(T)] * 2),
                            np.concatenate([np.full(T, n - 1), K + J + np.arange(T)]))),
                          shape=(T, n))
        add(Z, grid.root_load_kw, np.full(T, np.inf))
    A = sp.vstack(blocks, format="csc")
    return Qp(P, q, A, np.concatenate(los), np.concatenate(his), K, J, n_y, n_z, used)
