"""One scenario's fleet spread over several processes (`csms-sim run --processes N`), for
more stations than one process holds (its sockets, its event loop, its GIL).

Process i plays every N-th station from the i-th (`Fleet(shard=(i, N))`); all share one
simulated clock by a wall-clock anchor (`AcceleratedClock(anchor=...)`), so sessions
arrive and leave as they would in one process. Each writes its own trace part; the
parent joins the parts into one CSV, sums the node loads per trace step and builds one
summary: sessions and stations as reported, peaks from the summed loads.
"""

from __future__ import annotations

import asyncio
import multiprocessing
import shutil
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from simulators.clock import AcceleratedClock
from simulators.fleet import Fleet, SessionResult, Summary
from simulators.scenario import Scenario, draw_sessions, load_scenario

START_DELAY_S = 1.0  # the children's clock starts this long after the last one is up


@dataclass(frozen=True)
class Part:
    """What one process reports back (plain data: it crosses a process boundary)."""

    stations: int
    stations_failed: int
    results: dict[str, tuple[float, bool, str, datetime | None]]  # session id -> outcome
    node_load: dict[tuple[int, str], float]


def _child(scenario_path: str, url: str, start: datetime, speed: float, shard: tuple[int, int],
           trace: str | None, cafile: str | None, out: Any, go: Any, anchor: Any) -> None:
    import ssl as ssl_module

    scenario = load_scenario(scenario_path)
    ssl_ctx = ssl_module.create_default_context(cafile=cafile) if url.startswith("wss://") \
        else None
    out.put(("ready", shard[0], None))
    go.wait()  # every process is up: the clock starts for all at the anchor
    clock = AcceleratedClock(start, speed, anchor=anchor.value)
    file = open(trace, "w", newline="") if trace else None
    try:
        fleet = Fleet(scenario, url, clock, trace=file, ssl=ssl_ctx, shard=shard)
        time.sleep(max(0.0, anchor.value - time.time()))
        summary = asyncio.run(fleet.run())
    finally:
        if file is not None:
            file.close()
    out.put(("done", shard[0], Part(
        summary.stations, summary.stations_failed,
        {r.session.session_id: (r.delivered_wh, r.plugged_in, r.authorized, r.authorized_at)
         for r in summary.sessions},
        fleet.node_load)))


def run_spread(scenario_path: str, url: str, start: datetime, speed: float, processes: int,
               trace: str | None = None, cafile: str | None = None) -> Summary:
    """Play the scenario in `processes` processes; one summary, one trace (if asked)."""
    ctx = multiprocessing.get_context("spawn")
    queue: Any = ctx.Queue()
    go, anchor = ctx.Event(), ctx.Value("d", 0.0)
    parts_paths = [f"{trace}.part{i}" if trace else None for i in range(processes)]
    procs = [ctx.Process(target=_child, args=(scenario_path, url, start, speed, (i, processes),
                                              parts_paths[i], cafile, queue, go, anchor))
             for i in range(processes)]
    for p in procs:
        p.start()
    scenario = load_scenario(scenario_path)
    wall_s = (scenario.end - start).total_seconds() / speed
    ready: set[int] = set()
    parts: dict[int, Part] = {}
    deadline = time.time() + 120 + wall_s + 600
    try:
        while len(parts) < processes:
            try:
                kind, index, part = queue.get(timeout=5)
            except Exception:  # queue.Empty: look again whether a child died
                if not all(p.is_alive() for i, p in enumerate(procs) if i not in parts):
                    raise RuntimeError("a fleet process failed") from None
                if time.time() > deadline:
                    raise RuntimeError("fleet processes did not finish") from None
                continue
            if kind == "ready":
                ready.add(index)
                if len(ready) == processes:
                    anchor.value = time.time() + START_DELAY_S
                    go.set()
            else:
                parts[index] = part
    finally:
        for p in procs:
            p.join(timeout=30)
            if p.is_alive():
                p.kill()
    if trace:
        _join_traces(trace, [p for p in parts_paths if p])
    return merge(scenario, start, [parts[i] for i in range(processes)])


def merge(scenario: Scenario, start: datetime, parts: list[Part]) -> Summary:
    """One summary of several processes' parts: results by session, peaks of the summed
    node loads (a node's stations may be in every process)."""
    fleet = Fleet(scenario, "ws://unused", AcceleratedClock(start), shard=(0, 1))
    summary = fleet.summary
    summary.stations = sum(p.stations for p in parts)
    summary.stations_failed = sum(p.stations_failed for p in parts)
    outcomes = {k: v for p in parts for k, v in p.results.items()}
    for session in draw_sessions(scenario):
        if session.session_id not in outcomes:
            continue
        delivered, plugged, authorized, authorized_at = outcomes[session.session_id]
        summary.sessions.append(SessionResult(session, delivered, plugged, authorized,
                                              authorized_at))
    load: dict[tuple[int, str], float] = {}
    for p in parts:
        for key, kw in p.node_load.items():
            load[key] = load.get(key, 0.0) + kw
    for step in sorted({s for s, _ in load}):
        at = scenario.start + step * timedelta(seconds=scenario.trace_interval_s)
        fleet.record_peaks(at, {n: kw for (s, n), kw in load.items() if s == step})
    return summary


def _join_traces(trace: str, parts: list[str]) -> None:
    """The parts one after another under one header (rows grouped by process)."""
    with open(trace, "w", newline="") as out:
        for i, path in enumerate(parts):
            with open(path, newline="") as part:
                header = part.readline()
                if i == 0:
                    out.write(header)
                shutil.copyfileobj(part, out)
            Path(path).unlink()
