"""Scale-out (issue 13): what `csms serve --workers 2` gives over `--workers 1`, and what a
CALL routed to another node costs.

    .venv/bin/python bench/workers.py                  # both parts, under 2 min
    .venv/bin/python bench/workers.py --part throughput --stations 200 --seconds 15
    .venv/bin/python bench/workers.py --part cross --calls 500

throughput: for each worker count, `csms serve --workers W` runs as its own process tree
on one PostgreSQL (embedded in a temporary folder, or DATABASE_URL) with the scheduler
and API off; --stations stations (no password: no scrypt in the way) connect through the
one port, boot, then each sends Heartbeats back to back (one CALL in flight) for
--seconds. Messages/s over the window and the round-trip p50/p99 seen by the generator.
The generator runs in --generators processes of its own on the same machine.

cross: two CSMS nodes in this process on one database and one nats-server (as the tests
run them); one station, on node b, answers TriggerMessage. --calls CALLs through node b
(local: the socket is there) and through node a (routed over NATS), one at a time;
p50/p99 of each, and of a bare NATS request/reply on loopback.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import signal
import sys
import tempfile
import time
import uuid
import warnings
from dataclasses import replace
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import websockets

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from csms.cluster.broker import EmbeddedBroker, free_port

CSMS = [sys.executable, "-m", "csms.cli"]


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p / 100 * len(ordered)))] if ordered else 0.0


def database() -> tuple[str, Any]:
    if url := os.environ.get("DATABASE_URL"):
        return url, None
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(Path(tempfile.mkdtemp(prefix="bench-workers-")),
                                     cleanup_mode="delete")
    return server.get_uri(), server


async def fresh_database(admin_url: str) -> str:
    name = "bench_" + uuid.uuid4().hex[:8]
    conn = await asyncpg.connect(admin_url)
    await conn.execute(f"CREATE DATABASE {name}")
    await conn.close()
    parts = urlsplit(admin_url)
    return urlunsplit(parts._replace(path="/" + name))


# -- throughput --------------------------------------------------------------------------


def generator(url: str, ids: list[str], seconds: float, start_at: float, out: Any) -> None:
    """One load-generator process: its stations' heartbeat round trips in the window."""

    async def station(sid: str, rtts: list[float]) -> None:
        async with websockets.connect(f"{url}/{sid}", subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
                                      open_timeout=60, ping_interval=None) as ws:
            await call(ws, "BootNotification", {"reason": "PowerUp", "chargingStation": {
                "model": "bench", "vendorName": "bench"}})
            await asyncio.sleep(max(0.0, start_at - time.time()))  # all start together
            end = start_at + seconds
            while time.time() < end:
                t = time.perf_counter()
                await call(ws, "Heartbeat", {})
                rtts.append(time.perf_counter() - t)

    async def main() -> dict[str, Any]:
        rtts: list[float] = []
        results = await asyncio.gather(*(station(s, rtts) for s in ids), return_exceptions=True)
        errors = [repr(r) for r in results if isinstance(r, BaseException)]
        out.put({"rtts": rtts, "errors": errors[:3], "failed": len(errors)})

    asyncio.run(main())


async def call(ws: Any, action: str, payload: dict[str, Any]) -> Any:
    message_id = uuid.uuid4().hex
    await ws.send(json.dumps([2, message_id, action, payload]))
    while True:
        frame = json.loads(await asyncio.wait_for(ws.recv(), 60))
        if frame[0] in (3, 4) and frame[1] == message_id:
            return frame


async def throughput(admin_url: str, workers: int, stations: int, seconds: float,
                     generators: int) -> dict[str, Any]:
    url = await fresh_database(admin_url)
    ids = [f"B{i:05}" for i in range(stations)]
    conn = await asyncpg.connect(url)
    proc = None
    port = free_port()
    try:
        proc = await asyncio.create_subprocess_exec(
            *CSMS, "migrate", "--database-url", url, stdout=asyncio.subprocess.DEVNULL)
        await proc.wait()
        await conn.executemany("INSERT INTO stations (id, created_at) VALUES ($1, now())",
                               [(i,) for i in ids])
        config = Path(tempfile.mkdtemp()) / "bench.toml"
        config.write_text("[api]\nenabled = false\n[log]\nlevel = \"warning\"\n"
                          "[server]\nping_interval_s = 0\n")
        proc = await asyncio.create_subprocess_exec(
            *CSMS, "serve", "--workers", str(workers), "--config", str(config),
            "--database-url", url, "--host", "127.0.0.1", "--port", str(port),
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.DEVNULL)
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 120)).decode()
        assert "CSMS listening" in line, line
        start_at = time.time() + 10 + stations / 100  # every station connected by then
        queue: Any = multiprocessing.get_context("spawn").Queue()
        chunks = [ids[g::generators] for g in range(generators)]
        procs = [multiprocessing.get_context("spawn").Process(
            target=generator, args=(f"ws://127.0.0.1:{port}/ocpp", chunk, seconds, start_at,
                                    queue)) for chunk in chunks]
        for p in procs:
            p.start()
        await asyncio.sleep(max(0.0, start_at - time.time()))
        cpu_start = tree_cpu_seconds(proc.pid)
        await asyncio.sleep(seconds)
        cpu_used = tree_cpu_seconds(proc.pid) - cpu_start
        results = [await asyncio.to_thread(queue.get, True, 300) for _ in procs]
        for p in procs:
            p.join(30)
        rtts = [r for res in results for r in res["rtts"]]
        return {"workers": workers, "stations": stations, "seconds": seconds,
                "messages": len(rtts), "per_s": round(len(rtts) / seconds),
                "p50_ms": round(pct(rtts, 50) * 1000, 2), "p99_ms": round(pct(rtts, 99) * 1000, 2),
                "csms_cpu_s": round(cpu_used, 1),
                "csms_cpu_us_per_message": round(cpu_used / max(1, len(rtts)) * 1e6),
                "failed_stations": sum(r["failed"] for r in results),
                "errors": [e for r in results for e in r["errors"]][:3]}
    finally:
        await conn.close()
        if proc is not None and proc.returncode is None:
            proc.send_signal(signal.SIGTERM)
            await asyncio.wait_for(proc.wait(), 60)


