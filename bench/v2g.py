"""V2G at engine level (issue 15): a residential transformer whose evening household
peak is over its limit, simulated on an accelerated clock (no OCPP), side by side:
uncontrolled, smart charging only, smart charging + V2G. Then TOU arbitrage savings per
car per month at the 27 shipped Chinese residential tariffs.

    .venv/bin/python -m bench.v2g [--seed 1] [--v2g-share 0.1]

The site is config/sites/residential.toml (120 single-phase 7.36 kW home chargers, 630
kVA, limit 567 kW) with its household load scaled by 1.6 so the evening peak (605 kW
at 20:00) is over the limit 19:00-22:00, which shedding EV charging alone cannot fix.
Every 10th charger is bidirectional (7 kW discharge) and its car opted in (export
allowed, 60 kWh battery, 30% reserve). Re-planned every 15 minutes, 17:00 to 09:00.
"""

from __future__ import annotations

import argparse
import csv
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from datetime import time as clock

import numpy as np

from bench.engine_scenario import DAY, evening_sessions, jiangsu_prices, residential_site
from smart_charging import Evse, Node, Planner, Prices, Session, Site, TouBand, build_grid
from smart_charging.baselines import uncontrolled
from smart_charging.model import PHASES, DailyProfile, V2gMode, V2gTerms, sample
from smart_charging.problem import Weights

STEP = timedelta(minutes=15)
H = STEP.total_seconds() / 3600
ETA = 0.95
CAPACITY = 60.0
RESERVE = 0.3
DATA = "/work/shared/data/residential_ev_tou_cn_2024.csv"


@dataclass
class Car:
    session: Session
    v2g: bool
    stored: float  # kWh in the battery (V2G cars)
    goal: float  # stored kWh at departure (arrival + eta x wanted)
    delivered: float = 0.0  # metered charge kWh
    discharged: float = 0.0  # metered discharge kWh


def scenario(seed: int, share: float) -> tuple[Site, list[Car]]:
    site = residential_site(120)
    root = site.root
    load = root.load_kw
    assert isinstance(load, DailyProfile)
    root = replace(root, load_kw=replace(load, values=tuple(v * 1.6 for v in load.values)))
    every = max(1, round(1 / share)) if share > 0 else 0
    evses = tuple(replace(e, v2g=True, max_discharge_kw=7.0)
                  if every and i % every == 0 else e for i, e in enumerate(site.evses))
    site = replace(site, nodes=(root,), evses=evses)
    rng = np.random.default_rng(seed + 100)
    cars = []
    for s, e in zip(evening_sessions(site, seed=seed), site.evses, strict=True):
        stored = float(rng.uniform(0.5, 0.8)) * CAPACITY
        goal = min(stored + ETA * s.energy_wanted_kwh, CAPACITY)
        cars.append(Car(s, e.v2g, stored, goal))
    return site, cars


def live_sessions(cars: list[Car], now: datetime, with_v2g: bool) -> list[Session]:
    out = []
    for c in cars:
        s = c.session
        if not s.arrival <= now < s.departure:
            continue
        if c.v2g and with_v2g:
            need = max(0.0, (c.goal - c.stored) / ETA)
            terms = V2gTerms(True, V2gMode.EXPORT_ALLOWED, CAPACITY, c.stored,
                             min_soc=RESERVE)
            out.append(replace(s, energy_wanted_kwh=need, energy_delivered_kwh=0.0, v2g=terms))
        else:
            out.append(replace(s, energy_delivered_kwh=min(c.delivered, s.energy_wanted_kwh)))
    return out


