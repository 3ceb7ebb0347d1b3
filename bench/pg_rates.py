"""PostgreSQL write rates on this machine (issue 13's 100,000-station plan rests on them):
meter-value rows through the CSMS's own group-committed writer (csms/store/meter.py), and
the cost of the broker's event fan-out per event per worker.

    .venv/bin/python bench/pg_rates.py                      # ~1 min
    .venv/bin/python bench/pg_rates.py --writers 2000 --seconds 20 --processes 2

meter: --writers concurrent tasks in each of --processes processes, each writing one
TransactionEvent's worth of rows (--rows-per-message sampled values: energy, power,
current per phase...) through `MeterWriter.write` and awaiting it (as a handler does before
it answers), back to back for --seconds. Rows/s and messages/s over the window, with the
p50/p99 wait of a write. PostgreSQL is embedded in a temporary folder (or DATABASE_URL),
with its default settings (fsync on, synchronous commit).

fanout: encode and decode of the event a meter value raises (PowerSampled), the wire
format every worker of a cluster receives for every event (csms/cluster/wire.py).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.workers import database, fresh_database, pct


def writer_process(url: str, writers: int, seconds: float, rows_per_message: int,
                   prefix: str, start_at: float, out: Any) -> None:
    from csms.store.meter import MeterRow, MeterWriter

    async def main() -> dict[str, Any]:
        pool = await asyncpg.create_pool(url, min_size=2, max_size=4)
        writer = MeterWriter(pool)
        waits: list[float] = []
        messages = 0
        measurands = ["Energy.Active.Import.Register", "Power.Active.Import", "SoC",
                      "Current.Import", "Voltage", "Power.Offered", "Temperature"]

        async def one(i: int) -> None:
            nonlocal messages
            station = f"{prefix}{i:05d}"
            n = 0
            while time.time() < start_at + seconds:
                ts = datetime.fromtimestamp(1_800_000_000 + n, UTC)
                rows = [MeterRow(station, 1, ts, measurands[k % len(measurands)],
                                 f"L{k // len(measurands) + 1}" if k >= len(measurands) else "",
                                 "", "Sample.Periodic", f"T{station}", 1000.0 * n + k, "Wh")
                        for k in range(rows_per_message)]
                t = time.perf_counter()
                await writer.write(rows)
                if time.time() >= start_at:
                    waits.append(time.perf_counter() - t)
                    messages += 1
                n += 1

        await asyncio.sleep(max(0.0, start_at - 5 - time.time()))
        await asyncio.gather(*(one(i) for i in range(writers)))
        await writer.close()
        await pool.close()
        return {"messages": messages, "waits": waits}

    out.put(asyncio.run(main()))


async def meter(url: str, args: argparse.Namespace) -> dict[str, Any]:
    conn = await asyncpg.connect(url)
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "csms.cli", "migrate", "--database-url", url,
        stdout=asyncio.subprocess.DEVNULL)
    await proc.wait()
    before = await conn.fetchval("SELECT count(*) FROM meter_values")
    start_at = time.time() + 8
    ctx = multiprocessing.get_context("spawn")
    queue: Any = ctx.Queue()
    procs = [ctx.Process(target=writer_process, args=(
        url, args.writers, args.seconds, args.rows_per_message, f"P{p}-", start_at, queue))
        for p in range(args.processes)]
    for p in procs:
        p.start()
    results = [queue.get(timeout=args.seconds + 120) for _ in procs]
    for p in procs:
        p.join()
    total = await conn.fetchval("SELECT count(*) FROM meter_values") - before
    await conn.close()
    messages = sum(r["messages"] for r in results)
    waits = sorted(w for r in results for w in r["waits"])
    return {"processes": args.processes, "writers_per_process": args.writers,
            "rows_per_message": args.rows_per_message, "seconds": args.seconds,
            "messages_per_s": round(messages / args.seconds),
            "rows_per_s": round(messages * args.rows_per_message / args.seconds),
            "rows_stored": total,
            "write_wait_p50_ms": round(pct(waits, 50) * 1000, 2),
            "write_wait_p99_ms": round(pct(waits, 99) * 1000, 2)}


def fanout(n: int = 20_000) -> dict[str, Any]:
    from csms.cluster import wire
    from csms.events import PowerSampled

    event = PowerSampled("F0001", 1, datetime.now(UTC), 7000.0)
    [data] = wire.encode_events([event], "a/0")
    batch = [event] * 20  # 10 ms of events from a worker taking 2,000 messages/s
    t = time.perf_counter()
    for _ in range(n // 20):
        wire.encode_events(batch, "a/0")
    encode = (time.perf_counter() - t) / n
    [batched] = wire.encode_events(batch, "a/0")
    t = time.perf_counter()
    for _ in range(n // 20):
        wire.decode_events(batched)
    decode = (time.perf_counter() - t) / n
    return {"event_bytes": len(data), "encode_us": round(encode * 1e6, 2),
            "decode_us": round(decode * 1e6, 2)}


async def main(args: argparse.Namespace) -> dict[str, Any]:
    admin_url, _server = database()
    url = await fresh_database(admin_url)
    return {"meter": await meter(url, args), "fanout": fanout()}


if __name__ == "__main__":
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--writers", type=int, default=1000, help="concurrent writers per process")
    p.add_argument("--processes", type=int, default=1)
    p.add_argument("--seconds", type=float, default=20.0)
    p.add_argument("--rows-per-message", type=int, default=6)
    print(json.dumps(asyncio.run(main(p.parse_args())), indent=2))
