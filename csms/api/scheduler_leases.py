"""Which process plans which site (the scheduler's site leases): so an operator running
several CSMS processes on one database sees who holds a site, and that every site has an
owner. Read from PostgreSQL's lock table, so any process answers for all of them."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

from fastapi import APIRouter
from pydantic import Field

from csms.api.auth import Caller, Permission, require
from csms.api.deps import PartsDep
from csms.api.models import Model
from csms.api.sites import may_see
from csms.scheduling.leases import holders

router = APIRouter(prefix="/api/scheduler", tags=["sites"])


class SiteLease(Model):
    site_id: str
    node: str | None = Field(description="the process planning the site (its [scheduler] "
                             "node_name, else host:pid); null: none plans it now")
    pid: int | None = Field(None, description="that process's database session")
    since: datetime | None = Field(None, description="when that session connected")


@router.get("/leases")
async def leases(who: Annotated[Caller, require(Permission.SITES)],
                 parts: PartsDep) -> list[SiteLease]:
    """Every configured site and the process that holds its lease, if any."""
    found = await holders(parts.store.pool, sorted(parts.sites))
    return [SiteLease(site_id=sid, node=h.node if h else None, pid=h.pid if h else None,
                      since=h.since if h else None)
            for sid, h in found.items() if may_see(who, sid)]
