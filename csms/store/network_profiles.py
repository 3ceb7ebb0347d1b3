"""B09/B10: network connection profiles an operator keeps, and which slot of which
station holds which one."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class NetworkProfile:
    name: str
    connection_data: dict[str, Any]  # OCPP NetworkConnectionProfileType
    updated_at: datetime


@dataclass(frozen=True)
class StationNetworkProfile:
    station_id: str
    slot: int
    profile: str
    status: str  # the station's SetNetworkProfile answer
    priority: str | None  # NetworkConfigurationPriority set after it, if accepted
    sent_at: datetime


class NetworkProfileRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, name: str, connection_data: dict[str, Any], now: datetime) -> bool:
        """Create or replace; True when created."""
        row = await self.pool.fetchrow(
            "INSERT INTO network_profiles (name, connection_data, updated_at)"
            " VALUES ($1, $2::jsonb, $3) ON CONFLICT (name) DO UPDATE SET"
            " connection_data = EXCLUDED.connection_data, updated_at = EXCLUDED.updated_at"
            " RETURNING (xmax = 0) AS created",
            name, json.dumps(connection_data), now,
        )
        return bool(row and row["created"])

    async def get(self, name: str) -> NetworkProfile | None:
        row = await self.pool.fetchrow(
            "SELECT name, connection_data, updated_at FROM network_profiles WHERE name = $1",
            name,
        )
        return _profile(row) if row else None

    async def list(self) -> list[NetworkProfile]:
        rows = await self.pool.fetch(
            "SELECT name, connection_data, updated_at FROM network_profiles ORDER BY name")
        return [_profile(r) for r in rows]

    async def remove(self, name: str) -> bool:
        result = await self.pool.execute("DELETE FROM network_profiles WHERE name = $1", name)
        return result.endswith(" 1")

    async def record_sent(self, station_id: str, slot: int, profile: str, status: str,
                          priority: str | None, now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO station_network_profiles (station_id, slot, profile, status,"
            " priority, sent_at) VALUES ($1, $2, $3, $4, $5, $6)"
            " ON CONFLICT (station_id, slot) DO UPDATE SET profile = EXCLUDED.profile,"
            " status = EXCLUDED.status, priority = EXCLUDED.priority,"
            " sent_at = EXCLUDED.sent_at",
            station_id, slot, profile, status, priority, now,
        )

    async def of_station(self, station_id: str) -> list[StationNetworkProfile]:
        rows = await self.pool.fetch(
            "SELECT station_id, slot, profile, status, priority, sent_at"
            " FROM station_network_profiles WHERE station_id = $1 ORDER BY slot",
            station_id,
        )
        return [StationNetworkProfile(**dict(r)) for r in rows]


def _profile(row: asyncpg.Record) -> NetworkProfile:
    return NetworkProfile(row["name"], json.loads(row["connection_data"]), row["updated_at"])
