"""Keep the QP's sparsity pattern fixed while only time moves.

OSQP's setup orders the KKT matrix (AMD) before factorising it. With a limit row per
slot summing every car, that ordering costs time quadratic in the cars per row: 0.4-0.8 s
at 1,000 sessions, 10-15 s at 5,000. Re-plans inside a slot only change numbers and
reuse the workspace, but a slot boundary drops the first slot and used to change the
pattern. Here the new problem is embedded in the last one's pattern instead: the pairs
and slots that have passed stay as variables fixed at 0 (cap 0), every live pair keeps
its index. Same pattern, so OSQP only updates numbers and refactorises. A pattern is
kept while the sessions are the same and at most `max_dead_slots` slots have passed.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime

import numpy as np

from smart_charging.problem import Grid, Slots


@dataclass(frozen=True)
class Pattern:
    """The layout of the grid a QP pattern was built from."""

    session_ids: tuple[str, ...]
    rows: tuple[tuple[str, str], ...]
    slot_starts: tuple[datetime, ...]
    slot_ends: tuple[datetime, ...]
    end_ts: np.ndarray  # slot end timestamps
    pair_session: np.ndarray
    pair_slot: np.ndarray
    pair_hours: np.ndarray

    @classmethod
    def of(cls, grid: Grid) -> Pattern:
        return cls(tuple(s.id for s in grid.sessions), grid.rows, grid.slots.starts,
                   grid.slots.ends,
                   np.array([t.timestamp() for t in grid.slots.ends]),
                   grid.pair_session.copy(), grid.pair_slot.copy(), grid.pair_hours.copy())

    @property
    def end(self) -> datetime:
        return self.slot_ends[-1]


@dataclass(frozen=True)
class Embedded:
    """`grid` laid out on a pattern: `full` has the pattern's pairs and slots, and
    `pair_index[k]` is where live pair k of `grid` sits in it."""

    full: Grid
    pair_index: np.ndarray


def embed(grid: Grid, pattern: Pattern, max_dead_slots: int) -> Embedded | None:
    """`grid` as a grid with exactly `pattern`'s pairs and slots, or None if it does not
    fit (other sessions or rows, a pair or slot the pattern lacks, too many dead slots).

    Slots are matched by their end (every slot ends on a boundary, the first one too).
    Passed pairs keep their old hours as coefficients (an explicit zero would change the
    pattern) but get cap 0, so they stay 0; passed slots last zero hours and get zero
    headroom and price.
    """
    if tuple(s.id for s in grid.sessions) != pattern.session_ids or grid.rows != pattern.rows:
        return None
    T0 = len(pattern.slot_ends)
    ends = np.array([t.timestamp() for t in grid.slots.ends])
    tmap = np.searchsorted(pattern.end_ts, ends)
    if np.any(tmap >= T0) or np.any(pattern.end_ts[np.minimum(tmap, T0 - 1)] != ends):
        return None
    live_slot = np.zeros(T0, dtype=bool)
    live_slot[tmap] = True
    if T0 - len(ends) > max_dead_slots:
        return None
    key0 = pattern.pair_session * T0 + pattern.pair_slot
    order = np.argsort(key0, kind="stable")
    key = grid.pair_session * T0 + tmap[grid.pair_slot]
    pos = np.searchsorted(key0[order], key)
    if np.any(pos >= len(key0)) or np.any(key0[order][np.minimum(pos, len(key0) - 1)] != key):
        return None
    pair_index = order[pos]

    K0 = len(key0)
    cap = np.zeros(K0)
    cap[pair_index] = grid.cap_kw
    hours = pattern.pair_hours.copy()
    hours[pair_index] = grid.pair_hours

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
        pair_session=pattern.pair_session,
        pair_slot=pattern.pair_slot,
        pair_hours=hours,
        cap_kw=cap,
        limit=per_slot(grid.limit),
        load=per_slot(grid.load),
        headroom=per_slot(grid.headroom),
        root_load_kw=per_slot(grid.root_load_kw),
        root_limit_kw=per_slot(grid.root_limit_kw),
        price=per_slot(grid.price),
    )
    return Embedded(full, pair_index)
