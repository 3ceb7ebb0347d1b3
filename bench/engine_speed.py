"""Solver speed: N sessions x 96 slots on one site, cold first plan and warm re-plans.

Each N runs in its own process so peak RSS is that N's alone. Re-plans follow a 5-minute
interval from 19:00 with energy delivered updated from the previous plan: inside a slot
and across slot boundaries (19:15, 19:30) both keep the QP's sparsity pattern, so OSQP
only updates numbers. Then events at 19:30, each on top of the last: one car leaves
early, another's departure moves 1 h earlier, a new car arrives at the freed EVSE
leaving before the old one would have (these keep the pattern: unused pairs fixed at
0), and a departure moves 3 h later (pairs the pattern lacks: a new OSQP setup,
warm-started; marked *).

    .venv/bin/python -m bench.engine_speed            # N = 100, 1000, 5000
    .venv/bin/python -m bench.engine_speed --n 1000   # one size
    .venv/bin/python -m bench.engine_speed --split    # the same cars as sites of 120
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from dataclasses import replace
from datetime import timedelta

import numpy as np

from bench.engine_scenario import DAY, evening_sessions, jiangsu_prices, residential_site
from smart_charging import Plan, Planner, PlanSettings, SolverSettings


def run_one(n: int, replans: int) -> dict:
    site = residential_site(n)
    sessions = evening_sessions(site)
    prices = jiangsu_prices()
    planner = Planner(PlanSettings(solver=SolverSettings(time_limit_s=120.0)))
    now = DAY.replace(hour=19)
    t0 = time.perf_counter()
    plan = planner.plan(site, sessions, prices, now)
    first = time.perf_counter() - t0
    first_info = {"wall_s": first, "build_s": plan.build_seconds, "solve_s": plan.solve_seconds,
                  "iterations": plan.iterations, "status": plan.status,
                  }
    replan_rows = []
    for _ in range(replans):
        step = timedelta(minutes=5)
        # cars took what the plan gave them in the last 5 minutes
        got = dict(zip(plan.session_ids, plan.power_w[:, 0] / 1000 * step.total_seconds() / 3600,
                       strict=True))
        sessions = [replace(s, energy_delivered_kwh=s.energy_delivered_kwh + got.get(s.id, 0.0))
                    if s.arrival <= now else s for s in sessions]
        now += step
        t0 = time.perf_counter()
        plan = planner.plan(site, sessions, prices, now)
        replan_rows.append(_row(plan, time.perf_counter() - t0, now.strftime("%H:%M")))
    gone, moved = sessions[0], sessions[1]
    hour = timedelta(hours=1)
    events = {  # each on top of the last; only the last needs pairs the pattern lacks
        "departure": sessions[1:],
        "earlier": [replace(moved, departure=moved.departure - hour), *sessions[2:]],
        "arrival": [replace(moved, departure=moved.departure - hour), *sessions[2:],
                    replace(gone, id="new-car", arrival=now + hour,
                            departure=gone.departure - hour, energy_delivered_kwh=0.0)],
    }
    events["later"] = [replace(moved, departure=moved.departure + 3 * hour),
                       *events["arrival"][1:]]
    event_rows = {}
    for label, changed in events.items():
        t0 = time.perf_counter()
        plan = planner.plan(site, changed, prices, now)
        event_rows[label] = _row(plan, time.perf_counter() - t0,
                                 now.strftime("%H:%M") + " " + label)
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"n": n, "first": first_info, "replans": replan_rows, "events": event_rows,
            "peak_rss_mb": rss_mb}


def run_split(n: int, per_site: int = 120) -> dict:
    """The same N cars as the scheduler sees a real community: one site per 630 kVA
    transformer of `per_site` chargers, each with its own Planner. Times are summed
    over the sites (one thread; the CSMS plans sites in parallel threads)."""
    groups = []
    for g in range(max(1, n // per_site)):
        site = residential_site(per_site)
        groups.append((site, evening_sessions(site, seed=g + 1), Planner(
            PlanSettings(solver=SolverSettings(time_limit_s=120.0)))))
    prices = jiangsu_prices()
    out: dict[str, float] = {"sites": len(groups)}
    for label, now in (("first", DAY.replace(hour=19, minute=10)),
                       ("boundary", DAY.replace(hour=19, minute=15)),
                       ("interval", DAY.replace(hour=19, minute=20))):
        t0 = time.perf_counter()
        for site, sessions, planner in groups:
            planner.plan(site, sessions, prices, now)
        out[label] = time.perf_counter() - t0
    site, sessions, planner = groups[0]
    t0 = time.perf_counter()  # a departure re-plans only its own site
    planner.plan(site, sessions[1:], prices, DAY.replace(hour=19, minute=20))
    out["departure"] = time.perf_counter() - t0
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return out


def _row(plan: Plan, wall: float, label: str) -> dict:
    return {"wall_s": wall, "build_s": plan.build_seconds, "solve_s": plan.solve_seconds,
            "iterations": plan.iterations, "status": plan.status,
            "fallback": plan.fallback_used, "kept": plan.pattern_kept, "now": label}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, nargs="*", default=[100, 1000, 5000])
    ap.add_argument("--replans", type=int, default=6)
    ap.add_argument("--child", action="store_true")
    ap.add_argument("--split", action="store_true",
                    help="N cars as sites of 120 chargers (one per transformer)")
    args = ap.parse_args()
    if args.child:
        print(json.dumps(run_split(args.n[0]) if args.split else run_one(args.n[0],
                                                                           args.replans)))
        return
    if args.split:
        print("| sessions | sites | first plans s | re-plan at a slot boundary s | re-plan "
              "inside a slot s | one site after a departure s | peak RSS MB |")
        print("| --- | --- | --- | --- | --- | --- | --- |")
        for n in args.n:
            out = subprocess.run([sys.executable, "-m", "bench.engine_speed", "--child",
                                  "--split", "--n", str(n)], capture_output=True, text=True,
                                 check=True, timeout=900)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            print(f"| {n} | {r['sites']:.0f} | {r['first']:.2f} | {r['boundary']:.2f} | "
                  f"{r['interval']:.2f} | {r['departure']:.3f} | {r['peak_rss_mb']:.0f} |")
        return
    results = []
    for n in args.n:
        out = subprocess.run([sys.executable, "-m", "bench.engine_speed", "--child", "--n",
                              str(n), "--replans", str(args.replans)],
                             capture_output=True, text=True, check=True, timeout=900)
        results.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print("| sessions | first plan (build + solve) s | iterations | warm re-plan s, median "
          "(min-max) | re-plan solver s, median | re-plan iterations, median | after a "
          "departure s (iterations) | departure 1 h earlier | arrival at the freed EVSE | "
          "departure 3 h later (new pattern) | peak RSS MB |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- | --- | --- | --- |")
    for r in results:
        walls = [x["wall_s"] for x in r["replans"]]
        solves = [x["solve_s"] for x in r["replans"]]
        its = [x["iterations"] for x in r["replans"]]
        f = r["first"]
        bad = [x for x in [*r["replans"], *r["events"].values()] if x["status"] != "solved"] + (
            [f] if f["status"] != "solved" else [])
        print(f"| {r['n']} | {f['wall_s']:.2f} ({f['build_s']:.2f} + {f['solve_s']:.2f}) | "
              f"{f['iterations']} | {np.median(walls):.3f} ({min(walls):.3f}-{max(walls):.3f}) | "
              f"{np.median(solves):.3f} | {int(np.median(its))} | "
              + "".join(f"{e['wall_s']:.2f} ({e['iterations']}){'' if e['kept'] else '*'} | "
                        for e in r["events"].values())
              + f"{r['peak_rss_mb']:.0f} |"
              + (f" NOT SOLVED: {bad}" if bad else ""))
    print()
    print("per re-plan detail (now, wall s / solver s / iterations, * = new pattern):")
    for r in results:
        detail = ", ".join(f"{x['now']} {x['wall_s']:.3f}/{x['solve_s']:.3f}/{x['iterations']}"
                           + ("" if x["kept"] else "*")
                           for x in [*r["replans"], *r["events"].values()])
        print(f"  N={r['n']}: {detail}")


if __name__ == "__main__":
    main()
