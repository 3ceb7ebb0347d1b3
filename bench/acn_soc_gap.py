"""What a linear model of line-to-line currents gives up against the exact cone.

One interval of the Caltech ACN garage with its transformer cut to 50 kW (the model of
bench/acn_replay.py). For a set of plugged-in EVSEs, the most power the EVs may draw
(each 0-32 A) under three models of the same limits, solved with cvxpy (CLARABEL):

- exact: the phasor magnitudes of acnportal's caltech_acn() (second-order cones);
- triangle: every current counted with the absolute value of its coefficient
  (|I_a| <= |I_ab| + |I_ca|; acnportal's `linear=True`), the engine's former bound;
- engine: the rows the planner builds now (`smart_charging.problem.current_rows`).

Two measures: the largest total (any split between cars), and, for random demands
(each plugged-in car wanting 6-32 A), the largest common fraction of the demands that
fits, the capacity in the direction the cars actually pull.

    .venv/bin/python -m bench.acn_soc_gap
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta, timezone

import cvxpy as cp
import numpy as np

from bench.acn_replay import TRANSFORMER_KW, VOLTAGE, engine_site
from smart_charging import Prices, Session, build_grid


def exact_and_triangle(active: list[str]):
    from acnportal import acnsim

    net = acnsim.sites.caltech_acn(basic_evse=True, voltage=VOLTAGE,
                                   transformer_cap=TRANSFORMER_KW)
    idx = [net.station_ids.index(s) for s in active]
    m = net.constraint_matrix[:, idx]
    ang = np.deg2rad(np.array([net.phase_angles[s] for s in active]))
    return m, ang, net.magnitudes


def engine_rows(active: list[str]):
    site = engine_site()
    now = datetime(2019, 7, 8, 12, tzinfo=timezone(timedelta(hours=-7)))
    sessions = [Session(f"s-{s}", s, now, now + timedelta(hours=4), 100.0) for s in active]
    grid = build_grid(site, sessions, Prices(), now, slot_minutes=15, horizon_slots=1)
    order = [grid.sessions.index(next(x for x in grid.sessions if x.evse_id == s))
             for s in active]
    kw_per_a = VOLTAGE / 1000
    return grid.row_coef[:, order] * kw_per_a, grid.headroom[:, 0]  # A of row per A of EVSE


def capacity(active: list[str], demand: np.ndarray | None) -> dict[str, float]:
    """Most total current (demand None) or largest fraction of `demand` that fits."""
    m, ang, mags = exact_and_triangle(active)
    coef, room = engine_rows(active)
    n = len(active)
    out = {}
    for model in ("exact", "triangle", "engine"):
        x = cp.Variable(n, nonneg=True)
        t = cp.Variable(nonneg=True)
        cons = [x <= 32]
        if model == "exact":
            re, im = m * np.cos(ang), m * np.sin(ang)
            cons += [cp.norm(cp.hstack([re[j] @ x, im[j] @ x])) <= mags[j]
                     for j in range(len(mags))]
        elif model == "triangle":
            cons += [np.abs(m) @ x <= mags]
        else:
            cons += [coef @ x <= room]
        if demand is None:
            obj = cp.Maximize(cp.sum(x))
        else:
            cons += [x == t * demand]
            obj = cp.Maximize(t)
        cp.Problem(obj, cons).solve(solver=cp.CLARABEL)
        out[model] = float(np.sum(x.value)) * VOLTAGE / 1000  # kW
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=60)
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    site = engine_site()
    ids = [e.id for e in site.evses]
    rng = np.random.default_rng(args.seed)
    full = capacity(ids, None)
    print(f"all 54 EVSEs plugged in, most total power: exact {full['exact']:.1f} kW, "
          f"engine rows {full['engine']:.1f} kW, triangle {full['triangle']:.1f} kW")
    ratios: dict[str, list[float]] = {"engine": [], "triangle": []}
    totals: dict[str, list[float]] = {"engine": [], "triangle": []}
    for _ in range(args.samples):
        k = int(rng.integers(10, 55))
        active = list(rng.choice(ids, size=k, replace=False))
        demand = rng.uniform(6, 32, size=k)
        d = capacity(active, demand)
        s = capacity(active, None)
        for model in ratios:
            ratios[model].append(d[model] / d["exact"])
            totals[model].append(s[model] / s["exact"])
    print(f"{args.samples} random intervals (10-54 cars plugged in, each wanting 6-32 A):")
    print("| model | capacity along the demand, % of exact: mean / worst | "
          "most total power, % of exact: mean / worst |")
    print("| --- | --- | --- |")
    for model in ratios:
        r, t = np.array(ratios[model]), np.array(totals[model])
        print(f"| {model} | {100 * r.mean():.1f} / {100 * r.min():.1f} | "
              f"{100 * t.mean():.1f} / {100 * t.min():.1f} |")


if __name__ == "__main__":
    main()