def tree_cpu_seconds(root: int) -> float:
    """CPU (user + system) of `root` and its children: the CSMS workers (nats-server too)."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        pid, ppid = int(entry.name), int(fields[1])
        if pid == root or ppid == root:
            total += (int(fields[11]) + int(fields[12])) / tick
    return total


# -- cross-node command cost -------------------------------------------------------------


async def cross(admin_url: str, calls: int) -> dict[str, Any]:
    from csms.app import Csms
    from csms.config import ApiConfig, ClusterConfig, ServerConfig, load

    url = await fresh_database(admin_url)
    broker = await EmbeddedBroker.start()
    nodes: list[Any] = []
    try:
        import nats

        nc = await nats.connect(broker.url)

        async def echo(msg: Any) -> None:
            await msg.respond(msg.data)

        await nc.subscribe("bench.echo", cb=echo)
        bare = []
        for _ in range(calls):
            t = time.perf_counter()
            await nc.request("bench.echo", b'{"outcome":"ok","payload":{}}', timeout=5)
            bare.append(time.perf_counter() - t)
        await nc.close()
        # a data folder of its own: the CSMS makes its CA beside it (not in the repository)
        base = load(None, database_url=url,
                    data_dir=str(Path(tempfile.mkdtemp(prefix="bench-cross-")) / "pg"))
        for name in ("a", "b"):
            nodes.append(await Csms.start(replace(
                base, server=ServerConfig(host="127.0.0.1", port=0),
                api=ApiConfig(enabled=False),
                cluster=ClusterConfig(broker_url=broker.url, node=name))))
        a, b = nodes
        await b.store.stations.add("X1", None, b.clock.now())
        ws = await websockets.connect(f"ws://127.0.0.1:{b.ocpp.port}/ocpp/X1",
                                      subprotocols=["ocpp2.0.1"], ping_interval=None)  # type: ignore[list-item]

        async def answer() -> None:
            async for raw in ws:
                frame = json.loads(raw)
                if frame[0] == 2:
                    await ws.send(json.dumps([3, frame[1], {"status": "Accepted"}]))

        answering = asyncio.create_task(answer())
        deadline = time.monotonic() + 30
        while not a.connections.is_connected("X1"):
            assert time.monotonic() < deadline, "node a never learnt of X1"
            await asyncio.sleep(0.05)
        timings: dict[str, list[float]] = {"local": [], "routed": []}
        for _ in range(calls):
            for kind, node in (("local", b), ("routed", a)):
                t = time.perf_counter()
                await node.commands.trigger_message("X1", "Heartbeat")
                timings[kind].append(time.perf_counter() - t)
        answering.cancel()
        await ws.close()
        summary = {k: {"p50_ms": round(pct(v, 50) * 1000, 3),
                       "p99_ms": round(pct(v, 99) * 1000, 3)} for k, v in timings.items()}
        summary["nats_echo"] = {"p50_ms": round(pct(bare, 50) * 1000, 3),
                                "p99_ms": round(pct(bare, 99) * 1000, 3)}
        return {"calls": calls, **summary}
    finally:
        for node in nodes:
            await node.stop()
        await broker.stop()


async def main() -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=["throughput", "cross", "both"], default="both")
    parser.add_argument("--stations", type=int, default=200)
    parser.add_argument("--seconds", type=float, default=15.0)
    parser.add_argument("--generators", type=int, default=2)
    parser.add_argument("--calls", type=int, default=500)
    parser.add_argument("--json", help="write the results here too (--json=FILE)")
    args = parser.parse_args()
    if not (1 <= args.stations <= 5000 and 1 <= args.seconds <= 120
            and 1 <= args.calls <= 10_000 and 1 <= args.generators <= 8):
        parser.error("bounds: stations 1-5000, seconds 1-120, calls 1-10000, generators 1-8")
    admin_url, server = database()
    results: dict[str, Any] = {"cores": os.cpu_count(),
                               "load_before": os.getloadavg()[0]}
    try:
        if args.part in ("throughput", "both"):
            runs = [await throughput(admin_url, w, args.stations, args.seconds,
                                     args.generators) for w in (1, 2)]
            results["throughput"] = runs
            results["speedup"] = round(runs[1]["per_s"] / max(1, runs[0]["per_s"]), 2)
        if args.part in ("cross", "both"):
            results["cross"] = await cross(admin_url, args.calls)
    finally:
        results["load_after"] = os.getloadavg()[0]
        if server is not None:
            server.cleanup()
    return results


if __name__ == "__main__":
    found = asyncio.run(main())
    print(json.dumps(found, indent=2))
    if (target := next((a.split("=", 1)[1] for a in sys.argv if a.startswith("--json=")),
                       None)):
        Path(target).write_text(json.dumps(found, indent=2))
