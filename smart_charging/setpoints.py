"""Turn a continuous schedule into setpoints a charger can follow.

Chargers take whole amps (or whole watts), and an AC car cannot charge between 0 and
6 A (IEC 61851). Rounding happens here and only here, with three rules:
1. Never round a pair up past what the rows it counts in can still take; rounding down
   is always safe because every coefficient is non-negative.
2. Nothing between 0 and the minimum: a car planned at >= half the minimum is lifted to
   the minimum if every limit has room, otherwise it pauses in that slot.
3. Each session aims at the nearest step of its plan plus what rounding took from it
   in earlier slots (a running balance), so a car planned at 3 A alternates 6 A / 0 A
   instead of never charging, and rounding does not erode its energy.
4. Where the site follows a dispatch target (EV kW per slot), rounding up and lifting to
   the minimum stop at the target: a reduction the grid was promised is not given away
   in amps (6 A floors of a few cars are kW). Rounding down never breaks it.
After rounding every row is checked again; a row over its headroom (which the rules
above should make impossible) is fixed by pausing its largest pairs.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from smart_charging.model import Wiring
from smart_charging.problem import Grid

TOL = 1e-9


@dataclass(frozen=True)
class Rounding:
    """Setpoint steps: whole amps for stations in A (or an EVSE's coarser
    `current_step_a`), whole watts for stations in W."""

    amp_step: float = 1.0
    watt_step: float = 1.0
    lift_fraction: float = 0.5
    # after rounding, give the first slot's idle capacity to cars the plan leaves short
    # (`_fill_short`): what chargers are sent now never leaves room unused while a car
    # is planned to miss energy
    fill_short: bool = True


@dataclass(frozen=True)
class Setpoints:
    """Per pair: the value sent (in the EVSE's rate unit) and the power it means."""

    value: np.ndarray
    power_kw: np.ndarray
    current_a: np.ndarray  # per phase; NaN for DC


def _unit_tables(grid: Grid, rounding: Rounding) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """kW per unit, unit step and minimum (in units) for every session."""
    unit_kw, step, minimum = [], [], []
    for e in grid.evses:
        if e.is_ac and e.rate_unit == "A":
            unit_kw.append(e.kw_per_amp)
            step.append(e.current_step_a or rounding.amp_step)
            minimum.append(e.min_current_a)
        else:
            unit_kw.append(0.001)
            step.append(rounding.watt_step)
            minimum.append(e.min_kw * 1000.0)
    return np.array(unit_kw), np.array(step), np.array(minimum)


def round_setpoints(grid: Grid, x: np.ndarray, rounding: Rounding | None = None,
                    target_kw: np.ndarray | None = None) -> Setpoints:
    """Round a schedule that is already inside every limit (see `solve.project`);
    `target_kw`: the site's EV kW to follow per slot (NaN: none), rule 4."""
    rounding = rounding or Rounding()
    unit_kw_s, step_s, min_s = _unit_tables(grid, rounding)
    units = np.zeros(grid.n_pairs)
    carry = np.zeros(len(grid.sessions))  # kWh owed to each session by rounding so far
    aim = _front_load_small_remainders(grid, x, unit_kw_s * min_s)

    for t, idx in enumerate(grid.slot_pairs()):
        if len(idx) == 0:
            continue
        j = grid.pair_session[idx]
        h = grid.pair_hours[idx]
        ukw, stp = unit_kw_s[j], step_s[j]
        cap_u = np.floor(grid.cap_kw[idx] / ukw / stp + TOL) * stp
        min_u = np.minimum(min_s[j], cap_u)
        planned = aim[idx]
        desired = np.clip(planned + carry[j] / h, 0.0, grid.cap_kw[idx])
        want = np.minimum(np.round(desired / ukw / stp) * stp, cap_u)
        lift = desired >= rounding.lift_fraction * min_u * ukw
        want = np.where(want < min_u, np.where(lift & (min_u > 0), min_u, 0.0), want)
        base = np.floor(x[idx] / ukw / stp + TOL) * stp  # from x: inside every limit
        base = np.minimum(np.where(base < min_u, 0.0, base), want)
        extra = want - base

        coef = grid.row_coef[:, j]
        room = grid.headroom[:, t] - coef @ (base * ukw)
        # rule 4: what rounding up may add in this slot (the plan itself may be above)
        ev_room = np.inf
        if target_kw is not None and np.isfinite(target_kw[t]):
            ev_room = max(float(target_kw[t]) - float(base @ ukw), 0.0)
        final = base.copy()
        todo = np.nonzero(extra > 0)[0]
        todo = todo[np.argsort(-carry[j[todo]], kind="stable")]
        for _ in range(3):  # a few passes: a rejected pair frees its share of the prefix
            if len(todo) == 0:
                break
            add = coef[:, todo] * (extra[todo] * ukw[todo])
            prefix = np.cumsum(add, axis=1)
            fits = np.all((prefix <= room[:, None] + TOL) | (add <= 0), axis=0)
            fits &= np.cumsum(extra[todo] * ukw[todo]) <= ev_room + TOL
            accepted = todo[fits]
            final[accepted] += extra[accepted]
            room -= add[:, fits].sum(axis=1)
            ev_room -= float((extra[accepted] * ukw[accepted]).sum())
            todo = todo[~fits]

        # re-check every row; pause the biggest pairs of any row still over
        load = coef @ (final * ukw)
        for r in np.nonzero(load > grid.headroom[:, t] + TOL)[0]:
            for k in np.argsort(-(coef[r] * final * ukw)):
                if coef[r] @ (final * ukw) <= grid.headroom[r, t] + TOL:
                    break
                final[k] = 0.0
        carry[j] += (planned - final * ukw) * h
        if t == 0 and rounding.fill_short:  # on top of the plan: not owed back later
            short = np.maximum(grid.target_kwh - grid.delivered_kwh(x), 0.0)[j]
            final = _fill_short(grid, t, idx, final, ukw, stp, cap_u, min_u, short,
                                ev_room)
        units[idx] = final

    power_kw = units * unit_kw_s[grid.pair_session]
    kpa = np.array([e.kw_per_amp if e.wiring != Wiring.DC else np.nan for e in grid.evses])
    with np.errstate(invalid="ignore", divide="ignore"):
        current = power_kw / kpa[grid.pair_session] if grid.n_pairs else np.zeros(0)
    return Setpoints(units, power_kw, current)


def _front_load_small_remainders(grid: Grid, x: np.ndarray, min_kw: np.ndarray) -> np.ndarray:
    """Aim a session's whole plan at its first slot, at no less than the minimum, when it
    is under one slot at minimum.

    The solver spreads a small remainder thinly (flatness, fairness); every slot is then
    under the minimum and, re-planned every few minutes, the car would never finish.
    Only the aim moves: what exceeds x is granted only where the limits have room.
    """
    aim = x.copy()
    energy = grid.delivered_kwh(x)
    first = np.full(len(grid.sessions), -1)
    order = np.lexsort((grid.pair_slot, grid.pair_session))
    ps = grid.pair_session[order]
    starts = np.nonzero(np.r_[True, ps[1:] != ps[:-1]])[0] if len(ps) else np.zeros(0, int)
    first[ps[starts]] = order[starts]
    slot_h = grid.slots.hours[grid.pair_slot[first[first >= 0]]]
    small = np.zeros(len(grid.sessions), dtype=bool)
    has = first >= 0
    small[has] = (energy[has] > 0) & (energy[has] < min_kw[has] * slot_h)
    aim[small[grid.pair_session]] = 0.0
    k = first[small]
    # at least the minimum: a remainder under half of it would otherwise never be lifted,
    # and a caller re-planning more often than once a slot would never finish the car
    # (the car stops drawing when full; the next plan sees it done)
    aim[k] = np.minimum(np.maximum(energy[small] / grid.pair_hours[k], min_kw[small]),
                        grid.cap_kw[k])
    return aim


SHORT_KWH = 0.05  # planned shortfall below this is solver tolerance, not a short car


def _fill_short(grid: Grid, t: int, idx: np.ndarray, final: np.ndarray, ukw: np.ndarray,
                stp: np.ndarray, cap_u: np.ndarray, min_u: np.ndarray,
                short: np.ndarray, ev_room: float = np.inf) -> np.ndarray:
    """Raise the setpoints of short cars (planned shortfall `short`, kWh) into whatever
    room every row still has in slot `t`, earliest departure first (the car that can
    least wait for the next plan), in whole steps, from 0 only to at least the minimum,
    and no more than its shortfall. Rows are checked per car, so no limit can break;
    nor can a dispatch target (`ev_room`: EV kW it leaves, rule 4), which the plan
    already weighed against the cars' energy.

    Why: the solver's answer is pulled inside the limits by scaling and rounded down,
    and it stops at its tolerance; with cars short that leaves a few amps idle per row
    that no later plan can give back.
    """
    cand = np.nonzero((short > SHORT_KWH) & (final < cap_u))[0]
    if len(cand) == 0:
        return final
    j = grid.pair_session[idx]
    dep = np.array([grid.sessions[i].departure.timestamp() for i in j[cand]])
    cand = cand[np.lexsort((-short[cand], dep))]
    coef = grid.row_coef[:, j]
    room = grid.headroom[:, t] - coef @ (final * ukw)
    h = grid.pair_hours[idx]
    final = final.copy()
    for k in cand:
        per_unit = coef[:, k] * ukw[k]
        with np.errstate(divide="ignore", invalid="ignore"):
            fit = np.where(per_unit > 0, (room + TOL) / per_unit, np.inf)
        top = min(final[k] + float(fit.min()), final[k] + (ev_room + TOL) / ukw[k], cap_u[k])
        # no more than the shortfall, rounded up to a step (the car stops when full)
        want = max(final[k] + np.ceil(short[k] / (ukw[k] * h[k]) / stp[k] - TOL) * stp[k],
                   min_u[k])
        new = np.floor(min(top, want) / stp[k] + TOL) * stp[k]
        if new < min_u[k]:
            continue
        if new > final[k]:
            room -= per_unit * (new - final[k])
            ev_room -= ukw[k] * (new - final[k])
            final[k] = new
    return final
