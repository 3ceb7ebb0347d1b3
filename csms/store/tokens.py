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
            " expires_at = EXCLUDED.expires_at, version = nextval('id_token_versions')",
            id_token, type, status, group_id, expires_at, now,
        )
        await self._forget_removal(id_token, type)

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
        if inserted:
            await self._forget_removal(id_token, type)
        return bool(inserted)

    async def _forget_removal(self, id_token: str, type: str) -> None:
        await self.pool.execute(
            "DELETE FROM id_token_removals WHERE id_token = $1 AND type = $2", id_token, type
        )

    async def remove(self, id_token: str, type: str | None, now: datetime) -> int:
        """Delete the token; the removal is versioned, so local lists drop it too."""
        rows = await self.pool.fetch(
            "WITH gone AS (DELETE FROM id_tokens WHERE id_token = $1"
            " AND ($2::text IS NULL OR type = $2) RETURNING id_token, type)"
            " INSERT INTO id_token_removals (id_token, type, removed_at)"
            " SELECT id_token, type, $3::timestamptz FROM gone"
            " ON CONFLICT (id_token, type) DO UPDATE SET"
            " version = nextval('id_token_versions'), removed_at = EXCLUDED.removed_at"
            " RETURNING 1",
            id_token, type, now,
        )
        return len(rows)

    async def get_many(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], IdToken]:
        """Tokens by (id_token, type), in one query."""
        if not keys:
            return {}
        rows = await self.pool.fetch(
            "SELECT id_token, type, status, group_id, expires_at FROM id_tokens"
            " WHERE (id_token, type) IN (SELECT * FROM unnest($1::text[], $2::text[]))",
            [k[0] for k in keys], [k[1] for k in keys],
        )
        return {(r["id_token"], r["type"]): IdToken(**dict(r)) for r in rows}

    async def group_token(self, group_id: str) -> IdToken | None:
        """The token a group id names (C09): the group's own row in the table, if any."""
        row = await self.pool.fetchrow(
            "SELECT id_token, type, status, group_id, expires_at FROM id_tokens"
            " WHERE id_token = $1 ORDER BY type = 'Central' DESC, type LIMIT 1",
            group_id,
        )
        return IdToken(**dict(row)) if row else None

    async def version(self) -> int:
        """The newest change to the token table (0: never changed)."""
        value = await self.pool.fetchval(
            "SELECT GREATEST((SELECT max(version) FROM id_tokens),"
            " (SELECT max(version) FROM id_token_removals))"
        )
        return int(value or 0)

    async def reserve_versions(self, n: int) -> list[int]:
        """n fresh versions, above every change so far (a local list sent in n parts)."""
        rows = await self.pool.fetch(
            "SELECT nextval('id_token_versions') AS v FROM generate_series(1, $1)", n
        )
        return sorted(int(r["v"]) for r in rows)

    async def changes_since(self, version: int) -> tuple[list[IdToken], list[tuple[str, str]]]:
        """Tokens added or changed after `version`, and tokens removed after it."""
        changed = await self.pool.fetch(
            "SELECT id_token, type, status, group_id, expires_at FROM id_tokens"
            " WHERE version > $1 ORDER BY version", version,
        )
        removed = await self.pool.fetch(
            "SELECT id_token, type FROM id_token_removals WHERE version > $1 ORDER BY version",
            version,
        )
        return ([IdToken(**dict(r)) for r in changed],
                [(r["id_token"], r["type"]) for r in removed])

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
