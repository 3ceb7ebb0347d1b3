"""What grid events cost the CSMS: reading them into every plan, and computing an event's
metered delivery for a GET.

Every plan reads node limit overrides, events in force and the stored tariff
(`csms.scheduling.grid_inputs.plan_inputs`); a GET of an event reads the power meter
values of the EVSEs under its node over its window (`csms.grid.delivery_of`). Runs on an
embedded PostgreSQL in a temporary folder.

    .venv/bin/python -m bench.grid_inputs [--events 20] [--evses 100] [--hours 1]
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

from csms.grid import delivery_of
from csms.scheduling.grid_inputs import plan_inputs
from csms.store import Store, open_database
from csms.store.meter import MeterRow
from smart_charging import Evse, Node, Prices, Site


def _ms(times: list[float]) -> str:
    times = sorted(times)
    return (f"median {statistics.median(times) * 1000:.2f} ms, "
            f"p95 {times[int(0.95 * len(times))] * 1000:.2f} ms")


async def run(events: int, evses: int, hours: float) -> None:
    with tempfile.TemporaryDirectory() as folder:
        db = await open_database(None, Path(folder) / "pg")
        try:
            store = Store(db.pool)
            site = Site("bench", (Node("transformer", limit_kw=500.0),),
                        tuple(Evse(f"E{i}", "transformer", station_id=f"CS{i:05d}")
                              for i in range(evses)))
            now = datetime(2026, 11, 23, 12, tzinfo=UTC)
            start = now - timedelta(hours=hours)
            for i in range(events):
                await store.grid.add_event(site.id, "transformer", "limit", 100.0 + i,
                                           start + timedelta(minutes=i), now + timedelta(hours=1),
                                           None, "bench", start)
            rows = [MeterRow(e.station_id, 1, start + timedelta(seconds=s),
                             "Power.Active.Import", "", "Outlet", "Sample.Periodic", None,
                             7000.0, "W")
                    for e in site.evses for s in range(0, int(hours * 3600), 60)]
            await store.meter.write(rows)
            reads = []
            for _ in range(300):
                t = time.perf_counter()
                await plan_inputs(store, site, Prices(), now)
                reads.append(time.perf_counter() - t)
            event = (await store.grid.in_force(site.id, now))[0]
            deliveries = []
            for _ in range(20):
                t = time.perf_counter()
                await delivery_of(store, event, site, now)
                deliveries.append(time.perf_counter() - t)
            print(f"plan_inputs with {events} events in force: {_ms(reads)} (300 calls)")
            print(f"delivery of one event, {evses} EVSEs x {hours:g} h of 60 s samples "
                  f"({len(rows)} rows): {_ms(deliveries)} (20 calls)")
            await store.close()
        finally:
            await db.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20)
    parser.add_argument("--evses", type=int, default=100)
    parser.add_argument("--hours", type=float, default=1.0)
    args = parser.parse_args()
    asyncio.run(run(args.events, args.evses, args.hours))


if __name__ == "__main__":
    main()
