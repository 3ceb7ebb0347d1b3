"""Grid events, node limit overrides and site tariffs (see migrations/0004_grid.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class GridEvent:
    """A limit or target on a node over [start, end), as stored. `status` is derived."""

    id: int
    site_id: str
    node: str
    kind: str
    kw: float
    start: datetime
    end: datetime
    reference: str | None
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None = None

    def status(self, now: datetime) -> str:
        if self.cancelled_at is not None:
            return "cancelled"
        if now < self.start:
            return "scheduled"
        return "active" if now < self.end else "completed"

    @property
    def effective_end(self) -> datetime:
        """When it stops applying: its end, or when it was cancelled if that was earlier."""
        if self.cancelled_at is not None and self.cancelled_at < self.end:
            return max(self.cancelled_at, self.start)
        return self.end


_EVENT = ("id, site_id, node, kind, kw, starts_at AS start, ends_at AS \"end\", reference,"
          " created_by, created_at, cancelled_at")

# status as SQL, for the list filter: $2 is now
_STATUS = ("CASE WHEN cancelled_at IS NOT NULL THEN 'cancelled'"
           " WHEN $2 < starts_at THEN 'scheduled' WHEN $2 < ends_at THEN 'active'"
           " ELSE 'completed' END")


class GridRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ----------------------------------------------------------------- events

    async def add_event(self, site_id: str, node: str, kind: str, kw: float, start: datetime,
                        end: datetime, reference: str | None, created_by: str,
                        now: datetime, conn: asyncpg.Connection | None = None) -> GridEvent:
        """`conn`: in the caller's transaction (stored with its audit entry)."""
        row = await (conn or self.pool).fetchrow(
            "INSERT INTO grid_events (site_id, node, kind, kw, starts_at, ends_at, reference,"
            f" created_by, created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)"
            f" RETURNING {_EVENT}",
            site_id, node, kind, kw, start, end, reference, created_by, now)
        return GridEvent(**dict(row))

    async def event(self, site_id: str, event_id: int) -> GridEvent | None:
        row = await self.pool.fetchrow(
            f"SELECT {_EVENT} FROM grid_events WHERE site_id = $1 AND id = $2",
            site_id, event_id)
        return GridEvent(**dict(row)) if row else None

    async def events(self, site_id: str, now: datetime, status: str | None = None,
                     since: datetime | None = None, limit: int = 1000) -> list[GridEvent]:
        """Newest start first; `since`: only events still running at or after it."""
        rows = await self.pool.fetch(
            f"SELECT {_EVENT} FROM grid_events WHERE site_id = $1"
            f" AND ($3::text IS NULL OR {_STATUS} = $3)"
            " AND ($4::timestamptz IS NULL OR ends_at > $4)"
            " ORDER BY starts_at DESC, id DESC LIMIT $5",
            site_id, now, status, since, limit)
        return [GridEvent(**dict(r)) for r in rows]

    async def in_force(self, site_id: str, now: datetime) -> list[GridEvent]:
        """Events not cancelled that have not ended: what a plan from `now` must honour."""
        rows = await self.pool.fetch(
            f"SELECT {_EVENT} FROM grid_events WHERE site_id = $1 AND ends_at > $2"
            " AND cancelled_at IS NULL ORDER BY created_at, id", site_id, now)
        return [GridEvent(**dict(r)) for r in rows]

    async def cancel(self, site_id: str, event_id: int, now: datetime,
                     conn: asyncpg.Connection | None = None) -> GridEvent | None:
        """Cancel an event not cancelled and not completed (None if it was)."""
        row = await (conn or self.pool).fetchrow(
            f"UPDATE grid_events SET cancelled_at = $3 WHERE site_id = $1 AND id = $2"
            f" AND cancelled_at IS NULL AND ends_at > $3 RETURNING {_EVENT}",
            site_id, event_id, now)
        return GridEvent(**dict(row)) if row else None

    async def count_active(self, now: datetime) -> int:
        n = await self.pool.fetchval(
            "SELECT count(*) FROM grid_events WHERE cancelled_at IS NULL"
            " AND starts_at <= $1 AND ends_at > $1", now)
        return int(n)

    # ----------------------------------------------------------------- node limits

    async def set_node_limit(self, site_id: str, node: str, limit_kw: float | None,
                             set_by: str, now: datetime) -> None:
        if limit_kw is None:
            await self.pool.execute(
                "DELETE FROM node_limits WHERE site_id = $1 AND node = $2", site_id, node)
            return
        await self.pool.execute(
            "INSERT INTO node_limits (site_id, node, limit_kw, set_by, set_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (site_id, node) DO UPDATE"
            " SET limit_kw = $3, set_by = $4, set_at = $5",
            site_id, node, limit_kw, set_by, now)

    async def node_limits(self, site_id: str) -> dict[str, float]:
        rows = await self.pool.fetch(
            "SELECT node, limit_kw FROM node_limits WHERE site_id = $1", site_id)
        return {r["node"]: float(r["limit_kw"]) for r in rows}

    # ----------------------------------------------------------------- tariffs

    async def set_tariff(self, site_id: str, tariff: dict[str, Any], set_by: str,
                         now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO site_tariffs (site_id, tariff, set_by, set_at)"
            " VALUES ($1, $2::jsonb, $3, $4) ON CONFLICT (site_id) DO UPDATE"
            " SET tariff = $2::jsonb, set_by = $3, set_at = $4",
            site_id, json.dumps(tariff), set_by, now)

    async def clear_tariff(self, site_id: str) -> bool:
        result = await self.pool.execute("DELETE FROM site_tariffs WHERE site_id = $1", site_id)
        return bool(result.endswith(" 1"))

    async def tariff(self, site_id: str) -> dict[str, Any] | None:
        raw = await self.pool.fetchval(
            "SELECT tariff FROM site_tariffs WHERE site_id = $1", site_id)
        return None if raw is None else dict(json.loads(raw))

    # ----------------------------------------------------------------- metered power

    async def power_samples(self, station_ids: list[str], since: datetime,
                            until: datetime) -> list[asyncpg.Record]:
        """Power.Active.Import (all phases) samples of these stations in [since, until),
        each with the end of its transaction (null while running or without one)."""
        return list(await self.pool.fetch(
            "SELECT m.station_id, m.evse_id, m.ts, m.value, t.ended_at"
            " FROM meter_values m LEFT JOIN transactions t"
            " ON t.station_id = m.station_id AND t.transaction_id = m.transaction_id"
            " WHERE m.station_id = ANY($1) AND m.measurand = 'Power.Active.Import'"
            " AND m.phase = '' AND m.ts >= $2 AND m.ts < $3 ORDER BY m.ts",
            station_ids, since, until))
