"""Stations: provisioning, boot information and connection state."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class StationRecord:
    id: str
    created_at: datetime
    vendor: str | None
    model: str | None
    serial_number: str | None
    firmware_version: str | None
    boot_status: str | None
    last_boot_at: datetime | None
    online: bool
    connected_at: datetime | None
    disconnected_at: datetime | None
    last_seen: datetime | None
    report_complete_at: datetime | None
    has_password: bool


_COLUMNS = (
    "id, created_at, vendor, model, serial_number, firmware_version, boot_status, last_boot_at,"
    " online, connected_at, disconnected_at, last_seen, report_complete_at,"
    " password_hash IS NOT NULL AS has_password"
)


class StationRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, station_id: str, password_hash: str | None, now: datetime) -> bool:
        """Create a station, or set its password if it exists. True when newly created."""
        row = await self.pool.fetchrow(
            "INSERT INTO stations (id, password_hash, created_at) VALUES ($1, $2, $3)"
            " ON CONFLICT (id) DO UPDATE SET password_hash = EXCLUDED.password_hash"
            " RETURNING (xmax = 0) AS created",
            station_id, password_hash, now,
        )
        return bool(row and row["created"])

    async def remove(self, station_id: str) -> bool:
        result = await self.pool.execute("DELETE FROM stations WHERE id = $1", station_id)
        return result.endswith(" 1")

    async def get(self, station_id: str) -> StationRecord | None:
        row = await self.pool.fetchrow(f"SELECT {_COLUMNS} FROM stations WHERE id = $1", station_id)
        return StationRecord(**dict(row)) if row else None

    async def list(self) -> list[StationRecord]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM stations ORDER BY id")
        return [StationRecord(**dict(r)) for r in rows]

    async def password_hash(self, station_id: str) -> tuple[bool, str | None]:
        """(exists, hash) for the handshake."""
        row = await self.pool.fetchrow(
            "SELECT password_hash FROM stations WHERE id = $1", station_id
        )
        return (row is not None, row["password_hash"] if row else None)

    async def record_boot(
        self,
        station_id: str,
        *,
        vendor: str,
        model: str,
        serial_number: str | None,
        firmware_version: str | None,
        reason: str,
        status: str,
        now: datetime,
    ) -> None:
        await self.pool.execute(
            "UPDATE stations SET vendor = $2, model = $3, serial_number = $4,"
            " firmware_version = $5, boot_reason = $6, boot_status = $7, last_boot_at = $8,"
            " last_seen = $8 WHERE id = $1",
            station_id, vendor, model, serial_number, firmware_version, reason, status, now,
        )

    async def set_report_complete(self, station_id: str, now: datetime) -> None:
        await self.pool.execute(
            "UPDATE stations SET report_complete_at = $2 WHERE id = $1", station_id, now
        )

    async def set_connected(self, station_id: str, now: datetime) -> None:
        await self.pool.execute(
            "UPDATE stations SET online = true, connected_at = $2, last_seen = $2 WHERE id = $1",
            station_id, now,
        )

    async def set_disconnected(self, station_id: str, now: datetime) -> None:
        """A late write for a replaced connection must not mark its successor offline."""
        await self.pool.execute(
            "UPDATE stations SET online = false, disconnected_at = $2 WHERE id = $1"
            " AND (connected_at IS NULL OR connected_at <= $2)",
            station_id, now,
        )

    async def mark_all_offline(self, now: datetime) -> None:
        """At start-up no station is connected to this process yet."""
        await self.pool.execute(
            "UPDATE stations SET online = false, disconnected_at = $1 WHERE online", now
        )

    async def touch(self, last_seen: dict[str, datetime]) -> None:
        """Batch update of last-seen times (one statement for many stations)."""
        if not last_seen:
            return
        await self.pool.execute(
            "UPDATE stations s SET last_seen = GREATEST(s.last_seen, u.ts)"
            " FROM unnest($1::text[], $2::timestamptz[]) AS u(id, ts) WHERE s.id = u.id",
            list(last_seen), list(last_seen.values()),
        )
