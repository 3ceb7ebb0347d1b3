"""Connecting to PostgreSQL: an existing server by URL, or an embedded one in a data folder.

The embedded server comes from `pgserver`, which ships PostgreSQL binaries in its wheel, so
`csms serve` runs on a fresh machine with nothing else installed. Several processes on one
data folder share one server (the CLI works while `csms serve` runs).
"""

from __future__ import annotations

import asyncio
import warnings
from dataclasses import dataclass
from importlib import resources
from pathlib import Path
from typing import Any

import asyncpg
import structlog

log = structlog.get_logger()

MIGRATION_LOCK = 7_201_2026  # advisory lock id: one migrator at a time


@dataclass
class Database:
    pool: asyncpg.Pool
    url: str
    _embedded: Any = None  # keeps the pgserver handle alive while we use it

    async def close(self) -> None:
        await self.pool.close()


def embedded_url(data_dir: Path) -> tuple[str, Any]:
    with warnings.catch_warnings():  # platformdirs warns when XDG_RUNTIME_DIR is unset
        warnings.simplefilter("ignore")
        import pgserver  # imported here: only the embedded path needs it

        data_dir.mkdir(parents=True, exist_ok=True)
        server = pgserver.get_server(data_dir.resolve(), cleanup_mode="stop")
    return server.get_uri(), server


async def open_database(
    url: str | None, data_dir: Path, *, min_size: int = 2, max_size: int = 10
) -> Database:
    handle = None
    if not url:
        url, handle = await asyncio.to_thread(embedded_url, data_dir)
        log.info("database.embedded", data_dir=str(data_dir))
    pool = await asyncpg.create_pool(
        url, min_size=min_size, max_size=max_size, reset=_keep_session
    )
    assert pool is not None
    await migrate(pool)
    return Database(pool=pool, url=url, _embedded=handle)


async def _keep_session(conn: asyncpg.Connection) -> None:
    """Release a connection to the pool as it is. asyncpg's default reset query (unlock
    advisory locks, close cursors, unlisten, reset settings) costs one more round trip per
    pooled query, nearly doubling them; nothing here leaves such session state behind
    (the migration lock is released in a `finally`)."""


def migration_files() -> list[tuple[str, str]]:
    folder = resources.files("csms.store") / "migrations"
    files = sorted((f.name, f.read_text()) for f in folder.iterdir() if f.name.endswith(".sql"))
    return [(name.removesuffix(".sql"), sql) for name, sql in files]


async def migrate(pool: asyncpg.Pool) -> list[str]:
    """Apply the versioned SQL files not applied yet, each in its own transaction."""
    applied_now: list[str] = []
    async with pool.acquire() as conn:
        await conn.execute("SELECT pg_advisory_lock($1)", MIGRATION_LOCK)
        try:
            await conn.execute(
                "CREATE TABLE IF NOT EXISTS schema_migrations ("
                " version text PRIMARY KEY, applied_at timestamptz NOT NULL DEFAULT now())"
            )
            done = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
            for version, sql in migration_files():
                if version in done:
                    continue
                async with conn.transaction():
                    await conn.execute(sql)
                    await conn.execute(
                        "INSERT INTO schema_migrations (version) VALUES ($1)", version
                    )
                applied_now.append(version)
                log.info("database.migrated", version=version)
        finally:
            await conn.execute("SELECT pg_advisory_unlock($1)", MIGRATION_LOCK)
    return applied_now
