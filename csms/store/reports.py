"""Device model reports asked for (B07 GetBaseReport, B08 GetReport) and their progress:
the station answers the request, then sends the report in NotifyReport parts (seqNo, tbc);
the request is Complete once the part with tbc=false has arrived."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class ReportRequest:
    station_id: str
    request_id: int
    kind: str  # base | custom
    request: dict[str, Any]
    status: str  # the station's answer (Accepted, Rejected, NotSupported, EmptyResultSet,
    # or the CALLERROR code), then Complete
    requested_at: datetime
    parts: int
    items: int
    last_seq_no: int | None
    completed_at: datetime | None


_COLUMNS = ("station_id, request_id, kind, request, status, requested_at, parts, items,"
            " last_seq_no, completed_at")


def _record(row: asyncpg.Record) -> ReportRequest:
    data = dict(row)
    data["request"] = json.loads(data["request"])
    return ReportRequest(**data)


_INT64 = range(-(2**63), 2**63)
_INT32 = range(-(2**31), 2**31)


def trackable(request_id: int, seq_no: int = 0) -> bool:
    """Whether the ids fit the columns: the schema bounds neither, a station may send any."""
    return request_id in _INT64 and seq_no in _INT32


class ReportRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, station_id: str, request_id: int, kind: str, request: dict[str, Any],
                  status: str, now: datetime) -> None:
        """Record a request and the station's answer to it (ids beyond 64 bits are not)."""
        if not trackable(request_id):
            return
        await self.pool.execute(
            f"INSERT INTO report_requests ({_COLUMNS})"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6, 0, 0, NULL, NULL)"
            # parts may arrive before the answer is recorded: keep what they counted
            " ON CONFLICT (station_id, request_id) DO UPDATE SET kind = EXCLUDED.kind,"
            " request = EXCLUDED.request, requested_at = EXCLUDED.requested_at,"
            " status = CASE WHEN report_requests.completed_at IS NULL THEN EXCLUDED.status"
            " ELSE 'Complete' END",
            station_id, request_id, kind, json.dumps(request), status, now,
        )

    async def add_part(self, station_id: str, request_id: int, seq_no: int, items: int,
                       tbc: bool, now: datetime) -> ReportRequest | None:
        """Count one NotifyReport part; the last (tbc=false) completes the request. A part
        for a request the CSMS did not record (asked before a restart, or by the station
        itself) is recorded as a base report. Ids beyond the columns are not tracked."""
        if not trackable(request_id, seq_no) or not 0 <= items < 2**31:
            return None
        row = await self.pool.fetchrow(
            f"INSERT INTO report_requests ({_COLUMNS})"
            " VALUES ($1, $2, 'base', '{}'::jsonb, 'Accepted', $6, 1, $4, $3,"
            " CASE WHEN $5 THEN NULL ELSE $6::timestamptz END)"
            " ON CONFLICT (station_id, request_id) DO UPDATE SET"
            " parts = report_requests.parts + 1, items = report_requests.items + $4,"
            " last_seq_no = GREATEST(report_requests.last_seq_no, $3),"
            " completed_at = CASE WHEN $5 THEN report_requests.completed_at"
            " ELSE $6::timestamptz END,"
            " status = CASE WHEN $5 THEN report_requests.status ELSE 'Complete' END"
            f" RETURNING {_COLUMNS}",
            station_id, request_id, seq_no, items, tbc, now,
        )
        return _record(row) if row else None

    async def get(self, station_id: str, request_id: int) -> ReportRequest | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM report_requests WHERE station_id = $1 AND request_id = $2",
            station_id, request_id,
        )
        return _record(row) if row else None

    async def list(self, station_id: str, limit: int = 100) -> list[ReportRequest]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM report_requests WHERE station_id = $1"
            " ORDER BY requested_at DESC, request_id DESC LIMIT $2",
            station_id, limit,
        )
        return [_record(r) for r in rows]

    async def newest_base(self, station_id: str) -> ReportRequest | None:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM report_requests WHERE station_id = $1 AND kind = 'base'"
            " ORDER BY requested_at DESC, request_id DESC LIMIT 1",
            station_id,
        )
        return _record(rows[0]) if rows else None
