"""Keep the QP's sparsity pattern while time moves and cars come and go.

OSQP's setup orders the KKT matrix (AMD) before factorising it. With a limit row per
slot summing every car, that ordering costs time quadratic in the cars per row: 0.4-0.8 s
at 1,000 sessions, 10-27 s at 5,000. Re-plans inside a slot only change numbers and
reuse the workspace, but a slot boundary, a departure or an arrival used to change the
pattern. Here the new problem is embedded in the last one's pattern instead.

The pattern is a set of lanes (one per session it was built from, each with its EVSE)
and their (lane, slot) pairs, looked up by (EVSE, slot). A live session takes the lane
holding all its (EVSE, slot) pairs; what no live session uses is dead: passed slots,
the lane of a car that left or is full, the slots a car leaving earlier no longer
needs. Dead pairs stay as variables fixed at 0 (cap 0), a dead lane has need and target
0, so they contribute nothing and the answer is the one a fresh pattern gives. Only a
pair the pattern lacks (a car at an EVSE without a lane there, a later departure, a
slot past the kept horizon end) forces a new pattern, and so does dead weight: more
than `max_dead_slots` passed slots or more than `max_dead_share` of the pairs dead.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from smart_charging.model import Evse, Session
from smart_charging.problem import Grid, Slots


@dataclass(frozen=True)
class Pattern:
    """The layout of the grid a QP pattern was built from: its sessions are the lanes."""

    sessions: tuple[Session, ...]
    evses: tuple[Evse, ...]
    rows: tuple[tuple[str, str], ...]
    row_coef: np.ndarray  # rows x lanes
    slot_starts: tuple[datetime, ...]
    slot_ends: tuple[datetime, ...]
    end_ts: np.ndarray  # slot end timestamps
    pair_session: np.ndarray  # the lane of each pair
    pair_slot: np.ndarray
    pair_hours: np.ndarray
    evse_code: dict[str, int]
    sorted_keys: np.ndarray  # (EVSE code x slots + slot) of the pairs, sorted
    key_order: np.ndarray  # pair index of each sorted key
    unique_keys: bool  # False if two lanes share an (EVSE, slot): no lookup by key

    @classmethod
    def of(cls, grid: Grid) -> Pattern:
        codes: dict[str, int] = {}
        for e in grid.evses:
            codes.setdefault(e.id, len(codes))
        lane_code = np.array([codes[e.id] for e in grid.evses], dtype=int)
        keys = lane_code[grid.pair_session] * len(grid.slots) + grid.pair_slot
        order = np.argsort(keys, kind="stable")
        sk = keys[order]
        return cls(grid.sessions, grid.evses, grid.rows, grid.row_coef.copy(),
                   grid.slots.starts, grid.slots.ends,
                   np.array([t.timestamp() for t in grid.slots.ends]),
                   grid.pair_session.copy(), grid.pair_slot.copy(), grid.pair_hours.copy(),
                   codes, sk, order, bool(np.all(np.diff(sk) > 0)))

    @property
    def end(self) -> datetime:
        return self.slot_ends[-1]


@dataclass(frozen=True)
class Embedded:
    """`grid` laid out on a pattern: `full` has the pattern's lanes, pairs and slots,
    `pair_index[k]` is where live pair k of `grid` sits in it, and `dead_share` is the
    share of `full`'s pairs fixed at 0."""

    full: Grid
    pair_index: np.ndarray
    dead_share: float


def embed(grid: Grid, pattern: Pattern, max_dead_slots: int,
          max_dead_share: float = 1.0) -> Embedded | None:
    """`grid` as a grid with exactly `pattern`'s lanes, pairs and slots, or None if it
    does not fit (other rows, a pair the pattern lacks, a session whose pairs span two
    lanes or share one, too many passed slots, too large a dead share).

    Slots are matched by their end (every slot ends on a boundary, the first one too).
    Dead pairs keep their old hours as coefficients (an explicit zero would change the
    pattern) but get cap 0, so they stay 0; passed slots last zero hours and get zero
    headroom and price; dead lanes keep their old sessions and EVSEs as placeholders.
    """
    if grid.rows != pattern.rows or not pattern.unique_keys or grid.n_pairs == 0:
        return None
    T0, K0 = len(pattern.slot_ends), len(pattern.pair_slot)
    ends = np.array([t.timestamp() for t in grid.slots.ends])
    tmap = np.searchsorted(pattern.end_ts, ends)
    if np.any(tmap >= T0) or np.any(pattern.end_ts[np.minimum(tmap, T0 - 1)] != ends):
        return None
    if tmap[0] > max_dead_slots:  # slots before the first live one have passed
        return None
    code = np.array([pattern.evse_code.get(s.evse_id, -1) for s in grid.sessions], dtype=int)
    if np.any(code < 0):
        return None
    key = code[grid.pair_session] * T0 + tmap[grid.pair_slot]
    pos = np.minimum(np.searchsorted(pattern.sorted_keys, key), K0 - 1)
    if np.any(pattern.sorted_keys[pos] != key):
        return None
    pair_index = pattern.key_order[pos]
    # each live session takes one lane, the one holding all its pairs, and no lane
    # serves two sessions (a lane has one energy row and one shortfall)
    J = len(grid.sessions)
    pair_lane = pattern.pair_session[pair_index]
    lane = np.full(J, -1)
    lane[grid.pair_session] = pair_lane
    if np.any(lane < 0) or np.any(lane[grid.pair_session] != pair_lane) or (
            len(np.unique(lane)) != J):
        return None
    dead_share = 1.0 - grid.n_pairs / K0
    if dead_share > max_dead_share:
        return None

    cap = np.zeros(K0)
    cap[pair_index] = grid.cap_kw
    hours = pattern.pair_hours.copy()
    hours[pair_index] = grid.pair_hours
    sessions, evses = list(pattern.sessions), list(pattern.evses)
    for j, lj in enumerate(lane):
        sessions[lj], evses[lj] = grid.sessions[j], grid.evses[j]
    J0 = len(sessions)
    need, target = np.zeros(J0), np.zeros(J0)
    need[lane], target[lane] = grid.need_kwh, grid.target_kwh
    row_coef = pattern.row_coef.copy()
    row_coef[:, lane] = grid.row_coef

    def per_slot(live: np.ndarray, fill: float = 0.0) -> np.ndarray:
        out = np.full((*live.shape[:-1], T0), fill, dtype=float)
        out[..., tmap] = live
        return out

    starts = list(pattern.slot_starts)
    slot_ends = list(pattern.slot_ends)
    slot_hours = np.zeros(T0)  # a passed slot lasts nothing: no cost, no delay term
    for t_new, t0 in enumerate(tmap):
        starts[t0], slot_ends[t0] = grid.slots.starts[t_new], grid.slots.ends[t_new]
        slot_hours[t0] = grid.slots.hours[t_new]
    full = replace(
        grid,
        slots=Slots(tuple(starts), tuple(slot_ends), slot_hours),
        sessions=tuple(sessions),
        evses=tuple(evses),
        pair_session=pattern.pair_session,
        pair_slot=pattern.pair_slot,
        pair_hours=hours,
        cap_kw=cap,
        need_kwh=need,
        target_kwh=target,
        row_coef=row_coef,
        limit=per_slot(grid.limit),
        load=per_slot(grid.load),
        headroom=per_slot(grid.headroom),
        root_load_kw=per_slot(grid.root_load_kw),
        root_limit_kw=per_slot(grid.root_limit_kw),
        price=per_slot(grid.price),
    )
    return Embedded(full, pair_index, dead_share)
