"""Block K as stored beyond the transactions: composite schedules the CSMS asked for (K08),
external limits a station reports (K11-K14) and the schedules ISO 15118 EVs chose (K15-K17)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class CompositeSchedule:
    id: int
    station_id: str
    evse_id: int
    duration_s: int
    rate_unit: str | None
    status: str
    schedule: dict[str, Any] | None
    requested_by: str
    requested_at: datetime


@dataclass(frozen=True)
class ExternalLimit:
    """A limit set on a station (evse_id 0) or an EVSE by an external system."""

    station_id: str
    evse_id: int
    source: str  # chargingLimitSource: EMS, Other, SO, CSO
    grid_critical: bool | None
    schedules: list[dict[str, Any]]  # chargingSchedule[] as sent
    notified_at: datetime


@dataclass(frozen=True)
class EvChargingSchedule:
    id: int
    station_id: str
    evse_id: int
    transaction_id: str | None
    time_base: datetime
    schedule: dict[str, Any]
    received_at: datetime


def _decoded(row: asyncpg.Record, *fields: str) -> dict[str, Any]:
    values = dict(row)
    for name in fields:
        if values[name] is not None:
            values[name] = json.loads(values[name])
    return values


_COMPOSITE = ("id, station_id, evse_id, duration_s, rate_unit, status, schedule, requested_by,"
              " requested_at")
_LIMIT = "station_id, evse_id, source, grid_critical, schedules, notified_at"
_EV = "id, station_id, evse_id, transaction_id, time_base, schedule, received_at"


class ChargingRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ----------------------------------------------------------------- K08

    async def add_composite(self, station_id: str, evse_id: int, duration_s: int,
                            rate_unit: str | None, status: str,
                            schedule: dict[str, Any] | None, requested_by: str,
                            now: datetime) -> CompositeSchedule:
        row = await self.pool.fetchrow(
            "INSERT INTO composite_schedules (station_id, evse_id, duration_s, rate_unit,"
            " status, schedule, requested_by, requested_at)"
            f" VALUES ($1, $2, $3, $4, $5, $6::jsonb, $7, $8) RETURNING {_COMPOSITE}",
            station_id, evse_id, duration_s, rate_unit, status,
            None if schedule is None else json.dumps(schedule), requested_by, now,
        )
        return CompositeSchedule(**_decoded(row, "schedule"))

    async def composites(self, station_id: str, evse_id: int | None = None,
                         limit: int = 50) -> list[CompositeSchedule]:
        rows = await self.pool.fetch(
            f"SELECT {_COMPOSITE} FROM composite_schedules WHERE station_id = $1"
            " AND ($2::int IS NULL OR evse_id = $2) ORDER BY id DESC LIMIT $3",
            station_id, evse_id, limit,
        )
        return [CompositeSchedule(**_decoded(r, "schedule")) for r in rows]

    # ----------------------------------------------------------------- K11-K14

    async def set_external_limit(self, limit: ExternalLimit) -> None:
        await self.pool.execute(
            f"INSERT INTO external_charging_limits ({_LIMIT})"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6)"
            " ON CONFLICT (station_id, evse_id, source) DO UPDATE SET"
            " grid_critical = EXCLUDED.grid_critical, schedules = EXCLUDED.schedules,"
            " notified_at = EXCLUDED.notified_at",
            limit.station_id, limit.evse_id, limit.source, limit.grid_critical,
            json.dumps(limit.schedules), limit.notified_at,
        )

    async def clear_external_limit(self, station_id: str, evse_id: int, source: str) -> bool:
        result = await self.pool.execute(
            "DELETE FROM external_charging_limits"
            " WHERE station_id = $1 AND evse_id = $2 AND source = $3",
            station_id, evse_id, source,
        )
        return bool(result.endswith(" 1"))

    async def external_limits(self, station_ids: list[str]) -> list[ExternalLimit]:
        rows = await self.pool.fetch(
            f"SELECT {_LIMIT} FROM external_charging_limits"
            " WHERE station_id = ANY($1::text[]) ORDER BY station_id, evse_id, source",
            station_ids,
        )
        return [ExternalLimit(**_decoded(r, "schedules")) for r in rows]

    # ----------------------------------------------------------------- K15-K17

    async def add_ev_schedule(self, station_id: str, evse_id: int, transaction_id: str | None,
                              time_base: datetime, schedule: dict[str, Any],
                              now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO ev_charging_schedules (station_id, evse_id, transaction_id, time_base,"
            " schedule, received_at) VALUES ($1, $2, $3, $4, $5::jsonb, $6)",
            station_id, evse_id, transaction_id, time_base, json.dumps(schedule), now,
        )

    async def ev_schedules(self, station_id: str, limit: int = 50) -> list[EvChargingSchedule]:
        rows = await self.pool.fetch(
            f"SELECT {_EV} FROM ev_charging_schedules WHERE station_id = $1"
            " ORDER BY id DESC LIMIT $2", station_id, limit,
        )
        return [EvChargingSchedule(**_decoded(r, "schedule")) for r in rows]
