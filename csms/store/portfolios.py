"""Portfolios: the sites (or nodes of sites) an aggregator pools (issue 14)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg


@dataclass(frozen=True)
class Member:
    site_id: str
    node: str | None  # None: the whole site


@dataclass(frozen=True)
class Portfolio:
    id: str
    name: str
    operator: str
    members: tuple[Member, ...]
    created_by: str
    created_at: datetime


class PortfolioRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, portfolio: Portfolio, conn: asyncpg.Connection) -> bool:
        """False when the id is taken (nothing is replaced). In the caller's transaction,
        so the audit entry that records it is stored with it."""
        inserted = await conn.fetchval(
            "INSERT INTO portfolios (id, name, operator, created_by, created_at)"
            " VALUES ($1, $2, $3, $4, $5) ON CONFLICT (id) DO NOTHING RETURNING 1",
            portfolio.id, portfolio.name, portfolio.operator, portfolio.created_by,
            portfolio.created_at)
        if not inserted:
            return False
        await conn.executemany(
            "INSERT INTO portfolio_members (portfolio_id, site_id, node) VALUES ($1, $2, $3)"
            " ON CONFLICT DO NOTHING",
            [(portfolio.id, m.site_id, m.node or "") for m in portfolio.members])
        return True

    async def remove(self, portfolio_id: str, conn: asyncpg.Connection) -> bool:
        result = await conn.execute("DELETE FROM portfolios WHERE id = $1", portfolio_id)
        return result.endswith(" 1")

    async def get(self, portfolio_id: str) -> Portfolio | None:
        found = await self.list((portfolio_id,))
        return found[0] if found else None

    async def list(self, ids: tuple[str, ...] | None = None) -> list[Portfolio]:
        """All portfolios, or those of `ids`, by id."""
        rows = await self.pool.fetch(
            "SELECT p.*, coalesce(array_agg(m.site_id ORDER BY m.site_id, m.node)"
            "   FILTER (WHERE m.site_id IS NOT NULL), '{}') AS sites,"
            " coalesce(array_agg(m.node ORDER BY m.site_id, m.node)"
            "   FILTER (WHERE m.site_id IS NOT NULL), '{}') AS nodes"
            " FROM portfolios p LEFT JOIN portfolio_members m ON m.portfolio_id = p.id"
            " WHERE $1::text[] IS NULL OR p.id = ANY($1::text[])"
            " GROUP BY p.id ORDER BY p.id", None if ids is None else list(ids))
        return [Portfolio(r["id"], r["name"], r["operator"], tuple(
            Member(site, node or None) for site, node in zip(r["sites"], r["nodes"],
                                                             strict=True)),
            r["created_by"], r["created_at"]) for r in rows]
