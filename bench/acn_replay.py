"""Real sessions: replay the Caltech ACN garage with its transformer cut to 50 kW.

The sessions of bench/data/acn/ (ACN-Data, CC BY 4.0) are replayed through acnportal's
simulator (`pip install -e '.[bench]'`) on its model of the Caltech garage: 54 EVSEs,
32 A each, 208 V line-to-line on the three phase pairs, the real EVSE types (most
accept 0 or 6-32 A in whole amps, eight ClipperCreek units only 0/8/16/24/32 A), two
80 A pods, and the transformer's secondary and primary line currents as exact phasor
(second-order-cone) limits, with `transformer_cap=50` kW. The same simulator runs
every algorithm, re-scheduled every 5 minutes, and checks every pilot it is sent:
a pilot a charger does not accept raises, and the phasor currents of the pilots are
compared with every limit.

Algorithms: acnportal's own earliest-deadline-first and least-laxity-first (its sorted
queue with its infrastructure checks), `adaptive`: the adaptive scheduling of Lee, Li,
Low et al. as published, our implementation in `bench/acn_adaptive.py` (not Caltech's
`adacharge`, which is not installable here), and this engine (`smart_charging.Planner`) on a
model of the same garage (line-to-line EVSEs, phase and primary current limits of the
transformer, the pods as child nodes). Every controller sees the driver's estimated
departure, never the real one; a car still plugged in after its estimate is treated
by the engine as leaving within the next period. Cars are ideal batteries that take what the
pilot allows until they have the energy they requested.

    .venv/bin/python -m bench.acn_replay                      # 2019-07-08, 14 days
    .venv/bin/python -m bench.acn_replay --start 2019-05-06 --days 7
"""

from __future__ import annotations

import argparse
import csv
import gzip
import os
import time
import warnings
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from smart_charging import Evse, Node, Planner, PlanSettings, Prices, Session, Site, Weights
from smart_charging.departures import DepartureModel, PastStay, learn_departures
from smart_charging.model import Wiring

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT / "bench/data/acn/caltech_2019-05-01_2019-08-31.csv.gz"
PERIOD_MIN = 5
VOLTAGE = 208.0
TRANSFORMER_KW = 50.0
OVERDUE = timedelta(minutes=PERIOD_MIN)
SERVED_TOL_KWH = 6 * VOLTAGE / 1000 * PERIOD_MIN / 60  # one period at the 6 A minimum

# The garage as acnportal's caltech_acn() wires it: which pair of lines each EVSE spans
CC_POD = ["CA-322", "CA-493", "CA-496", "CA-320", "CA-495", "CA-321", "CA-323", "CA-494"]
AV_POD = ["CA-324", "CA-325", "CA-326", "CA-327", "CA-489", "CA-490", "CA-491", "CA-492"]
AB = [f"CA-{i}" for i in (308, 508, 303, 513, 310, 506, 316, 500, 318, 498)] + AV_POD + CC_POD
BC = [f"CA-{i}" for i in (304, 512, 305, 511, 313, 503, 311, 505, 317, 499, 148, 149, 212, 213)]
CA = [f"CA-{i}" for i in (307, 509, 309, 507, 306, 510, 315, 501, 319, 497, 312, 504, 314, 502)]


# --------------------------------------------------------------------------- data


def load_sessions(start: datetime, days: int) -> list[dict]:
    """Sessions arriving in [start, start + days), times as datetimes."""
    end = start + timedelta(days=days)
    out = []
    with gzip.open(DATA, "rt", newline="") as f:
        for row in csv.DictReader(f):
            arr = datetime.fromisoformat(row["arrival"])
            if not start <= arr < end:
                continue
            out.append({
                "id": row["session_id"], "station": row["station_id"], "arrival": arr,
                "departure": datetime.fromisoformat(row["departure"]),
                "estimated_departure": datetime.fromisoformat(row["estimated_departure"]),
                "requested_kwh": float(row["requested_energy (kWh)"]),
            })
    return sorted(out, key=lambda s: s["arrival"])


