"""Meter values, written in batches with group commit.

Meter values are the bulk of the data. Each handler hands its rows to `MeterWriter.write`
and awaits it; everything queued meanwhile is inserted in a single statement
(`batch.GroupCommit`), so N stations cost one round trip per batch instead of N, and a
handler only answers the station after its rows are durable (a crash never loses an
acknowledged value).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from csms.store.batch import GroupCommit


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
        self._batches = GroupCommit(self._insert, "meter-writer", max_batch)

    async def write(self, rows: list[MeterRow]) -> None:
        await self._batches.write(rows)

    async def close(self) -> None:
        await self._batches.close()

    async def _insert(self, rows: list[MeterRow]) -> None:
        await insert_rows(self.pool, rows)


async def insert_rows(db: asyncpg.Pool | asyncpg.Connection | Any, rows: list[MeterRow]) -> None:
    """Insert `rows` in one statement, on a pool or inside a caller's transaction."""
    if not rows:
        return
    cols = list(zip(*[
        (r.station_id, r.evse_id, r.ts, r.measurand, r.phase, r.location, r.context,
         r.transaction_id, r.value, r.unit)
        for r in rows
    ], strict=True))
    await db.execute(_INSERT, *[list(c) for c in cols])
