"""Reports a station sends in parts for one requestId (ReportChargingProfiles for
GetChargingProfiles, NotifyDisplayMessages for GetDisplayMessages), assembled per request.

The CSMS numbers its requests with Commands.next_request_id; a part for a request the CSMS
did not make (or made through the plain command route) is kept as a report of its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

MAX_ITEMS = 2_000  # entries kept per report; a station sending more is cut off (truncated)
KINDS = ("ChargingProfiles", "DisplayMessages")


@dataclass(frozen=True)
class StationReport:
    station_id: str
    kind: str
    request_id: int
    request: dict[str, Any]
    status: str | None
    items: list[Any]
    parts: int
    truncated: bool
    complete: bool
    requested_at: datetime | None
    updated_at: datetime


_COLUMNS = ("station_id, kind, request_id, request, status, items, parts, truncated, complete,"
            " requested_at, updated_at")


def _report(row: asyncpg.Record) -> StationReport:
    values = dict(row)
    values["request"] = json.loads(values["request"])
    values["items"] = json.loads(values["items"])
    return StationReport(**values)


class StationReportRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def requested(self, station_id: str, kind: str, request_id: int,
                        request: dict[str, Any], now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO station_reports (station_id, kind, request_id, request, requested_at,"
            " updated_at) VALUES ($1, $2, $3, $4::jsonb, $5, $5)"
            " ON CONFLICT (station_id, kind, request_id) DO UPDATE"
            " SET request = EXCLUDED.request, requested_at = EXCLUDED.requested_at",
            station_id, kind, request_id, json.dumps(request), now,
        )

    async def answered(self, station_id: str, kind: str, request_id: int, status: str,
                       now: datetime) -> None:
        """The station's answer to the request: a report follows only when Accepted, so any
        other answer closes it (empty)."""
        await self.pool.execute(
            "UPDATE station_reports SET status = $4, updated_at = $5,"
            " complete = complete OR $4 <> 'Accepted'"
            " WHERE station_id = $1 AND kind = $2 AND request_id = $3",
            station_id, kind, request_id, status, now,
        )

    async def add_part(self, station_id: str, kind: str, request_id: int, items: list[Any],
                       tbc: bool, now: datetime) -> StationReport:
        """Append one part; the last part (tbc false) completes the report. A part for a
        request the CSMS did not make is kept too, as a report of its own."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO station_reports (station_id, kind, request_id, updated_at)"
                " VALUES ($1, $2, $3, $4) ON CONFLICT (station_id, kind, request_id)"
                " DO UPDATE SET updated_at = EXCLUDED.updated_at"
                " RETURNING jsonb_array_length(items) AS n, complete",
                station_id, kind, request_id, now,
            )
            room = max(0, MAX_ITEMS - row["n"])
            kept = items[:room]
            updated = await conn.fetchrow(
                "UPDATE station_reports SET items = items || $4::jsonb, parts = parts + 1,"
                " truncated = truncated OR $5, complete = complete OR NOT $6, updated_at = $7"
                " WHERE station_id = $1 AND kind = $2 AND request_id = $3"
                f" RETURNING {_COLUMNS}",
                station_id, kind, request_id, json.dumps(kept), len(kept) < len(items), tbc,
                now,
            )
        return _report(updated)

    async def get(self, station_id: str, kind: str, request_id: int) -> StationReport | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM station_reports"
            " WHERE station_id = $1 AND kind = $2 AND request_id = $3",
            station_id, kind, request_id,
        )
        return _report(row) if row else None

    async def list(self, station_id: str, kind: str, limit: int = 50) -> list[StationReport]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM station_reports WHERE station_id = $1 AND kind = $2"
            " ORDER BY updated_at DESC, request_id DESC LIMIT $3",
            station_id, kind, limit,
        )
        return [_report(r) for r in rows]
