"""Meter values, written in batches with group commit.

Meter values are the bulk of the data. Each handler hands its rows to `MeterWriter.write`
and awaits it; one writer task inserts everything queued meanwhile in a single statement,
so N stations cost one round trip per batch instead of N, and a handler only answers the
station after its rows are durable (a crash never loses an acknowledged value).
"""

from __future__ import annotations

import asyncio
from collections import deque
from dataclasses import dataclass
from datetime import datetime

import asyncpg
import structlog

log = structlog.get_logger()


@dataclass(frozen=True)
class MeterRow:
    station_id: str
    evse_id: int
    ts: datetime
    measurand: str
    phase: str
    location: str
    context: str | None
    transaction_id: str | None
    value: float
    unit: str | None


_INSERT = (
    "INSERT INTO meter_values (station_id, evse_id, ts, measurand, phase, location, context,"
    " transaction_id, value, unit)"
    " SELECT * FROM unnest($1::text[], $2::int[], $3::timestamptz[], $4::text[], $5::text[],"
    " $6::text[], $7::text[], $8::text[], $9::float8[], $10::text[])"
    " ON CONFLICT DO NOTHING"
)


class MeterWriter:
    def __init__(self, pool: asyncpg.Pool, max_batch: int = 20_000) -> None:
        self.pool = pool
        self.max_batch = max_batch
        self._queue: deque[tuple[list[MeterRow], asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.rows_written = 0

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="meter-writer")

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(RuntimeError("meter writer closed"))
        self._queue.clear()

    async def write(self, rows: list[MeterRow]) -> None:
        if not rows:
            return
        self.start()
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((rows, fut))
        self._wake.set()
        await fut

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: list[tuple[list[MeterRow], asyncio.Future[None]]] = []
                count = 0
                while self._queue and count < self.max_batch:
                    item = self._queue.popleft()
                    batch.append(item)
                    count += len(item[0])
                rows = [r for items, _ in batch for r in items]
                try:
                    await self._insert(rows)
                except Exception as exc:  # the handlers answer InternalError; nothing acked
                    log.error("meter.write_failed", rows=len(rows), error=str(exc))
                    for _, fut in batch:
                        if not fut.done():
                            fut.set_exception(exc)
                    continue
                self.batches += 1
                self.rows_written += len(rows)
                for _, fut in batch:
                    if not fut.done():
                        fut.set_result(None)

    async def _insert(self, rows: list[MeterRow]) -> None:
        cols = list(zip(*[
            (r.station_id, r.evse_id, r.ts, r.measurand, r.phase, r.location, r.context,
             r.transaction_id, r.value, r.unit)
            for r in rows
        ], strict=True))
        await self.pool.execute(_INSERT, *[list(c) for c in cols])
