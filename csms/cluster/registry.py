"""Which worker holds each station's socket, in PostgreSQL (docs/decisions/0024-cluster-broker.md
says why there and not in NATS KV): read by `csms status`, /api/cluster and /metrics, and
by a worker that starts, to learn what the others hold. Routing does not read it: the
broker routes a CALL by the station's subject."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg


@dataclass(frozen=True)
class WorkerRecord:
    worker_id: str
    node: str
    worker: int
    pid: int
    started_at: datetime
    seen_at: datetime
    stations: int


@dataclass(frozen=True)
class Holding:
    station_id: str
    worker_id: str
    node: str
    worker: int
    connected_at: datetime
    boot_status: str | None  # as stored: what another worker's scheduler needs to know
    ocpp_version: str | None = None  # as stored: what its requests are validated against


@dataclass(frozen=True)
class Swept:
    workers: list[str]
    stations: list[str]


class Registry:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def join(self, worker_id: str, node: str, worker: int, pid: int,
                   now: datetime) -> list[str]:
        """A (re)started worker: what an earlier process of that name held is gone, and
        its stations are offline (returned) until they reconnect."""
        async with self.pool.acquire() as conn, conn.transaction():
            stations = await _drop_sockets(conn, [worker_id], now)
            await conn.execute(
                "INSERT INTO cluster_workers (worker_id, node, worker, pid, started_at, seen_at)"
                " VALUES ($1, $2, $3, $4, $5, $5) ON CONFLICT (worker_id) DO UPDATE SET"
                " node = $2, worker = $3, pid = $4, started_at = $5, seen_at = $5",
                worker_id, node, worker, pid, now)
        return stations

    async def heartbeat(self, worker_id: str, now: datetime) -> bool:
        """False when this worker was swept as dead (it must rejoin)."""
        result = await self.pool.execute(
            "UPDATE cluster_workers SET seen_at = $2 WHERE worker_id = $1", worker_id, now)
        return result.endswith(" 1")

    async def leave(self, worker_id: str) -> None:
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM station_sockets WHERE worker_id = $1", worker_id)
            await conn.execute("DELETE FROM cluster_workers WHERE worker_id = $1", worker_id)

    async def hold_many(self, held: list[tuple[str, datetime]], worker_id: str) -> None:
        """`hold` for many stations in one statement (a newer socket's row stays)."""
        if held:
            await self.pool.execute(
                "INSERT INTO station_sockets (station_id, worker_id, connected_at)"
                " SELECT s, $2, a FROM unnest($1::text[], $3::timestamptz[]) AS t(s, a)"
                " ON CONFLICT (station_id) DO UPDATE"
                " SET worker_id = EXCLUDED.worker_id, connected_at = EXCLUDED.connected_at"
                " WHERE station_sockets.connected_at <= EXCLUDED.connected_at",
                [s for s, _ in held], worker_id, [a for _, a in held])

    async def release_many(self, station_ids: list[str], worker_id: str) -> None:
        if station_ids:
            await self.pool.execute(
                "DELETE FROM station_sockets WHERE station_id = ANY($1::text[])"
                " AND worker_id = $2", station_ids, worker_id)

    async def mark_online(self, station_ids: list[str], now: datetime) -> None:
        """Stations a live worker holds after it was swept as dead (a long pause)."""
        await self.pool.execute(
            "UPDATE stations SET online = true, connected_at = $2"
            " WHERE id = ANY($1::text[]) AND NOT online", station_ids, now)

    async def sweep(self, now: datetime, ttl_s: float) -> Swept:
        """Workers not seen for `ttl_s` are dead: drop them, and mark their stations
        offline (a station that reconnected elsewhere has a newer row and stays)."""
        cutoff = now - timedelta(seconds=ttl_s)
        async with self.pool.acquire() as conn, conn.transaction():
            workers = [r["worker_id"] for r in await conn.fetch(
                "DELETE FROM cluster_workers WHERE seen_at < $1 RETURNING worker_id", cutoff)]
            if not workers:
                return Swept([], [])
            stations = await _drop_sockets(conn, workers, now)
        return Swept(workers, stations)

    async def workers(self) -> list[WorkerRecord]:
        rows = await self.pool.fetch(
            "SELECT w.*, (SELECT count(*) FROM station_sockets s"
            " WHERE s.worker_id = w.worker_id) AS stations"
            " FROM cluster_workers w ORDER BY node, worker")
        return [WorkerRecord(**dict(r)) for r in rows]

    async def holdings(self, limit: int = 100_000) -> list[Holding]:
        rows = await self.pool.fetch(
            "SELECT s.station_id, s.worker_id, w.node, w.worker, s.connected_at,"
            " st.boot_status, st.ocpp_version"
            " FROM station_sockets s JOIN cluster_workers w USING (worker_id)"
            " LEFT JOIN stations st ON st.id = s.station_id"
            " ORDER BY s.station_id LIMIT $1", limit)
        return [Holding(**dict(r)) for r in rows]


async def _drop_sockets(conn: asyncpg.Connection, workers: list[str], now: datetime) -> list[str]:
    """Forget the sockets `workers` held; their stations are offline (unless a newer
    connect was stored since: the same guard as csms/store/stations.py)."""
    stations = [r["station_id"] for r in await conn.fetch(
        "DELETE FROM station_sockets WHERE worker_id = ANY($1::text[]) RETURNING station_id",
        workers)]
    if stations:
        await conn.execute(
            "UPDATE stations SET online = false, disconnected_at = $2"
            " WHERE id = ANY($1::text[]) AND online"
            " AND (connected_at IS NULL OR connected_at <= $2)", stations, now)
    return stations
