"""The audit log's rows (csms/audit.py says what the chain guarantees)."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Any

import asyncpg
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from csms.audit import GENESIS, Entry, entry_hash

_LOCK = 0x6175646974  # "audit": one appender at a time, across every process and node


def _entry(row: asyncpg.Record) -> Entry:
    return Entry(row["seq"], row["at"], row["actor"], row["kind"], json.loads(row["body"]),
                 bytes(row["prev_hash"]), bytes(row["hash"]), bytes(row["signature"]))


class AuditRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def append(self, key: Ed25519PrivateKey, actor: str, kind: str,
                     body: dict[str, Any], now: datetime,
                     conn: asyncpg.Connection | None = None) -> Entry:
        """Append one entry; inside the caller's transaction when `conn` is given, so the
        entry and what it records are stored together or not at all."""
        if conn is None:
            async with self.pool.acquire() as own, own.transaction():
                return await self._append(own, key, actor, kind, body, now)
        return await self._append(conn, key, actor, kind, body, now)

    async def _append(self, conn: asyncpg.Connection, key: Ed25519PrivateKey, actor: str,
                      kind: str, body: dict[str, Any], now: datetime) -> Entry:
        await conn.execute("SELECT pg_advisory_xact_lock($1)", _LOCK)
        last = await conn.fetchrow("SELECT seq, hash FROM audit_log ORDER BY seq DESC LIMIT 1")
        seq = 1 if last is None else last["seq"] + 1
        prev = GENESIS if last is None else bytes(last["hash"])
        body = json.loads(json.dumps(body))  # stored as read back: jsonb keeps JSON only
        digest = entry_hash(prev, seq, now, actor, kind, body)
        signature = key.sign(digest)
        await conn.execute(
            "INSERT INTO audit_log (seq, at, actor, kind, body, prev_hash, hash, signature)"
            " VALUES ($1, $2, $3, $4, $5::jsonb, $6, $7, $8)",
            seq, now, actor, kind, json.dumps(body), prev, digest, signature)
        return Entry(seq, now, actor, kind, body, prev, digest, signature)

    async def newest(self, kind: str, field: str, value: str) -> Entry | None:
        """The newest entry of `kind` whose body's `field` is `value` (e.g. a dispatch's
        last settlement)."""
        row = await self.pool.fetchrow(
            "SELECT * FROM audit_log WHERE kind = $1 AND body ->> $2 = $3"
            " ORDER BY seq DESC LIMIT 1", kind, field, value)
        return _entry(row) if row else None

    async def entries(self, after: int = 0, limit: int | None = None) -> list[Entry]:
        rows = await self.pool.fetch(
            "SELECT * FROM audit_log WHERE seq > $1 ORDER BY seq LIMIT $2", after, limit)
        return [_entry(r) for r in rows]
