"""Pool `bench.acn_replay --json` chunks into one table per algorithm.

    .venv/bin/python -m bench.acn_sum /tmp/acn/base_*.json /tmp/acn/adaptive_*.json
    .venv/bin/python -m bench.acn_sum --common ...   # only chunks every algorithm finished

Energy and sessions are summed over the chunks, peak and violation are the maxima, solve
p50/p95 are taken over every scheduling call of every chunk (the raw times are in the
JSON), fallbacks and OSQP stops are summed. A chunk replays the sessions arriving in its
days to their end; sessions of the next chunk are not present meanwhile, so a chunk's
last night is a little lighter than in one long replay.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections import defaultdict

import numpy as np

from bench.acn_replay import label


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("files", nargs="+")
    ap.add_argument("--common", action="store_true",
                    help="only the chunks every algorithm has finished")
    ap.add_argument("--only", nargs="*", help="only these algorithms")
    args = ap.parse_args()
    by_algo: dict[str, list[tuple[str, int, dict]]] = defaultdict(list)
    for path in args.files:
        data = json.load(open(path))
        for r in data["results"]:
            if args.only and r["name"] not in args.only:
                continue
            if any(c[0] == data["start"] for c in by_algo[r["name"]]):
                sys.exit(f"{r['name']} {data['start']}: two results for one chunk")
            by_algo[r["name"]].append((data["start"], data["days"], r))
    if args.common:
        keep = set.intersection(*({c[0] for c in v} for v in by_algo.values()))
        by_algo = defaultdict(list, {k: [c for c in v if c[0] in keep]
                                     for k, v in by_algo.items()})
    print("| algorithm | days (chunks) | energy delivered % | sessions fully served | "
          "peak kW | max violation A | solve s p50 / p95 | fallbacks |")
    print("| --- | --- | --- | --- | --- | --- | --- | --- |")
    for name, chunks in by_algo.items():
        chunks.sort(key=lambda c: c[0])
        rs = [c[2] for c in chunks]
        req = sum(r["requested_kwh"] for r in rs)
        dlv = sum(r["delivered_kwh"] for r in rs)
        n = sum(r["sessions"] for r in rs)
        served = sum(r["served"] for r in rs)
        solve = np.concatenate([np.asarray(r["solve_times_s"]) for r in rs])
        fb = sum(len(r["fallbacks"]) for r in rs)
        osqp = sum(r.get("osqp_failures", 0) for r in rs)
        calls = sum(r["calls"] for r in rs)
        extra = f" of {calls:,} calls" + (f" ({osqp} OSQP stops)" if osqp else "")
        status: dict[str, int] = defaultdict(int)
        for r in rs:
            for k, v in r.get("solver_status", {}).items():
                status[k] += v
        if status:
            extra += " (solver: " + ", ".join(f"{k} {v}" for k, v in status.items()) + ")"
        days = sum(c[1] for c in chunks)
        print(f"| {label(name)} | {days} ({len(chunks)}: {chunks[0][0]}..{chunks[-1][0]}) | "
              f"{100 * dlv / req:.2f} ({dlv:.0f} of {req:.0f} kWh) | {served}/{n} "
              f"({100 * served / n:.1f}%) | {max(r['peak_kw'] for r in rs):.1f} | "
              f"{max(r['max_violation_a'] for r in rs):.3f} | "
              f"{np.percentile(solve, 50):.4f} / {np.percentile(solve, 95):.4f} | {fb}{extra} |")
    # per chunk: energy % / sessions fully served, every algorithm side by side
    names = list(by_algo)
    starts = sorted({c[0] for chunks in by_algo.values() for c in chunks})
    print()
    print("| chunk | " + " | ".join(names) + " |")
    print("| --- |" + " --- |" * len(names))
    for start in starts:
        cells = []
        for name in names:
            r = next((c[2] for c in by_algo[name] if c[0] == start), None)
            cells.append("-" if r is None else
                         f"{100 * r['delivered_kwh'] / r['requested_kwh']:.2f}% / "
                         f"{r['served']}/{r['sessions']}")
        print(f"| {start} | " + " | ".join(cells) + " |")


if __name__ == "__main__":
    main()