def simulate(site: Site, cars: list[Car], prices: Prices, mode: str, weights: Weights
             ) -> dict[str, float]:
    root = site.root
    evse = {e.id: e for e in site.evses}
    planner = Planner(replace(Planner().settings, weights=weights))
    start = DAY.replace(hour=17)
    end = DAY.replace(hour=9) + timedelta(days=1)
    peak = minutes_over = phase_minutes_over = cost = 0.0
    timings: list[float] = []
    fallbacks = 0
    now = start
    while now < end:
        live = live_sessions(cars, now, mode == "v2g")
        rates: dict[str, float] = {}
        if live:
            if mode == "uncontrolled":
                grid = build_grid(site, live, prices, now, 15, 1)
                x = uncontrolled(grid)
                rates = {grid.sessions[j].id: float(x[k])
                         for k, j in enumerate(grid.pair_session)}
            else:
                t0 = time.perf_counter()
                plan = planner.plan(site, live, prices, now)
                timings.append(time.perf_counter() - t0)
                fallbacks += plan.fallback_used
                rates = {sid: float(plan.power_w[i, 0]) / 1000
                         for i, sid in enumerate(plan.session_ids)}
        ev_kw = 0.0
        phase_a = dict.fromkeys(PHASES, 0.0)
        price = float(prices.energy_price([now], [now + STEP])[0])
        for c in cars:
            s = c.session
            if not s.arrival <= now < s.departure:
                continue
            e = evse[s.evse_id]
            kw = rates.get(s.id, 0.0)
            if kw >= 0:
                if c.v2g and mode == "v2g":  # may store more than the goal, to lend later
                    left = max(CAPACITY - c.stored, 0.0) / ETA
                else:
                    left = max(s.energy_wanted_kwh - c.delivered, 0.0)
                kw = min(kw, e.max_kw, left / H)
                c.delivered += kw * H
                c.stored += ETA * kw * H
            else:  # the car stops at its reserve whatever it is told
                room = max(c.stored - RESERVE * CAPACITY, 0.0) * ETA / H
                kw = -min(-kw, e.max_discharge, room)
                c.discharged += -kw * H
                c.stored += kw * H / ETA
                cost += weights.wear * -kw * H
            ev_kw += kw
            cost += price * kw * H
            for p in PHASES:
                phase_a[p] += kw * e.phase_amps_per_kw(p)
        household = float(sample(root.load_kw, [now], [now + STEP], "max", 0.0)[0])
        total = household + ev_kw
        peak = max(peak, total)
        minutes_over += 15 * (total > root.limit_kw + 1e-6)
        house_a = household * 1000 / (3 * root.voltage_ln_v)
        phase_minutes_over += 15 * any(house_a + phase_a[p] > root.phase_limit_a + 1e-6
                                       for p in PHASES)
        now += STEP
    v2g_cars = [c for c in cars if c.v2g]
    got = want = 0.0
    short = 0
    for c in cars:
        if c.v2g and mode == "v2g":
            arrival = c.goal - ETA * c.session.energy_wanted_kwh
            g, w_ = (c.stored - arrival) / ETA, c.session.energy_wanted_kwh
        else:
            g, w_ = c.delivered, c.session.energy_wanted_kwh
        got += min(g, w_)
        want += w_
        short += g < w_ - 0.05
    n = max(len(v2g_cars), 1)
    t = np.array(timings) if timings else np.zeros(1)
    return {
        "minutes_over": minutes_over, "phase_minutes_over": phase_minutes_over,
        "peak_kw": peak, "peak_pct": 100 * peak / root.rating_kva,
        "delivered_pct": 100 * got / want, "short": short,
        "discharged": sum(c.discharged for c in v2g_cars) / n,
        "cycles": sum(c.discharged / ETA for c in v2g_cars) / n / CAPACITY,
        "cost": cost, "p50": float(np.percentile(t, 50)), "p95": float(np.percentile(t, 95)),
        "fallbacks": fallbacks,
    }


