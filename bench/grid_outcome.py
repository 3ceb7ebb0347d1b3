"""Grid outcome on the residential scenario: four policies side by side, one run.

A time-stepped simulation (5-minute steps, no OCPP) of one evening and night of the
community in config/sites/residential.toml: 630 kVA transformer (limit 567 kW at a 0.9
loading factor), household load peaking at 378 kW at 20:00, 120 single-phase 7.4 kW
chargers, one car each arriving 17:00-21:00 and leaving 07:00-09:00 wanting 8-20 kWh,
Jiangsu TOU tariff (valley from 21:00). Each policy sees only cars that have arrived;
a car draws what it is allowed until it has its energy. The engine re-plans every step.

    .venv/bin/python -m bench.grid_outcome
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable
from datetime import datetime, timedelta

import numpy as np

from bench.engine_scenario import DAY, evening_sessions, jiangsu_prices, residential_site
from smart_charging import (
    Planner,
    Prices,
    Session,
    Site,
    build_grid,
    equal_share,
    tou_timer,
    uncontrolled,
)
from smart_charging.model import PHASES, sample

STEP = timedelta(minutes=5)


def simulate(site: Site, sessions: list[Session], prices: Prices, start: datetime,
             end: datetime, policy: Callable[[list[Session], datetime], dict[str, float]]
             ) -> dict[str, float]:
    """Run `policy` (present sessions, now -> kW per session id) from start to end."""
    root = site.root
    evse = {e.id: e for e in site.evses}
    delivered = {s.id: 0.0 for s in sessions}
    hours = STEP.total_seconds() / 3600
    peak_kw = 0.0
    minutes_over = 0.0
    worst_phase_excess = 0.0
    valley_kwh = total_kwh = cost = 0.0
    now = start
    while now < end:
        present = [s for s in sessions if s.arrival <= now < s.departure]
        live = [Session(s.id, s.evse_id, s.arrival, s.departure, s.energy_wanted_kwh,
                        delivered[s.id], transaction_id=s.transaction_id) for s in present]
        rates = policy(live, now)
        step_kw = 0.0
        phase_a = dict.fromkeys(PHASES, 0.0)
        for s in present:
            left = max(s.energy_wanted_kwh - delivered[s.id], 0.0)
            kw = min(rates.get(s.id, 0.0), evse[s.evse_id].max_kw, left / hours)
            delivered[s.id] += kw * hours
            step_kw += kw
            for p in PHASES:
                phase_a[p] += kw * evse[s.evse_id].phase_amps_per_kw(p)
        household = float(sample(root.load_kw, [now], [now + STEP], "max", 0.0)[0])
        total = household + step_kw
        peak_kw = max(peak_kw, total)
        if total > root.limit_kw + 1e-6:
            minutes_over += STEP.total_seconds() / 60
        house_a = household * 1000 / (3 * root.voltage_ln_v)
        for p in PHASES:
            worst_phase_excess = max(worst_phase_excess,
                                     house_a + phase_a[p] - root.phase_limit_a)
        band = prices.band_at(now)
        price = float(prices.energy_price([now], [now + STEP])[0])
        total_kwh += step_kw * hours
        cost += step_kw * hours * price
        if band is not None and band.name == "valley":
            valley_kwh += step_kw * hours
        now += STEP
    wanted = sum(s.energy_wanted_kwh for s in sessions)
    return {
        "peak_pct": 100 * peak_kw / root.rating_kva,
        "peak_kw": peak_kw,
        "minutes_over": minutes_over,
        "phase_over_a": max(worst_phase_excess, 0.0),
        "delivered_pct": 100 * sum(delivered.values()) / wanted,
        "served": sum(delivered[s.id] >= s.energy_wanted_kwh - 0.05 for s in sessions),
        "valley_pct": 100 * valley_kwh / total_kwh if total_kwh else 0.0,
        "cost": cost,
    }


def step_policy(site: Site, prices: Prices, kind: str):
    """A baseline from smart_charging.baselines applied to one 5-minute slot."""
    def policy(live: list[Session], now: datetime) -> dict[str, float]:
        if not live:
            return {}
        grid = build_grid(site, live, prices, now, slot_minutes=5, horizon_slots=1)
        if kind == "uncontrolled":
            x = uncontrolled(grid)
        elif kind == "tou":
            band = prices.band_at(now)
            x = tou_timer(grid, np.array([band is not None and band.name == "valley"]))
        else:
            x = equal_share(grid)
        return {grid.sessions[j].id: float(x[k]) for k, j in enumerate(grid.pair_session)}
    return policy


def engine_policy(site: Site, prices: Prices, timings: list[float], fallbacks: list[str]):
    planner = Planner()

    def policy(live: list[Session], now: datetime) -> dict[str, float]:
        if not live:
            return {}
        t0 = time.perf_counter()
        plan = planner.plan(site, live, prices, now)
        timings.append(time.perf_counter() - t0)
        if plan.fallback_used:
            fallbacks.append(f"{now:%H:%M} {plan.fallback_reason}")
        return {sid: float(plan.power_w[i, 0]) / 1000 for i, sid in enumerate(plan.session_ids)}
    return policy


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--seed", type=int, default=1)
    args = ap.parse_args()
    site = residential_site(120)
    prices = jiangsu_prices()
    sessions = evening_sessions(site, seed=args.seed)
    start, end = DAY.replace(hour=16), DAY.replace(hour=10) + timedelta(days=1)
    timings: list[float] = []
    fallbacks: list[str] = []
    policies = {
        "uncontrolled": step_policy(site, prices, "uncontrolled"),
        "TOU timer (valley from 21:00)": step_policy(site, prices, "tou"),
        "equal share under the limit": step_policy(site, prices, "equal"),
        "engine (re-plan every 5 min)": engine_policy(site, prices, timings, fallbacks),
    }
    wanted = sum(s.energy_wanted_kwh for s in sessions)
    print(f"{len(sessions)} sessions, {wanted:.0f} kWh requested; transformer "
          f"{site.root.rating_kva:.0f} kVA, limit {site.root.limit_kw:.0f} kW "
          f"({100 * site.root.limit_kw / site.root.rating_kva:.0f}%), seed {args.seed}")
    print()
    print("| policy | peak load, % of rating | minutes above limit | worst phase excess A | "
          "energy delivered by departure % | sessions served (within 50 Wh) | "
          "EV energy in valley % | EV energy cost CNY |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, pol in policies.items():
        r = simulate(site, sessions, prices, start, end, pol)
        print(f"| {name} | {r['peak_pct']:.1f} ({r['peak_kw']:.0f} kW) | "
              f"{r['minutes_over']:.0f} | {r['phase_over_a']:.0f} | {r['delivered_pct']:.2f} | "
              f"{r['served']}/{len(sessions)} | {r['valley_pct']:.1f} | {r['cost']:.1f} |")
    print()
    t = np.array(timings)
    print(f"engine plan time per re-plan: p50 {np.percentile(t, 50):.3f} s, "
          f"p95 {np.percentile(t, 95):.3f} s, max {t.max():.3f} s over {len(t)} plans; "
          f"fallbacks: {len(fallbacks)} {fallbacks[:3]}")


if __name__ == "__main__":
    main()
