"""Simple policies: the yardsticks for benchmarks, and (equal share) the safe fallback.

Each takes a `Grid` and returns power per (session, slot) pair in kW, time-stepped
forward so a car stops once it has its energy.
"""

from __future__ import annotations

import numpy as np

from smart_charging.problem import Grid


def uncontrolled(grid: Grid) -> np.ndarray:
    """Full power from arrival until full, blind to every node limit."""
    return _greedy(grid, np.ones(len(grid.slots), dtype=bool))


def tou_timer(grid: Grid, allowed_slots: np.ndarray) -> np.ndarray:
    """Full power, but only in allowed slots (the valley band): the rebound-peak maker."""
    return _greedy(grid, np.asarray(allowed_slots, dtype=bool))


def _greedy(grid: Grid, allowed: np.ndarray) -> np.ndarray:
    x = np.zeros(grid.n_pairs)
    left = grid.need_kwh.copy()
    for t, idx in enumerate(grid.slot_pairs()):
        if not allowed[t] or len(idx) == 0:
            continue
        j = grid.pair_session[idx]
        rate = np.minimum(grid.cap_kw[idx], left[j] / grid.pair_hours[idx])
        x[idx] = rate
        left[j] -= rate * grid.pair_hours[idx]
    return x


def equal_share(grid: Grid) -> np.ndarray:
    """Max-min fair power under every limit, slot by slot: the safe fallback.

    Progressive filling: raise every unfrozen car's power by the same step until an
    EVSE/car cap or a limit row binds, freeze what binds, repeat. Needs no solver, so
    it cannot fail the way a solver can.
    """
    x = np.zeros(grid.n_pairs)
    left = grid.need_kwh.copy()
    for t, idx in enumerate(grid.slot_pairs()):
        if len(idx) == 0:
            continue
        j = grid.pair_session[idx]
        caps = np.minimum(grid.cap_kw[idx], left[j] / grid.pair_hours[idx])
        rate = water_fill(grid.row_coef[:, j], grid.headroom[:, t], caps)
        x[idx] = rate
        left[j] = np.maximum(left[j] - rate * grid.pair_hours[idx], 0.0)
    return x


def water_fill(coef: np.ndarray, room: np.ndarray, caps: np.ndarray) -> np.ndarray:
    """Equal rates for all, capped per car, with coef @ rate <= room for every row."""
    rate = np.zeros(len(caps))
    room = room.astype(float).copy()
    free = caps > 1e-9
    while free.any():
        per_row = coef[:, free].sum(axis=1)
        with np.errstate(divide="ignore", invalid="ignore"):
            step_rows = np.where(per_row > 0, room / per_row, np.inf)
        step = min(float(step_rows.min(initial=np.inf)), float((caps - rate)[free].min()))
        step = max(step, 0.0)
        rate[free] += step
        room -= step * per_row
        tight = (per_row > 0) & (room <= 1e-9 * np.maximum(1.0, np.abs(room) + step * per_row))
        frozen = (caps - rate <= 1e-9) | (coef[tight].sum(axis=0) > 0)
        if not (free & frozen).any():  # numerical stall: stop rather than loop
            break
        free &= ~frozen
    return np.minimum(rate, caps)