def arbitrage(weights: Weights) -> list[tuple[str, float, float, float]]:
    """One V2G car on a home charger with room to spare, 18:00 to 07:30, 40 of 60 kWh,
    wanting 12 kWh: the night's cost charge only and with V2G (energy + wear), per
    region, on Jiangsu's band hours (peak 08-21, valley 21-08; the CSV has no hours,
    flat and critical-peak bands are left out)."""
    node = Node("home", limit_kw=50.0)
    evse = Evse("e", "home", phases=("L1",), max_current_a=32, v2g=True, max_discharge_kw=7.0,
                rate_unit="W")
    site = Site("home", (node,), (evse,))
    now = DAY.replace(hour=18)
    leave = DAY.replace(hour=7, minute=30) + timedelta(days=1)
    out = []
    with open(DATA) as f:
        rows = [r for r in csv.DictReader(line for line in f if not line.startswith("#"))]
    for r in rows:
        peak, valley = float(r["peak"]), float(r["valley"])
        prices = Prices(bands=(TouBand("peak", clock(8), clock(21), peak),
                               TouBand("valley", clock(21), clock(8), valley)),
                        utc_offset=timedelta(hours=8))
        costs = []
        for v2g in (False, True):
            terms = V2gTerms(True, V2gMode.EXPORT_ALLOWED, CAPACITY, 40.0, min_soc=RESERVE)
            s = Session("s", "e", now, leave, 12.0, v2g=terms if v2g else None)
            plan = Planner(replace(Planner().settings, weights=weights)).plan(
                site, [s], prices, now)
            kw = plan.power_w[0] / 1000
            hours = np.array([(b - a).total_seconds() / 3600
                              for a, b in zip(plan.slot_starts, plan.slot_ends, strict=True)])
            price = prices.energy_price(plan.slot_starts, plan.slot_ends)
            dis = np.maximum(-kw, 0) * hours
            costs.append(float(np.sum(price * kw * hours) + weights.wear * dis.sum()))
            if v2g:
                discharged = float(dis.sum())
        out.append((r["region"], peak - valley, (costs[0] - costs[1]) * 30, discharged))
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--v2g-share", type=float, default=0.1)
    args = ap.parse_args()
    weights = Weights()
    prices = jiangsu_prices()
    t_start = time.perf_counter()
    site, cars = scenario(args.seed, args.v2g_share)
    root = site.root
    n_v2g = sum(c.v2g for c in cars)
    print(f"{len(cars)} cars ({n_v2g} V2G, 7 kW discharge, {CAPACITY:.0f} kWh, reserve "
          f"{RESERVE:.0%}), transformer {root.rating_kva:.0f} kVA, limit {root.limit_kw:.0f} kW, "
          f"household peak {max(root.load_kw.values):.0f} kW; Jiangsu TOU; wear "
          f"{weights.wear} CNY/kWh discharged; seed {args.seed}")
    print()
    print("| policy | minutes over kW limit | minutes over a phase limit | peak kW (% rating) | "
          "drivers' energy % (cars short) | discharged kWh per V2G car | equivalent full "
          "cycles per V2G car | energy cost incl. wear CNY | plan p50 / p95 s |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, mode in (("uncontrolled", "uncontrolled"), ("smart charging only", "smart"),
                       ("smart charging + V2G", "v2g")):
        fresh = [replace(c) for c in cars]
        r = simulate(site, fresh, prices, mode, weights)
        timing = "-" if mode == "uncontrolled" else f"{r['p50']:.2f} / {r['p95']:.2f}"
        print(f"| {name} | {r['minutes_over']:.0f} | {r['phase_minutes_over']:.0f} | "
              f"{r['peak_kw']:.0f} ({r['peak_pct']:.1f}%) | {r['delivered_pct']:.2f} "
              f"({r['short']}) | {r['discharged']:.1f} | {r['cycles']:.3f} | {r['cost']:.1f} | "
              f"{timing} |" + (f" fallbacks {r['fallbacks']}" if r["fallbacks"] else ""))
    print()
    print("TOU arbitrage, one car, per month (30 nights), at each region's peak/valley price:")
    print()
    cheap = replace(weights, wear=0.10)
    print(f"| region | peak-valley CNY/kWh | discharged kWh/night (wear {weights.wear}) | "
          f"saving CNY/month (wear {weights.wear}) | discharged kWh/night (wear {cheap.wear}) | "
          f"saving CNY/month (wear {cheap.wear}) |")
    print("| --- | --- | --- | --- | --- | --- |")
    res = arbitrage(weights)
    res_cheap = {r[0]: r for r in arbitrage(cheap)}
    for region, spread, saving, dis in sorted(res, key=lambda x: -x[1]):
        _, _, saving2, dis2 = res_cheap[region]
        print(f"| {region} | {spread:.3f} | {dis:.1f} | {saving:.1f} | {dis2:.1f} | "
              f"{saving2:.1f} |")
    print()
    for w, rr in ((weights.wear, res), (cheap.wear, list(res_cheap.values()))):
        paying = [x for x in rr if x[3] > 0.1]
        print(f"wear {w}: V2G arbitrage pays in {len(paying)} of {len(rr)} regions "
              f"(break-even: peak > valley / 0.9025 + wear)")
    print(f"wall time {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
