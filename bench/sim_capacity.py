"""How many simulated stations one simulator process sustains, and memory per station.

Starts a trivial OCPP peer in a child process (answers every CALL at once), then in this
process connects N stations, each with one AC EVSE and a charging EV, sending a
TransactionEvent (MeterValuePeriodic) every `--interval` seconds. Over a measurement
window it reports: CPU share of one core used by the simulator, TransactionEvents per
second achieved vs expected (N / interval), event-loop lag (p50/p99 of a 100 ms probe), and
resident memory per station.

    .venv/bin/python bench/sim_capacity.py --stations 1000 10000 --interval 10 --window 60
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import random
import resource
import statistics
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from simulators.clock import SystemClock
from simulators.ev import EV
from simulators.station import EvseSpec, Station, StationSpec


def rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


# ---------------------------------------------------------------- the trivial peer


def run_peer(port: int, ready) -> None:
    from websockets.asyncio.server import serve

    async def handler(ws) -> None:
        async for text in ws:
            msg = json.loads(text)
            if msg[0] != 2:
                continue
            action = msg[2]
            if action == "BootNotification":
                now = datetime.now(UTC).isoformat()
                body = {"currentTime": now, "interval": 300, "status": "Accepted"}
            elif action == "Authorize":
                body = {"idTokenInfo": {"status": "Accepted"}}
            elif action == "Heartbeat":
                body = {"currentTime": datetime.now(UTC).isoformat()}
            else:
                body = {}
            await ws.send(json.dumps([3, msg[1], body]))

    import logging

    logging.getLogger("websockets").setLevel(logging.CRITICAL)  # dropped peers are counted

    async def main() -> None:
        async with serve(
            handler,
            "127.0.0.1",
            port,
            subprotocols=["ocpp2.0.1"],
            compression=None,
            ping_interval=None,
            backlog=4096,
        ):
            ready.set()
            await asyncio.Future()

    asyncio.run(main())


# ---------------------------------------------------------------- the measured side


async def loop_lag_probe(samples: list[float], stop: asyncio.Event) -> None:
    while not stop.is_set():
        t = time.perf_counter()
        await asyncio.sleep(0.1)
        samples.append((time.perf_counter() - t - 0.1) * 1000)


async def measure(n: int, port: int, interval: float, window: float) -> dict:
    base_rss = rss_mb()
    clock = SystemClock()
    url = f"ws://127.0.0.1:{port}/ocpp"
    stations = [
        Station(
            StationSpec(
                f"B{i:05d}",
                evses=[EvseSpec(1, phases=1, max_current_a=32.0)],
                meter_interval_s=interval,
                call_timeout_s=60.0,
            ),
            url=url,
            clock=clock,
        )
        for i in range(n)
    ]
    gate = asyncio.Semaphore(200)

    rng = random.Random(1)
    up = 0

    failures: list[str] = []

    async def bring_up(st: Station) -> None:
        nonlocal up
        await asyncio.sleep(rng.uniform(0, interval))  # spread the meter samples
        async with gate:
            try:
                await st.start()
                await st.plug_in(1, EV(battery_kwh=1e6, soc=0.1, energy_wanted_wh=1e12))
                await st.present_token(1, "BENCH")
            except Exception as exc:
                failures.append(repr(exc))
                return
            up += 1

    async def progress() -> None:
        while True:
            await asyncio.sleep(5)
            print(
                f"  {time.perf_counter() - t0:6.1f}s: {up}/{n} stations charging, "
                f"{len(failures)} failed, {sum(s.connects for s in stations)} connects",
                file=sys.stderr,
            )

    t0 = time.perf_counter()
    reporter = asyncio.ensure_future(progress())
    await asyncio.gather(*(bring_up(s) for s in stations))
    setup_s = time.perf_counter() - t0
    reporter.cancel()
    await asyncio.sleep(interval)  # every station has sent its first sample
    setup_rss = rss_mb()

    lag: list[float] = []
    stop = asyncio.Event()
    probe = asyncio.ensure_future(loop_lag_probe(lag, stop))
    sent0 = sum(s.sent_calls for s in stations)
    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.sleep(window)
    cpu1, wall1 = time.process_time(), time.perf_counter()
    sent1 = sum(s.sent_calls for s in stations)
    stop.set()
    await probe
    connected = sum(1 for s in stations if s.connected)
    queued = sum(s.queued_messages for s in stations)
    await asyncio.gather(*(s.stop() for s in stations))
    wall = wall1 - wall0
    lag.sort()
    return {
        "stations": n,
        "connected": connected,
        "failed_to_start": len(failures),
        "reconnects": sum(s.connects for s in stations) - n + len(failures),
        "setup_s": round(setup_s, 1),
        "cpu_share_of_one_core": round((cpu1 - cpu0) / wall, 3),
        "calls_per_s": round((sent1 - sent0) / wall, 1),
        "cpu_ms_per_call": round((cpu1 - cpu0) * 1000 / max(1, sent1 - sent0), 3),
        "expected_tx_events_per_s": round(n / interval, 1),
        "queued_at_end": queued,
        "loop_lag_p50_ms": round(statistics.median(lag), 1) if lag else None,
        "loop_lag_p99_ms": round(lag[int(len(lag) * 0.99) - 1], 1) if lag else None,
        "rss_per_station_kb": round((setup_rss - base_rss) * 1024 / n, 1),
        "rss_mb": round(setup_rss, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--stations", type=int, nargs="+", default=[1000, 10000])
    parser.add_argument("--interval", type=float, default=10.0)
    parser.add_argument("--window", type=float, default=60.0)
    parser.add_argument("--port", type=int, default=9911)
    args = parser.parse_args()
    _soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    for n in args.stations:
        ready = multiprocessing.Event()
        peer = multiprocessing.Process(target=run_peer, args=(args.port, ready), daemon=True)
        peer.start()
        ready.wait(30)
        try:
            # No CPU pinning: the simulator is one asyncio thread, so it can never use more
            # than one core; cpu_share_of_one_core says how much of one it needed.
            result = asyncio.run(measure(n, args.port, args.interval, args.window))
        finally:
            peer.terminate()
            peer.join(5)
        print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
