"""Charger-initiated notifications kept as sent (events, security events, firmware status...)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class Notification:
    station_id: str
    action: str
    received_at: datetime
    payload: dict[str, Any]


class NotificationRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(
        self, station_id: str, action: str, payload: dict[str, Any], now: datetime
    ) -> None:
        await self.pool.execute(
            "INSERT INTO notifications (station_id, action, received_at, payload)"
            " VALUES ($1, $2, $3, $4::jsonb)",
            station_id, action, now, json.dumps(payload),
        )

    async def list(
        self, station_id: str, action: str | None = None, limit: int = 100
    ) -> list[Notification]:
        rows = await self.pool.fetch(
            "SELECT station_id, action, received_at, payload FROM notifications"
            " WHERE station_id = $1 AND ($2::text IS NULL OR action = $2)"
            " ORDER BY id DESC LIMIT $3",
            station_id, action, limit,
        )
        return [
            Notification(r["station_id"], r["action"], r["received_at"], json.loads(r["payload"]))
            for r in rows
        ]
