"""What a station says about itself: connector status and its device model."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

from csms.store.batch import GroupCommit


@dataclass(frozen=True)
class ConnectorStatus:
    evse_id: int
    connector_id: int
    status: str
    updated_at: datetime


@dataclass(frozen=True)
class Variable:
    component: str
    component_instance: str
    evse_id: int
    connector_id: int
    variable: str
    variable_instance: str
    attribute_type: str
    value: str | None
    mutability: str | None
    data_type: str | None
    unit: str | None


class DeviceRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # StatusNotifications: group-committed, a reconnect storm sends one per connector
        self._statuses: GroupCommit[tuple[str, int, int, str, datetime]] = GroupCommit(
            self._write_statuses, "connector-statuses")

    async def close(self) -> None:
        await self._statuses.close()

    async def set_connector_status(
        self, station_id: str, evse_id: int, connector_id: int, status: str, ts: datetime
    ) -> None:
        """Keep the newest status; a late StatusNotification does not overwrite a newer one."""
        await self._statuses.write([(station_id, evse_id, connector_id, status, ts)])

    async def _write_statuses(self, rows: list[tuple[str, int, int, str, datetime]]) -> None:
        newest: dict[tuple[str, int, int], tuple[str, int, int, str, datetime]] = {}
        for row in rows:  # one row per connector: ON CONFLICT may touch a row only once
            seen = newest.get(row[:3])
            if seen is None or seen[4] <= row[4]:
                newest[row[:3]] = row
        cols = [list(c) for c in zip(*newest.values(), strict=True)]
        await self.pool.execute(
            "INSERT INTO connectors (station_id, evse_id, connector_id, status, updated_at)"
            " SELECT * FROM unnest($1::text[], $2::int[], $3::int[], $4::text[],"
            " $5::timestamptz[])"
            " ON CONFLICT (station_id, evse_id, connector_id)"
            " DO UPDATE SET status = EXCLUDED.status, updated_at = EXCLUDED.updated_at"
            " WHERE connectors.updated_at <= EXCLUDED.updated_at",
            *cols,
        )

    async def connectors(self, station_id: str) -> list[ConnectorStatus]:
        rows = await self.pool.fetch(
            "SELECT evse_id, connector_id, status, updated_at FROM connectors"
            " WHERE station_id = $1 ORDER BY evse_id, connector_id",
            station_id,
        )
        return [ConnectorStatus(**dict(r)) for r in rows]

    async def all_connectors(self) -> dict[str, list[ConnectorStatus]]:
        """Every station's connectors, by station id (one query for an overview page)."""
        rows = await self.pool.fetch(
            "SELECT station_id, evse_id, connector_id, status, updated_at FROM connectors"
            " ORDER BY station_id, evse_id, connector_id"
        )
        out: dict[str, list[ConnectorStatus]] = {}
        for r in rows:
            out.setdefault(r["station_id"], []).append(ConnectorStatus(
                r["evse_id"], r["connector_id"], r["status"], r["updated_at"]))
        return out

    async def upsert_variables(self, station_id: str, items: list[Variable], now: datetime) -> None:
        if not items:
            return
        cols = list(zip(*[
            (v.component, v.component_instance, v.evse_id, v.connector_id, v.variable,
             v.variable_instance, v.attribute_type, v.value, v.mutability, v.data_type, v.unit)
            for v in items
        ], strict=True))
        await self.pool.execute(
            "INSERT INTO variables (station_id, component, component_instance, evse_id,"
            " connector_id, variable, variable_instance, attribute_type, value, mutability,"
            " data_type, unit, reported_at)"
            " SELECT $1, * , $13 FROM unnest($2::text[], $3::text[], $4::int[], $5::int[],"
            " $6::text[], $7::text[], $8::text[], $9::text[], $10::text[], $11::text[],"
            " $12::text[])"
            " ON CONFLICT (station_id, component, component_instance, evse_id, connector_id,"
            " variable, variable_instance, attribute_type) DO UPDATE SET"
            " value = EXCLUDED.value, mutability = COALESCE(EXCLUDED.mutability,"
            " variables.mutability), data_type = COALESCE(EXCLUDED.data_type,"
            " variables.data_type), unit = COALESCE(EXCLUDED.unit, variables.unit),"
            " reported_at = EXCLUDED.reported_at",
            station_id, *[list(c) for c in cols], now,
        )

    async def variables(self, station_id: str, component: str | None = None) -> list[Variable]:
        rows = await self.pool.fetch(
            "SELECT component, component_instance, evse_id, connector_id, variable,"
            " variable_instance, attribute_type, value, mutability, data_type, unit"
            " FROM variables WHERE station_id = $1 AND ($2::text IS NULL OR component = $2)"
            " ORDER BY component, evse_id, connector_id, variable, attribute_type",
            station_id, component,
        )
        return [Variable(**dict(r)) for r in rows]
