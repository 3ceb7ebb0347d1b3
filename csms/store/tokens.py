"""Id tokens the CSMS knows, for Authorize and TransactionEvent idTokenInfo."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

TOKEN_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")


@dataclass(frozen=True)
class IdToken:
    id_token: str
    type: str
    status: str
    group_id: str | None
    expires_at: datetime | None

    def status_at(self, now: datetime) -> str:
        if self.status == "Accepted" and self.expires_at is not None and self.expires_at <= now:
            return "Expired"
        return self.status


class TokenRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(
        self,
        id_token: str,
        type: str,
        now: datetime,
        *,
        status: str = "Accepted",
        group_id: str | None = None,
        expires_at: datetime | None = None,
    ) -> None:
        if status not in TOKEN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(TOKEN_STATUSES)}")
        await self.pool.execute(
            "INSERT INTO id_tokens (id_token, type, status, group_id, expires_at, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id_token, type) DO UPDATE SET"
            " status = EXCLUDED.status, group_id = EXCLUDED.group_id,"
            " expires_at = EXCLUDED.expires_at",
            id_token, type, status, group_id, expires_at, now,
        )

    async def create(
        self, id_token: str, type: str, now: datetime, *, status: str = "Accepted",
        group_id: str | None = None, expires_at: datetime | None = None,
    ) -> bool:
        """Like `add`, but never replaces: False when the token exists."""
        if status not in TOKEN_STATUSES:
            raise ValueError(f"status must be one of {', '.join(TOKEN_STATUSES)}")
        inserted = await self.pool.fetchval(
            "INSERT INTO id_tokens (id_token, type, status, group_id, expires_at, created_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (id_token, type) DO NOTHING"
            " RETURNING 1",
            id_token, type, status, group_id, expires_at, now,
        )
        return bool(inserted)

    async def remove(self, id_token: str, type: str | None = None) -> int:
        result = await self.pool.execute(
            "DELETE FROM id_tokens WHERE id_token = $1 AND ($2::text IS NULL OR type = $2)",
            id_token, type,
        )
        return int(result.split()[-1])

    async def get(self, id_token: str, type: str) -> IdToken | None:
        row = await self.pool.fetchrow(
            "SELECT id_token, type, status, group_id, expires_at FROM id_tokens"
            " WHERE id_token = $1 AND type = $2",
            id_token, type,
        )
        return IdToken(**dict(row)) if row else None

    async def list(self) -> list[IdToken]:
        rows = await self.pool.fetch(
            "SELECT id_token, type, status, group_id, expires_at FROM id_tokens ORDER BY id_token"
        )
        return [IdToken(**dict(r)) for r in rows]
