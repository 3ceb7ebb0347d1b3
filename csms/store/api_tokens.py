"""Tokens of the operator HTTP API: name, role, and the hash that a request's token must match."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

API_ROLES = ("admin", "operator", "grid", "aggregator", "viewer")


@dataclass(frozen=True)
class ApiToken:
    name: str
    role: str
    nodes: tuple[str, ...]
    created_at: datetime
    portfolios: tuple[str, ...] = ()  # what an aggregator token may see and act on


_COLUMNS = "name, role, nodes, created_at, portfolios"


def _token(row: asyncpg.Record) -> ApiToken:
    return ApiToken(row["name"], row["role"], tuple(row["nodes"]), row["created_at"],
                    tuple(row["portfolios"]))


class ApiTokenRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(
        self, name: str, role: str, token_hash: bytes, now: datetime, nodes: tuple[str, ...] = (),
        portfolios: tuple[str, ...] = (),
    ) -> bool:
        """False when a token with this name exists (it is not replaced: remove it first)."""
        if role not in API_ROLES:
            raise ValueError(f"role must be one of {', '.join(API_ROLES)}")
        inserted = await self.pool.fetchval(
            "INSERT INTO api_tokens (name, role, token_hash, nodes, created_at, portfolios)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (name) DO NOTHING RETURNING 1",
            name, role, token_hash, list(nodes), now, list(portfolios),
        )
        return bool(inserted)

    async def remove(self, name: str) -> bool:
        result = await self.pool.execute("DELETE FROM api_tokens WHERE name = $1", name)
        return result.endswith(" 1")

    async def find(self, token_hash: bytes) -> ApiToken | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM api_tokens WHERE token_hash = $1", token_hash
        )
        return _token(row) if row else None

    async def list(self) -> list[ApiToken]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM api_tokens ORDER BY name")
        return [_token(r) for r in rows]