def period_index(t: datetime, start: datetime) -> int:
    return int((t - start) // timedelta(minutes=PERIOD_MIN))


# --------------------------------------------------------------------------- engine side


def engine_site(transformer_kw: float = TRANSFORMER_KW) -> Site:
    """The garage for the engine, with the limits acnportal's caltech_acn() uses:
    secondary line current cap*1000/3/120 A, primary cap*1000/3/277 A with the
    4:1 winding ratio (I_primary = (I_L1 - I_L3) / 4), the pods 80 A each."""
    secondary_a = transformer_kw * 1000 / 3 / 120
    primary_a = transformer_kw * 1000 / 3 / 277 * 4  # referred to the secondary
    nodes = (
        Node("transformer", limit_kw=transformer_kw, phase_limit_a=secondary_a,
             primary_limit_a=primary_a, voltage_ln_v=120.0, kind="transformer"),
        Node("cc-pod", parent="transformer", phase_limit_a=80.0, voltage_ln_v=120.0),
        Node("av-pod", parent="transformer", phase_limit_a=80.0, voltage_ln_v=120.0),
    )
    evses = []
    for ids, phases in ((AB, ("L1", "L2")), (BC, ("L2", "L3")), (CA, ("L3", "L1"))):
        for sid in ids:
            node = "cc-pod" if sid in CC_POD else "av-pod" if sid in AV_POD else "transformer"
            cc = sid in CC_POD  # ClipperCreek: 0, 8, 16, 24 or 32 A only
            evses.append(Evse(sid, node, station_id=sid, wiring=Wiring.DELTA, phases=phases,
                              voltage_v=VOLTAGE, min_current_a=8.0 if cc else 6.0,
                              max_current_a=32.0, current_step_a=8.0 if cc else None))
    return Site("caltech-acn", nodes, tuple(evses))


def past_stays() -> list[tuple[datetime, PastStay]]:
    """Every session of the file as a past stay, keyed by when it ended: a controller
    at time t may learn from those that ended before t (nothing later, so the held-out
    months are never seen before they happen)."""
    rows = load_sessions(datetime.fromisoformat("2019-01-01T00:00:00-08:00"), 365)
    return sorted(((r["departure"], PastStay(r["arrival"], r["estimated_departure"],
                                             r["departure"])) for r in rows),
                  key=lambda p: p[0])


def make_engine_algo(start: datetime, weights: Weights, oracle: bool = False,
                     learn: bool = True, settings: PlanSettings | None = None):
    from acnportal.algorithms import BaseAlgorithm

    class EngineAlgo(BaseAlgorithm):
        """acnportal scheduler that asks the engine for the next period's pilots."""

        def __init__(self) -> None:
            super().__init__()
            self.max_recompute = 1
            self.site = engine_site()
            self.planner = Planner(settings or PlanSettings(slot_minutes=15, horizon_slots=96,
                                                            weights=weights))
            self.fallbacks: list[str] = []
            self.history = past_stays() if learn else []
            self.model_day: object = None
            self.model: DepartureModel | None = None

        def schedule(self, active_sessions):  # acnportal's SessionInfo list
            if not active_sessions:
                return {}
            step = timedelta(minutes=PERIOD_MIN)
            now = start + self.interface.current_time * step
            sessions = []
            for s in active_sessions:
                est = start + (s.departure if oracle else s.estimated_departure) * step
                sessions.append(Session(
                    s.session_id, s.station_id, start + s.arrival * step,
                    max(est, now + OVERDUE), float(s.requested_energy),
                    float(s.energy_delivered)))
            if self.history and now.date() != self.model_day:  # re-learnt once a day
                self.model_day = now.date()
                self.model = learn_departures([p for end, p in self.history if end <= now])
            plan = self.planner.plan(self.site, sessions, Prices(), now,
                                     departures=self.model)
            if plan.fallback_used:
                self.fallbacks.append(f"{now:%m-%d %H:%M} {plan.fallback_reason}")
            out = {}
            for i, evse_id in enumerate(plan.evse_ids):
                amps = float(plan.current_a[i, 0])
                continuous, allowed = self.interface.allowable_pilot_signals(evse_id)
                if not continuous:  # a no-op: the engine knows each EVSE's steps
                    amps = max((a for a in allowed if a <= amps + 1e-9), default=0.0)
                out[evse_id] = [amps]
            return out

    return EngineAlgo()


# --------------------------------------------------------------------------- one run


def run_one(name: str, start: datetime, days: int, weights: Weights | None = None,
            oracle: bool = False, learn: bool = False,
            settings: PlanSettings | None = None) -> dict:
    from acnportal import acnsim
    from acnportal.algorithms import (
        SortedSchedulingAlgo,
        UncontrolledCharging,
        earliest_deadline_first,
        least_laxity_first,
    )

    rows = load_sessions(start, days)
    events = []
    for r in rows:
        arr = period_index(r["arrival"], start)
        dep = max(period_index(r["departure"], start), arr + 1)
        est = max(period_index(r["estimated_departure"], start), arr + 1)
        battery = acnsim.Battery(capacity=r["requested_kwh"], init_charge=0.0, max_power=100.0)
        ev = acnsim.EV(arr, dep, r["requested_kwh"], r["station"], r["id"], battery,
                       estimated_departure=est)
        events.append(acnsim.PluginEvent(arr, ev))
    network = acnsim.sites.caltech_acn(basic_evse=False, voltage=VOLTAGE,
                                       transformer_cap=TRANSFORMER_KW)
    if name == "edf":
        algo = SortedSchedulingAlgo(earliest_deadline_first)
    elif name == "llf":
        algo = SortedSchedulingAlgo(least_laxity_first)
    elif name == "uncontrolled":
        algo = UncontrolledCharging()
    elif name == "adaptive":
        from bench.acn_adaptive import make_adaptive_algo
        algo = make_adaptive_algo()
    else:
        algo = make_engine_algo(start, weights or Weights(), oracle, learn, settings)
    sim = acnsim.Simulator(network, algo, acnsim.EventQueue(events), start,
                           period=PERIOD_MIN, verbose=False)
    t0 = time.perf_counter()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        sim.run()
    wall = time.perf_counter() - t0

    evs = list(sim.ev_history.values())
    requested = np.array([ev.requested_energy for ev in evs])
    delivered = np.array([ev.energy_delivered for ev in evs])
    volts = np.array([network.voltages[s] for s in network.station_ids])
    site_kw = (sim.charging_rates * volts[:, None]).sum(axis=0) / 1000
    pilots = sim.pilot_signals
    currents = np.abs(network.constraint_current(pilots))
    excess = currents - network.magnitudes[:, None]
    worst = int(np.argmax(excess.max(axis=1)))
    solve = np.array([s["solve_time"] for s in algo.solve_stats if s["active_sessions"] > 0])
    invalid = [str(w.message) for w in caught if "Invalid schedule" in str(w.message)]
    return {
        "name": name,
        "sessions": len(evs),
        "requested_kwh": float(requested.sum()),
        "delivered_kwh": float(delivered.sum()),
        "served": int((delivered >= requested - SERVED_TOL_KWH).sum()),
        "peak_kw": float(site_kw.max()),
        "max_violation_a": float(max(excess.max(), 0.0)),
        "worst_constraint": network.constraint_index[worst],
        "solve_p50_s": float(np.percentile(solve, 50)),
        "solve_p95_s": float(np.percentile(solve, 95)),
        "calls": len(solve),
        "wall_s": wall,
        "invalid_warnings": len(invalid),
        "fallbacks": list(getattr(algo, "fallbacks", [])),
        "osqp_failures": sum(algo.planner.osqp_failures.values()) if hasattr(
            algo, "planner") else 0,
        "solver_status": dict(getattr(algo, "solver_status", {})),
        "pilots_whole_amps": bool(np.all(np.isclose(pilots, np.round(pilots)))),
        "solve_times_s": [float(x) for x in solve],  # for pooling chunks (bench.acn_sum)
    }


# --------------------------------------------------------------------------- main

LABELS = {
    "edf": "acnportal earliest deadline first",
    "llf": "acnportal least laxity first",
    "uncontrolled": "acnportal uncontrolled (full pilot, limits ignored)",
    "adaptive": "adaptive scheduling as published (quick charge + equal share, whole amps), "
                "our implementation, not Caltech's adacharge",
    "engine": "engine, garage weights (flatness 0, early 0.2), no learnt departures",
    "engine-default": "engine, default settings (learnt departures, Clarabel backup, fill, "
                      "completion when short)",
    "engine-before": "engine, default settings of before issue 12 (no learnt departures, "
                     "no Clarabel backup, no fill, no completion)",
    "engine-nolearn": "engine, default settings without learnt departures",
    "engine-completion": "engine, default settings with completion 20",
    "engine-completion80": "engine, default settings with completion 80",
    "engine-oracle": "engine, default settings, told the real departures (reference only)",
}
# Before issue 12 the bench ran a workplace garage with hand-picked weights: nothing to
# flatten for, and energy sooner worth more. Kept for comparison; the default is learnt.
GARAGE_WEIGHTS = Weights(flatness=0.0, early=0.2)
PLAN = PlanSettings(slot_minutes=15, horizon_slots=96)
BEFORE = replace(PLAN, solver=replace(PLAN.solver, interior_backup=False),
                 rounding=replace(PLAN.rounding, fill_short=False),
                 weights=Weights(completion=0.0))


def _run(args: tuple) -> dict:
    name, start, days = args
    if name == "engine":
        return run_one(name, start, days, GARAGE_WEIGHTS, settings=replace(
            PLAN, weights=GARAGE_WEIGHTS))
    if name == "engine-before":
        return run_one(name, start, days, settings=BEFORE)
    if name.startswith("engine-completion"):
        c = float(name.removeprefix("engine-completion") or 20)
        return run_one(name, start, days, learn=True, settings=replace(
            PLAN, weights=Weights(completion=c)))
    if name.startswith("engine-default:"):
        return run_one(name, start, days, learn=True, settings=replace(
            PLAN, weights=variant_weights(name)))
    return run_one(name, start, days, oracle=name == "engine-oracle",
                   learn=name in ("engine-default",), settings=PLAN)


def variant_weights(name: str) -> Weights:
    """`engine-default:completion=5,departure_risk=2`: the default settings with those
    weights changed (for tuning runs)."""
    pairs = name.split(":", 1)[1].split(",")
    return Weights(**{k: float(v) for k, v in (p.split("=", 1) for p in pairs)})


def label(name: str) -> str:
    if name.startswith("engine-default:"):
        return f"engine, default settings with {name.split(':', 1)[1]}"
    return LABELS[name]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--start", default="2019-07-08", help="local date, first day replayed")
    ap.add_argument("--days", type=int, default=14)
    ap.add_argument("--algorithms", nargs="*", default=["edf", "llf", "engine", "engine-default"],
                    help=f"any of {', '.join(LABELS)}, or engine-default:WEIGHT=VALUE,...")
    ap.add_argument("--jobs", type=int, default=2, help="algorithms run in parallel")
    ap.add_argument("--json", help="also write every result (with each solve time) here, "
                    "to pool chunks with bench.acn_sum")
    args = ap.parse_args()
    for a in args.algorithms:
        if a not in LABELS and not a.startswith("engine-default:"):
            ap.error(f"unknown algorithm {a}")
        if a.startswith("engine-default:"):
            variant_weights(a)  # a misspelt weight fails here, not after an hour
    start = datetime.fromisoformat(args.start + "T00:00:00-07:00")
    t0 = time.perf_counter()
    jobs = [(a, start, args.days) for a in args.algorithms]
    if args.jobs > 1:
        with ProcessPoolExecutor(max_workers=min(args.jobs, len(jobs))) as pool:
            results = list(pool.map(_run, jobs))
    else:
        results = [_run(j) for j in jobs]
    r0 = results[0]
    print(f"{r0['sessions']} sessions arriving {args.start} + {args.days} days, "
          f"{r0['requested_kwh']:.0f} kWh requested; transformer {TRANSFORMER_KW:.0f} kW; "
          f"re-scheduled every {PERIOD_MIN} min; load average {os.getloadavg()[0]:.1f}")
    print()
    print("| algorithm | energy delivered, % of requested | sessions fully served | "
          "peak kW | max limit violation A (pilots as sent) | solve s p50 / p95 |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in results:
        print(f"| {label(r['name'])} | {100 * r['delivered_kwh'] / r['requested_kwh']:.2f} "
              f"({r['delivered_kwh']:.0f} kWh) | {r['served']}/{r['sessions']} "
              f"({100 * r['served'] / r['sessions']:.1f}%) | {r['peak_kw']:.1f} | "
              f"{r['max_violation_a']:.3f} | {r['solve_p50_s']:.4f} / {r['solve_p95_s']:.4f} |")
    print()
    for r in results:
        print(f"{r['name']}: {r['calls']} scheduling calls, simulation {r['wall_s']:.0f} s, "
              f"tightest limit {r['worst_constraint']}, simulator warnings "
              f"{r['invalid_warnings']}, whole amps {r['pilots_whole_amps']}, "
              f"OSQP failures {r['osqp_failures']}, "
              f"fallbacks {len(r['fallbacks'])} {r['fallbacks'][:3]}")
    print(f"total wall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        import json
        Path(args.json).write_text(json.dumps(
            {"start": args.start, "days": args.days, "load": os.getloadavg()[0],
             "results": results}))


if __name__ == "__main__":
    main()
