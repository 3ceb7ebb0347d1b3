"""From a site, its sessions and prices to a sparse quadratic programme for OSQP.

Decision: power (kW) per (session, slot) pair, only where the car is plugged in, so a
1,000-session site has ~50k variables instead of a dense N x T block. Every limit is a
linear row (node kW, node phase current), the objective is a sum of weighted terms
(see docs/decisions/0001-engine-rules.md). The `Grid` (which pairs exist, their caps, the
limit rows and headroom) is shared with the baselines, the fallback and the rounding.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import lru_cache

import numpy as np
import scipy.sparse as sp
from scipy.spatial import ConvexHull

from smart_charging.departures import DepartureModel
from smart_charging.model import (
    PHASES,
    Evse,
    Node,
    Prices,
    Session,
    Site,
    StepSeries,
    Wiring,
    sample,
)

MIN_FIRST_SLOT = timedelta(seconds=60)
MIN_NEED_KWH = 0.02  # below this a session counts as full: tiny targets stall OSQP
GROUP_MIN = 1000  # sessions alike in every limit row are summed per slot from this many


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
    # per kWh the site's EV load is off a dispatch target, besides the quadratic
    # `tracking`: a linear (exact) penalty, so a committed reduction is held exactly where
    # it costs no driver energy, however far under the plan it is (the quadratic alone
    # gave way to the departure risk, up to 4 x shortfall per kWh). Above cost, flatness
    # and the usual departure risk, below `shortfall`: a driver's energy by departure
    # still wins, the site then falls short and the portfolio re-splits (vpp/dispatch.py)
    dispatch: float = 18.0
    early: float = 0.001
    opted_out_delay: float = 2.0
    regulariser: float = 1e-6
    # a kWh planned where history says the car has probably left (`departures.py`)
    # costs this share of the shortfall weight times that probability: 1 prices it at
    # its expected loss; nothing without a learnt departure model. 4: chosen on
    # Caltech May-June 2019 in three rounds (1 -> 2: +0.31 points of energy, +4 sessions;
    # 2 -> 3: +0.07, +24; 3 -> 4: +0.03, +9; completion 5 and flatness 0.1 lost or broke
    # the residential valley, bench/RESULTS.md), never on the held-out July-August
    departure_risk: float = 4.0
    # sessions completed, after energy: a session's completion is worth this much, spread
    # over the kWh it still needs (so a car close to full is finished first when
    # energy is short); nothing changes where every car can be served
    completion: float = 20.0
    # bidirectional plans only (smart_charging/bidirectional.py). Battery wear per kWh
    # discharged (CNY; ~800 CNY/kWh of pack over ~3,000 cycles), so a car discharges
    # only where a price spread, a limit or a dispatch pays more than wear and losses
    wear: float = 0.25
    # per kWh a node stays over its limit because of its non-EV load: above any spread
    # plus wear (so discharging to relieve it pays), below `shortfall` (so relief never
    # costs a driver energy)
    overload: float = 10.0


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


@lru_cache(maxsize=16)
def inner_rows(phasors: tuple[complex, ...], grid: int = 4) -> np.ndarray:
    """Rows R (k x n, all >= 0) with max_i (R x)_i >= |sum_j phasors_j x_j| for every
    x >= 0: a safe polyhedral inner approximation of the second-order cone of a line
    current fed by n groups of loads whose currents have fixed angles.

    The largest downward-closed part of the cone (where drawing less never raises the
    current) is convex; points on its boundary along rays of a simplex grid (plus the
    balanced ray) and their projections span a polytope inside it, and that polytope's
    facets are the rows. Exact on every grid ray, so exact for one group alone and for a
    balanced load.
    """
    z = np.asarray(phasors, dtype=complex)
    n = len(z)
    corners = np.array(list(itertools.product((0.0, 1.0), repeat=n)))

    def gauge(x: np.ndarray) -> float:  # the worst current inside the box [0, x]
        return float(np.max(np.abs((corners * x) @ z)))

    rays = [np.array(c, dtype=float) for c in itertools.product(range(grid + 1), repeat=n)
            if sum(c) == grid] + [np.ones(n)]
    points = np.array([c * (r / gauge(r)) for r in rays for c in corners])
    hull = ConvexHull(points)
    rows = [np.clip(eq[:n], 0.0, None) / -eq[n] for eq in hull.equations if -eq[n] > 1e-9]
    return np.unique(np.round(np.array(rows), 12), axis=0) * (1.0 + 1e-9)


def _phasor(deg: float) -> complex:
    return complex(np.exp(1j * np.deg2rad(deg)))


# line current of one phase: the two line-to-line groups on it are 60 degrees apart
LINE_ROWS = (_phasor(30.0), _phasor(-30.0))
# a delta-wye primary line: 2x the group across its two secondary lines, the other two
# groups 60 degrees either side of it (and 120 degrees from each other)
PRIMARY_ROWS = (2 * _phasor(0.0), _phasor(60.0), _phasor(-60.0))


def current_rows(node: Node, evses: Sequence[Evse], site_evses: Sequence[Evse]
                 ) -> list[tuple[str, np.ndarray, float, float]]:
    """The current-limit rows of `node`: (quantity, A per kW for each EVSE in `evses`,
    A per kW of balanced non-EV load, limit in A). `site_evses` are all the EVSEs under
    the node: they decide which rows exist, so the rows do not change with the cars
    plugged in. Coefficients are never negative, so drawing less never raises a row:
    rounding down and scaling down stay safe.

    Phase rows (`phase_limit_a`), "L1".."L3". A wye or DC EVSE adds its exact phase
    current. Two line-to-line groups meet on each phase: on L1 the L1-L2 EVSEs' current
    a and the L3-L1 EVSEs' c, 60 degrees apart, |I_L1| = sqrt(a^2 + ac + c^2). A node
    with line-to-line EVSEs gets the rows of `inner_rows` for them ("L1/0", "L1/1", ...)
    instead of the triangle bound a + c, which is 13.4% short when balanced; these are
    at most 1% short anywhere.

    Primary rows (`primary_limit_a`, a delta-wye transformer), "pri L1/0", ...: primary
    line 1 carries I_L1 - I_L3 = I_12 + I_23 - 2 I_31 of the line-to-line currents, I_12
    and I_23 60 degrees either side of -I_31; `inner_rows` again (at most 3.7% short,
    0.8% on average over directions; the simple 2c + max(a, b) is 13.4% short at worst).
    Wye EVSEs on L1 or L3 add their current (triangle), DC twice its per-phase current.
    Rows that another row of the node dominates are dropped.
    """
    out: list[tuple[str, np.ndarray, float, float]] = []
    bal = 1000.0 / (3 * node.voltage_ln_v)

    def ll(group: Sequence[Evse], x: str, y: str) -> np.ndarray:
        """A per kW of each line-to-line EVSE between phases x and y, else 0."""
        return np.array([1000.0 / e.voltage_v if e.wiring == Wiring.DELTA
                         and set(e.phases) == {x, y} else 0.0 for e in group])

    def add(name: str, own: list[np.ndarray], groups: list[list[np.ndarray]],
            phasors: tuple[complex, ...], load: float, lim: float) -> None:
        """own/groups: [for evses, for site_evses]; one row per useful inner row."""
        site_has = [g[1].any() for g in groups]
        if sum(site_has) == 0:
            out.append((name, own[0], load, lim))
            return
        rows = inner_rows(phasors)
        site_coef = [own[1] + sum(r[k] * g[1] for k, g in enumerate(groups)) for r in rows]
        keep = [i for i, c in enumerate(site_coef) if not any(
            j != i and np.all(c <= d + 1e-12) and (np.any(c < d - 1e-12) or j < i)
            for j, d in enumerate(site_coef))]
        for n_row, i in enumerate(keep):
            coef = own[0] + sum(rows[i][k] * g[0] for k, g in enumerate(groups))
            out.append((f"{name}/{n_row}", coef, load, lim))

    def wye(group: Sequence[Evse], phases: tuple[str, ...], dc_factor: float) -> np.ndarray:
        return np.array([dc_factor * e.phase_amps_per_kw(phases[0]) if e.wiring == Wiring.DC
                         else 0.0 if e.wiring == Wiring.DELTA else
                         sum(e.phase_amps_per_kw(p) for p in phases) for e in group])

    both = (evses, site_evses)
    if node.phase_limit_a is not None:
        for i, p in enumerate(PHASES):
            nxt, prv = PHASES[(i + 1) % 3], PHASES[(i - 1) % 3]
            own = [wye(g, (p,), 1.0) for g in both]
            groups = [[ll(g, p, nxt) for g in both], [ll(g, p, prv) for g in both]]
            add(p, own, groups, LINE_ROWS, bal, float(node.phase_limit_a))
    if node.primary_limit_a is not None:
        for i, p in enumerate(PHASES):
            q, r = PHASES[(i + 1) % 3], PHASES[(i - 1) % 3]
            own = [wye(g, (p, r), 2.0) for g in both]
            groups = [[ll(g, p, r) for g in both], [ll(g, p, q) for g in both],
                      [ll(g, q, r) for g in both]]
            add(f"pri {p}", own, groups, PRIMARY_ROWS, np.sqrt(3.0) * bal,
                float(node.primary_limit_a))
    return out


def build_grid(site: Site, sessions: Sequence[Session], prices: Prices, now: datetime,
               slot_minutes: int = 15, horizon_slots: int = 96,
               end: datetime | None = None) -> Grid:
    """Index the plugged-in (session, slot) pairs and the limit rows of `site`.

    `end` cuts the horizon short (the planner keeps the last plan's horizon end a little
    longer so the problem keeps its sparsity pattern, see `pattern`).
    """
    slots = make_slots(now, slot_minutes, horizon_slots)
    if end is not None and end < slots.ends[-1]:
        n_keep = max(1, sum(1 for s in slots.starts if s < end))
        slots = Slots(slots.starts[:n_keep], slots.ends[:n_keep], slots.hours[:n_keep])
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
    limits, loads, coefs = [], [], []
    for n in site.nodes:
        under = np.array([n.id in paths[e.id] for e in evses], dtype=bool)
        load_kw = sample(n.load_kw, slots.starts, slots.ends, "max", 0.0)
        lim_kw = n.limit_over(slots.starts, slots.ends)
        if np.isfinite(lim_kw).any():
            rows.append((n.id, "kW"))
            limits.append(lim_kw)
            loads.append(load_kw)
            coefs.append(under.astype(float))
        site_under = [e for e in site.evses if n.id in paths[e.id]]
        for q, coef, amps_per_load_kw, lim_a in current_rows(n, evses, site_under):
            rows.append((n.id, q))
            limits.append(np.full(len(slots), lim_a))
            unbalanced = n.phase_load_a.get(q.split("/")[0])  # phase rows only
            loads.append(load_kw * amps_per_load_kw
                         + sample(unbalanced, slots.starts, slots.ends, "max", 0.0))
            coefs.append(np.where(under, coef, 0.0))
    row_coef = np.array(coefs).reshape(len(rows), len(kept))
    limit = np.array(limits).reshape(len(rows), len(slots))
    load = np.array(loads).reshape(len(rows), len(slots))
    headroom = np.clip(limit - load, 0.0, None)

    root = site.root
    root_load = sample(root.load_kw, slots.starts, slots.ends, "max", 0.0)
    root_limit = root.limit_over(slots.starts, slots.ends)
    scale = root.limit_kw if root.limit_kw else float(sum(e.max_kw for e in site.evses)) or 1.0
    price = prices.slot_cost(slots.starts, slots.ends)
    return Grid(site, slots, tuple(kept), evses, pair_session, pair_slot, pair_hours, cap_kw,
                need, target, tuple(rows), row_coef, limit, load, headroom, root_load,
                root_limit, price, float(scale))


@dataclass(frozen=True)
class Qp:
    """OSQP's form: minimise 1/2 v'Pv + q'v subject to l <= Av <= u.

    v = [x (pairs, kW), s (shortfall per session, kWh), y (site EV kW per slot),
    z (site peak kW, only with a demand charge), a (|y - target| per slot with a dispatch
    target), g (group sums, kW, see `group_sums`)].
    Constraint blocks in order: x bounds, energy, shortfall bounds, limit rows, y_t
    definition, y bounds, peak rows, a >= y - target, a >= target - y, then the group
    sum definitions.
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
    n_g: int = 0
    sum_of_pairs: sp.csr_matrix | None = None  # n_g x n_x: g = sum_of_pairs @ x
    track_slots: np.ndarray | None = None  # slots with a dispatch target (one a each)
    track_kw: np.ndarray | None = None  # their targets

    @property
    def n_a(self) -> int:
        return 0 if self.track_slots is None else len(self.track_slots)

    def complete_warm(self, v: np.ndarray, dual: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """A warm start for the blocks before a (the planner's x, s, y, z), completed:
        a = |y - target| with its rows' duals 0, g from x, and the duals of g's
        definitions from g's stationarity (P_g g + A_g' dual = 0, every other row
        through which g enters already has its dual), so the warm start stays as
        consistent as it came."""
        m, n = self.A.shape
        if len(v) == n:
            return v, dual
        if self.n_a and len(v) == n - self.n_g - self.n_a:
            assert self.track_slots is not None and self.track_kw is not None
            y = v[self.n_x + self.n_s : self.n_x + self.n_s + self.n_y]
            v = np.concatenate([v, np.abs(y[self.track_slots] - self.track_kw)])
            dual = np.concatenate([dual, np.zeros(2 * self.n_a)])
        if self.n_g == 0 or len(v) == n or self.sum_of_pairs is None:
            return v, dual
        g = self.sum_of_pairs @ v[: self.n_x]
        v = np.concatenate([v, g])
        a_g = self.A[: m - self.n_g, n - self.n_g :]
        d_g = a_g.T @ dual + self.P.diagonal()[n - self.n_g :] * g
        return v, np.concatenate([dual, d_g])


@dataclass(frozen=True)
class GroupSums:
    """Which per-slot group sum each pair enters (`pair_sum`, -1: none) and, for each
    sum, a session of its group (`session`, whose row coefficients the sum carries)
    and its slot."""

    pair_sum: np.ndarray
    session: np.ndarray
    slot: np.ndarray

    @property
    def n(self) -> int:
        return len(self.slot)


def group_sums(grid: Grid, min_size: int = GROUP_MIN) -> GroupSums:
    """Sum, per slot, the pairs of sessions whose EVSEs count alike in every limit row
    (same coefficients: on one site, the chargers on one phase), for groups of at least
    `min_size` sessions.

    Why: each car otherwise enters every row it counts in (the site total y_t and its
    phase), so those rows are as long as the site is large, and OSQP's AMD ordering of
    the KKT matrix takes time quadratic in a row's length (10-30 s per new pattern at
    5,000 cars on one transformer). With a sum per group and slot a car enters one long
    row per slot instead of two and the limit rows add up three sums: setup ~4x faster
    at 5,000 cars, ~20% fewer nonzeros. Not for small groups: at 1,000 cars (333 per
    phase) the setup is 0.1-0.4 s anyway and the sums slowed warm re-plans there (25 ->
    100 iterations: OSQP's duality-gap check converges slower), see bench/RESULTS.md.
    """
    K = grid.n_pairs
    J = len(grid.sessions)
    if min_size <= 0 or K == 0 or J == 0:
        return GroupSums(np.full(K, -1), np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    sig = np.round(grid.row_coef.T, 12) if len(grid.rows) else np.zeros((J, 1))
    _, grp, counts = np.unique(sig, axis=0, return_inverse=True, return_counts=True)
    grp = grp.reshape(-1)
    group = np.where(counts[grp] >= min_size, grp, -1)[grid.pair_session]
    inside = group >= 0
    key = group[inside] * len(grid.slots) + grid.pair_slot[inside]
    _, first_pair, inv = np.unique(key, return_index=True, return_inverse=True)
    pair_sum = np.full(K, -1)
    pair_sum[inside] = inv.reshape(-1)
    members = np.nonzero(inside)[0][first_pair]
    return GroupSums(pair_sum, grid.pair_session[members], grid.pair_slot[members])


def build_qp(grid: Grid, weights: Weights, demand_charge_per_kw: float = 0.0,
             target_kw: StepSeries | None = None, sums: GroupSums | None = None,
             gone: np.ndarray | None = None) -> Qp:
    """Assemble the sparse QP; see docs/decisions/0001-engine-rules.md for the terms.

    `gone`: per pair, the probability that its car has left by then (`pair_gone`)."""
    w = weights
    K, J, T = grid.n_pairs, len(grid.sessions), len(grid.slots)
    dt = grid.slots.hours
    S = grid.scale_kw
    track = None
    if target_kw is not None:
        track = sample(target_kw, grid.slots.starts, grid.slots.ends, "max", 0.0)
    n_z = 1 if demand_charge_per_kw > 0 else 0
    n_y = T
    has_target = np.zeros(T, dtype=bool) if track is None else np.isfinite(track)
    track_slots = np.nonzero(has_target)[0]
    n_a = len(track_slots)
    sums = group_sums(grid, GROUP_MIN) if sums is None else sums
    n_g = sums.n
    n = K + J + n_y + n_z + n_a + n_g
    y0, z0 = K + J, K + J + n_y  # first y column, the peak column
    a0 = z0 + n_z  # first |y - target| column
    g0 = a0 + n_a  # first group sum column

    # objective ---------------------------------------------------------------
    hours_from_now = np.cumsum(dt) - dt / 2
    t_k = hours_from_now[grid.pair_slot]
    opted = np.array([s.opted_out for s in grid.sessions], dtype=bool)
    prio = np.array([s.priority for s in grid.sessions])
    delay = np.where(opted[grid.pair_session],
                     np.minimum(w.opted_out_delay * t_k, w.shortfall / 2), w.early * t_k)
    q_x = grid.pair_hours * (w.cost * grid.price[grid.pair_slot] + delay)
    if gone is not None:
        q_x = q_x + grid.pair_hours * w.shortfall * w.departure_risk * prio[
            grid.pair_session] * gone
    # a pair with cap 0 is fixed at 0 (e.g. dead in a kept pattern): only the regulariser,
    # so a huge fairness weight does not skew OSQP's scaling
    p_x = np.where(grid.cap_kw > 0, 2 * w.fairness * dt[grid.pair_slot]
                   / np.maximum(grid.cap_kw, 1e-3), 0.0) + w.regulariser
    q_s = w.shortfall * prio + w.completion / np.maximum(grid.target_kwh, 1.0)
    p_s = 2 * w.shortfall_quadratic / np.maximum(grid.target_kwh, 1.0) + w.regulariser
    # flatness where there is no target to follow (a NaN target means none in that slot)
    flat = np.where(has_target, 0.0, w.flatness)
    p_y = 2 * flat * dt / S + w.regulariser
    q_y = 2 * flat * dt * grid.root_load_kw / S
    if track is not None:
        tw = np.where(has_target, w.tracking, 0.0)
        p_y = p_y + 2 * tw * dt / S
        q_y = q_y - 2 * tw * dt * np.nan_to_num(track) / S
    p_z = np.full(n_z, w.regulariser)
    q_z = np.full(n_z, demand_charge_per_kw)
    q_a = w.dispatch * dt[track_slots]
    P = sp.diags(np.concatenate([p_x, p_s, p_y, p_z, np.full(n_a + n_g, w.regulariser)]),
                 format="csc")
    q = np.concatenate([q_x, q_s, q_y, q_z, q_a, np.zeros(n_g)])

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
    alone = sums.pair_sum < 0  # pairs that enter the rows themselves, not through a sum
    M = sp.csr_matrix(M @ sp.diags(alone.astype(float)))
    M.eliminate_zeros()
    M.resize((M.shape[0], n))
    if n_g:  # each sum carries its group's coefficients
        coef = grid.row_coef[:, sums.session]  # R x n_g
        r_idx, g_idx = np.nonzero(coef)
        M = M + sp.csr_matrix((coef[r_idx, g_idx], (r_idx * T + sums.slot[g_idx],
                                                     g0 + g_idx)), shape=M.shape)
    M = M[used]
    add(M, np.full(len(used), -np.inf), grid.headroom.reshape(-1)[used])
    # y_t = site EV load in slot t
    Y = sp.csr_matrix((np.ones(int(alone.sum())), (grid.pair_slot[alone], ar[alone])),
                      shape=(T, n))
    Y = Y + sp.csr_matrix((np.ones(n_g), (sums.slot, g0 + np.arange(n_g))), shape=(T, n))
    Y = Y - sp.csr_matrix((np.ones(T), (np.arange(T), K + J + np.arange(T))), shape=(T, n))
    add(Y, np.zeros(T), np.zeros(T))
    y_cap = grid.headroom[root_row] if root_row >= 0 else np.full(T, np.inf)
    add(sp.csr_matrix((np.ones(T), (np.arange(T), K + J + np.arange(T))), shape=(T, n)),
        np.full(T, -np.inf), y_cap)
    if n_z:  # z >= y_t + non-EV load: the peak the demand charge bills
        Z = sp.csr_matrix((np.concatenate([np.ones(T), -np.ones(T)]),
                           (np.concatenate([np.arange(T)] * 2),
                            np.concatenate([np.full(T, z0), y0 + np.arange(T)]))),
                          shape=(T, n))
        add(Z, grid.root_load_kw, np.full(T, np.inf))
    if n_a:  # a >= |y_t - target_t|: the linear dispatch term prices it
        track_kw = track[track_slots]
        for sign, lo, hi in ((-1.0, np.full(n_a, -np.inf), track_kw),
                             (1.0, track_kw, np.full(n_a, np.inf))):
            add(sp.csr_matrix((np.concatenate([np.ones(n_a), np.full(n_a, sign)]),
                               (np.concatenate([np.arange(n_a)] * 2),
                                np.concatenate([y0 + track_slots, a0 + np.arange(n_a)]))),
                              shape=(n_a, n)), lo, hi)
    sum_of_pairs = sp.csr_matrix((np.ones(int((~alone).sum())), (sums.pair_sum[~alone],
                                                                  ar[~alone])), shape=(n_g, K))
    if n_g:  # g = the sum of its group's pairs in its slot
        G = sp.hstack([sum_of_pairs, sp.csr_matrix((n_g, g0 - K)), -sp.eye(n_g)])
        add(G, np.zeros(n_g), np.zeros(n_g))
    A = sp.vstack(blocks, format="csc")
    return Qp(P, q, A, np.concatenate(los), np.concatenate(his), K, J, n_y, n_z, used, n_g,
              sum_of_pairs, track_slots if n_a else None,
              track[track_slots] if n_a and track is not None else None)


def pair_gone(grid: Grid, model: DepartureModel | None, now: datetime,
              drivers: Mapping[str, DepartureModel] | None = None) -> np.ndarray:
    """Per pair, the probability its car has left by the middle of the slot, given it
    is still plugged in at `now` (0 for a car that has not arrived yet). A session in
    `drivers` (by id) is judged by its own driver's model, the others by the site's
    `model` (none: 0)."""
    out = np.zeros(grid.n_pairs)
    if grid.n_pairs == 0:
        return out
    mid = np.array([(a + (b - a) / 2).timestamp() for a, b in zip(
        grid.slots.starts, grid.slots.ends, strict=True)])
    t_now = now.timestamp()
    for j, s in enumerate(grid.sessions):
        k = np.nonzero(grid.pair_session == j)[0]
        m = (drivers or {}).get(s.id, model)
        if len(k) == 0 or m is None:
            continue
        arr, dep = s.arrival.timestamp(), s.departure.timestamp()
        g = m.gone_probability(arr, dep, mid[grid.pair_slot[k]])
        g_now = float(m.gone_probability(arr, dep, np.array([max(t_now, arr)]))[0])
        out[k] = np.clip((g - g_now) / max(1.0 - g_now, 0.05), 0.0, 1.0)
    return out
