"""`csms demo`: added to the `csms` command through the `csms.commands` entry point group
(see csms/cli.py), so csms itself never imports this package."""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SCENARIO = "config/scenarios/residential.toml"
SITE = "config/sites/residential.toml"

DESCRIPTION = """\
Watch a night of ordered charging: the CSMS, its HTTP API (and dashboard) and scheduler,
and a simulated residential community (120 home chargers under one 630 kVA transformer)
in one process, on one accelerated clock. The database is a fresh one in the embedded
PostgreSQL under --data-dir, recreated on every run."""


def _hhmm(text: str) -> time:
    try:
        hh, mm = text.split(":")
        return time(int(hh) % 24, int(mm))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not HH:MM") from None


def _speed(text: str) -> float:
    value = float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError("the speed-up must be positive")
    return value


def _config_file(relative: str) -> str:
    """Relative to the working folder if there, else to the source tree."""
    return relative if Path(relative).exists() else str(ROOT / relative)


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("demo", help="watch a simulated night of smart charging",
                       description=DESCRIPTION)
    p.add_argument("--speed", type=_speed, default=240.0,
                   help="simulated seconds per second (default 240: 17:00-09:00 in 4 min; "
                   "much faster and a 2-core machine cannot keep up with 120 stations)")
    p.add_argument("--start", type=_hhmm, default=time(17), help="local time (default 17:00)")
    p.add_argument("--end", type=_hhmm, default=time(9),
                   help="local time, next morning if not later (default 09:00)")
    p.add_argument("--host", default="127.0.0.1",
                   help="address for both ports (default 127.0.0.1; 0.0.0.0 in a container)")
    p.add_argument("--port", type=int, default=9000, help="OCPP port (default 9000, 0 = any)")
    p.add_argument("--api-port", type=int, default=8080,
                   help="HTTP API and dashboard port (default 8080, 0 = any)")
    p.add_argument("--data-dir", default="data/demo",
                   help="folder of the demo's PostgreSQL and log (default data/demo)")
    p.add_argument("--scenario", default=_config_file(SCENARIO),
                   help="simulator scenario (default: the residential community)")
    p.add_argument("--site", default=_config_file(SITE),
                   help="the site the CSMS plans: the scenario's EVSEs (default: residential)")
    p.add_argument("--exit-at-end", action="store_true",
                   help="exit after the summary instead of serving until Ctrl-C")
    p.set_defaults(run=main)


def main(args: argparse.Namespace) -> int:
    from demo.night import DemoError, Options, run  # the heavy imports, only when used

    options = Options(
        scenario=Path(args.scenario), site=Path(args.site), speed=args.speed,
        start=args.start, end=args.end, host=args.host, port=args.port,
        api_port=args.api_port, data_dir=Path(args.data_dir), exit_at_end=args.exit_at_end,
    )
    try:
        return asyncio.run(run(options))
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
