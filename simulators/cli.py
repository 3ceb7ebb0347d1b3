"""`csms-sim`: run a scenario of many simulated stations against a CSMS, or list what the
CSMS must provision for it.

    csms-sim run config/scenarios/residential.toml --url ws://127.0.0.1:9000/ocpp \\
        --speed 60 --trace out.csv --summary summary.json [--processes 4]
    csms-sim provision config/scenarios/residential.toml --format commands
    csms-sim sessions config/scenarios/residential.toml --out sessions.csv
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import ssl as ssl_module
import sys
from pathlib import Path

from simulators.clock import AcceleratedClock, parse_ocpp
from simulators.fleet import Fleet, Summary
from simulators.scenario import draw_sessions, load_scenario, write_sessions_csv
from simulators.spread import run_spread


def _run(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    start = parse_ocpp(args.start) if args.start else scenario.start
    clock = AcceleratedClock(start, args.speed)
    ssl_ctx = None
    if args.url.startswith("wss://"):
        ssl_ctx = ssl_module.create_default_context(cafile=args.cafile)
    if args.processes < 1:
        print("--processes must be at least 1", file=sys.stderr)
        return 2
    if args.processes > 1:
        summary = run_spread(args.scenario, args.url, start, args.speed, args.processes,
                             trace=args.trace, cafile=args.cafile)
        return _report(summary, args)
    trace = open(args.trace, "w", newline="") if args.trace else None
    try:
        fleet = Fleet(scenario, args.url, clock, trace=trace, ssl=ssl_ctx)
        summary = asyncio.run(fleet.run())
    finally:
        if trace is not None:
            trace.close()
    return _report(summary, args)


def _report(summary: Summary, args: argparse.Namespace) -> int:
    print(summary.text())
    if args.summary:
        Path(args.summary).write_text(json.dumps(summary.to_dict(), indent=2))
    return 0 if summary.stations_failed == 0 else 1


def _provision(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    specs = scenario.station_specs()
    tokens = sorted({s.token for s in draw_sessions(scenario)})
    if args.format == "csv":
        print("kind,id,password,node")
        for spec, node in specs:
            print(f"station,{spec.station_id},{spec.password or ''},{node}")
        for token in tokens:
            print(f"token,{token},,")
    elif args.format == "commands":
        for spec, _node in specs:
            password = f" --password {spec.password}" if spec.password else ""
            print(f"csms stations add {spec.station_id}{password}")
        for token in tokens:
            print(f"csms tokens add {token} --type ISO14443")
    else:
        doc = {
            "stations": [
                {
                    "id": spec.station_id,
                    "password": spec.password,
                    "node": node,
                    "evses": [
                        {
                            "id": e.evse_id,
                            "kind": e.kind,
                            "phases": e.phases,
                            "max_current_a": e.max_current_a,
                            "max_power_w": e.max_power_w,
                        }
                        for e in spec.evses
                    ],
                }
                for spec, node in specs
            ],
            "nodes": [
                {
                    "id": n.id,
                    "kind": n.kind,
                    "rating_kva": n.rating_kva,
                    "limit_kw": n.limit_kw,
                    "parent": n.parent,
                }
                for n in scenario.nodes
            ],
            "tokens": tokens,
        }
        print(json.dumps(doc, indent=2))
    return 0


def _sessions(args: argparse.Namespace) -> int:
    scenario = load_scenario(args.scenario)
    sessions = draw_sessions(scenario)
    write_sessions_csv(sessions, Path(args.out))
    print(f"{len(sessions)} sessions written to {args.out}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="csms-sim",
                                     description="OCPP 2.0.1 / 2.1 charger simulator")
    sub = parser.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run a scenario against a CSMS")
    run.add_argument("scenario")
    run.add_argument("--url", required=True, help="CSMS base URL; the station id is appended")
    run.add_argument("--speed", type=float, default=1.0, help="simulated seconds per second")
    run.add_argument("--start", help="override the scenario start (RFC 3339)")
    run.add_argument("--trace", help="write the per-EVSE trace CSV here")
    run.add_argument("--summary", help="write the JSON summary here")
    run.add_argument("--cafile", help="CA bundle for wss:// (Security Profile 2)")
    run.add_argument("--processes", type=int, default=1,
                     help="spread the stations over this many processes (one clock)")
    run.add_argument("-v", "--verbose", action="store_true")
    run.set_defaults(func=_run)

    prov = sub.add_parser("provision", help="station ids, passwords and tokens the CSMS needs")
    prov.add_argument("scenario")
    prov.add_argument("--format", choices=["json", "csv", "commands"], default="json")
    prov.set_defaults(func=_provision)

    ses = sub.add_parser("sessions", help="draw the scenario's sessions into a CSV")
    ses.add_argument("scenario")
    ses.add_argument("--out", required=True)
    ses.set_defaults(func=_sessions)

    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if getattr(args, "verbose", False) else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    return args.func(args)


if __name__ == "__main__":
    sys.exit(main())
