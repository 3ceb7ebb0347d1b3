"""Portfolios (issue 14): making and removing one, for the API and the CLI alike. Each
change is stored with its audit entry in one transaction (csms/audit.py)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import TYPE_CHECKING

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from csms.store import Store
from csms.store.portfolios import Member, Portfolio

if TYPE_CHECKING:
    from smart_charging import Site

PORTFOLIO_ID = r"^[A-Za-z0-9_.-]{1,64}$"  # as the table's CHECK says


class MemberError(ValueError):
    """A member that is not a configured site, or not a node of it."""


def members(sites: Mapping[str, Site], wanted: Sequence[tuple[str, str | None]]
            ) -> tuple[Member, ...]:
    """Members of configured sites and nodes only, without repeats, in the order given."""
    out: list[Member] = []
    for i, (site_id, node) in enumerate(wanted):
        site = sites.get(site_id)
        if site is None:
            raise MemberError(f"members[{i}]: no site {site_id}")
        if node is not None and node not in {n.id for n in site.nodes}:
            raise MemberError(f"members[{i}]: site {site_id} has no node {node}")
        out.append(Member(site_id, node))
    return tuple(dict.fromkeys(out))


async def create(store: Store, key: Ed25519PrivateKey, portfolio: Portfolio,
                 now: datetime) -> bool:
    """False when the id is taken; otherwise stored and audited together."""
    async with store.pool.acquire() as conn, conn.transaction():
        if not await store.portfolios.create(portfolio, conn):
            return False
        await store.audit.append(key, portfolio.created_by, "portfolio.created", {
            "portfolio": portfolio.id, "operator": portfolio.operator,
            "members": [[m.site_id, m.node] for m in portfolio.members]}, now, conn)
    return True


async def remove(store: Store, key: Ed25519PrivateKey, portfolio_id: str, actor: str,
                 now: datetime) -> bool:
    """False when there is no such portfolio; otherwise removed and audited together."""
    async with store.pool.acquire() as conn, conn.transaction():
        if not await store.portfolios.remove(portfolio_id, conn):
            return False
        await store.audit.append(key, actor, "portfolio.removed",
                                 {"portfolio": portfolio_id}, now, conn)
    return True
