"""Which process plans which site: a PostgreSQL session-level advisory lock per site, held
on one connection of the owning process, so several CSMS processes on one database never
plan one site (or send one station conflicting profiles) at once.

The database ends the lock with the session: a process that dies, or whose connection
drops, loses its sites without a word from it, and another takes them at its next try.
Why locks and not a lease table: docs/decisions/0023-scheduler-site-leases.md.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime

import asyncpg
import structlog

log = structlog.get_logger()

LOCK_SPACE = 7_202  # first key of pg_try_advisory_lock(int, int): the scheduler's sites
SINGLETON_SPACE = 7_203  # ... and what a cluster runs once (the VEN, the VPP tracker)
HOLDER_PREFIX = "csms-scheduler "  # application_name of a lock connection, then the node


def lock_key(site_id: str) -> int:
    """The second lock key of a site: stable across processes and versions (Python's
    hash() is salted per process), positive, so pg_locks.objid shows it as is."""
    return int.from_bytes(hashlib.sha256(site_id.encode()).digest()[:4], "big") & 0x7FFF_FFFF


@dataclass
class Leases:
    """This process's locks, on its own connection (never a pooled one: a pool would
    hand the session, and its locks, to whoever borrows it next).

    `on_lost` is called, once, as soon as the connection is found gone: the caller must
    stop planning every site at once, since another process may take them now.
    """

    url: str
    node: str
    on_lost: Callable[[str], None]
    timeout_s: float = 5.0
    # the lock connection's application_name, then the node: a scheduler's (counted by
    # `planners`), or another singleton's (csms/openadr.py: the one VEN of a cluster)
    prefix: str = HOLDER_PREFIX
    space: int = LOCK_SPACE  # SINGLETON_SPACE for those
    held: set[str] = field(default_factory=set)
    _conn: asyncpg.Connection | None = None
    _closing: bool = False

    @property
    def connected(self) -> bool:
        return self._conn is not None and not self._conn.is_closed()

    async def _connect(self) -> asyncpg.Connection:
        conn = await asyncpg.connect(self.url, timeout=self.timeout_s, server_settings={
            "application_name": (self.prefix + self.node)[:63],
            # a vanished owner (power, network) is noticed by the server in ~10 s over
            # TCP, idle (keepalives) or not (unacknowledged data), and its locks freed;
            # ignored on a Unix socket, where the kernel knows at once
            "tcp_keepalives_idle": "4", "tcp_keepalives_interval": "2",
            "tcp_keepalives_count": "3", "tcp_user_timeout": "10000",
        })
        conn.add_termination_listener(self._terminated)
        return conn

    def _terminated(self, conn: asyncpg.Connection) -> None:
        if conn is self._conn and not self._closing:
            self._drop("connection closed")

    def _drop(self, why: str) -> None:
        conn, self._conn = self._conn, None
        if conn is not None and not conn.is_closed():
            conn.terminate()
        if self.held:
            self.held.clear()
            self.on_lost(why)

    async def check(self) -> bool:
        """Is the lock connection still there? A query that fails or hangs means no: the
        server may already have ended the session and freed the locks."""
        if self._conn is None:
            return False
        try:
            await asyncio.wait_for(self._conn.fetchval("SELECT 1"), self.timeout_s)
            return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._drop(f"check failed: {str(exc) or type(exc).__name__}")
            return False

    async def take(self, site_id: str) -> bool:
        """Try to take the site's lock (not waiting for it); True if this process holds it.
        Any other name a cluster must run once (e.g. "openadr:<ven>") is locked the same
        way."""
        if site_id in self.held:
            return True
        try:
            if self._conn is None or self._conn.is_closed():
                self._conn = await self._connect()
            got = await asyncio.wait_for(self._conn.fetchval(
                "SELECT pg_try_advisory_lock($1, $2)", self.space, lock_key(site_id)),
                self.timeout_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            log.warning("scheduler.lease_unavailable", site_id=site_id,
                        error=str(exc) or type(exc).__name__)
            self._drop("take failed")
            return False
        if got:
            self.held.add(site_id)
        return bool(got)

    async def planners(self) -> int:
        """How many processes plan on this database now (each holds one lease connection,
        named by HOLDER_PREFIX): the share of sites each should hold. At least 1."""
        if self._conn is None or self._conn.is_closed():
            return 1
        try:
            count = await asyncio.wait_for(self._conn.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database()"
                " AND application_name LIKE $1", HOLDER_PREFIX + "%"), self.timeout_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._drop(f"count failed: {str(exc) or type(exc).__name__}")
            return 1
        return max(1, int(count or 0))

    async def release(self, site_id: str) -> None:
        """Give one site's lock back (its planning must have stopped): another process
        takes it at its next try."""
        if site_id not in self.held or self._conn is None:
            return
        self.held.discard(site_id)
        try:
            await asyncio.wait_for(self._conn.fetchval(
                "SELECT pg_advisory_unlock($1, $2)", self.space, lock_key(site_id)),
                self.timeout_s)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError) as exc:
            self._drop(f"release failed: {str(exc) or type(exc).__name__}")

    async def close(self) -> None:
        """Release every lock (by ending the session) once planning has stopped."""
        self._closing = True
        conn, self._conn = self._conn, None
        self.held.clear()
        if conn is not None and not conn.is_closed():
            try:
                await asyncio.wait_for(conn.close(), self.timeout_s)
            except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError, TimeoutError):
                conn.terminate()

    def backend_pid(self) -> int | None:
        return None if self._conn is None else self._conn.get_server_pid()


@dataclass(frozen=True)
class Holder:
    """Who holds a site's lock: the node name and its database session."""

    node: str
    pid: int
    since: datetime  # when the holding session connected (it holds the lock no earlier)


async def holders(pool: asyncpg.Pool, site_ids: Iterable[str]) -> dict[str, Holder | None]:
    """Each site's holder in this database, or None when no process plans it now."""
    by_key = {lock_key(s): s for s in site_ids}
    rows = await pool.fetch(
        "SELECT l.objid::bigint AS key, a.pid, a.application_name, a.backend_start"
        " FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid"
        " WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 2"
        " AND l.classid::bigint = $1"
        " AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())",
        LOCK_SPACE)
    out: dict[str, Holder | None] = dict.fromkeys(by_key.values())
    for r in rows:
        site_id = by_key.get(int(r["key"]))
        if site_id is not None:
            name = str(r["application_name"] or "")
            out[site_id] = Holder(name.removeprefix(HOLDER_PREFIX), int(r["pid"]),
                                  r["backend_start"])
    return out
