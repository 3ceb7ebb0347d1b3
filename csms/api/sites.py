"""Sites (read): their electrical tree and EVSEs as configured, and the scheduler's plans,
the newest in full (limit, household load, planned EV load, per-EVSE setpoints) and the
history as summaries.

A grid token sees only the sites of its nodes (`csms api-tokens add ... --node SITE/NODE`).
"""

from __future__ import annotations

import math
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import AwareDatetime, Field

from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import Model
from csms.scheduling.grid_inputs import with_grid
from csms.scheduling.leases import holders
from smart_charging.model import Site as SiteModel

router = APIRouter(prefix="/api/sites", tags=["sites"])


class SiteNode(Model):
    id: str
    parent: str | None
    kind: str
    limit_kw: float | None = Field(description="the static limit as configured")
    phase_limit_a: float | None
    rating_kva: float | None
    limit_override_kw: float | None = Field(
        None, description="the static limit set through the API, in place of limit_kw")
    effective_limit_kw: float | None = Field(
        None, description="the limit now: the override or limit_kw, lowered by any "
        "active limit event")


class SiteEvse(Model):
    id: str
    node: str
    station_id: str
    ocpp_evse_id: int
    phases: list[str]
    max_current_a: float


class Site(Model):
    id: str
    nodes: list[SiteNode]
    evses: list[SiteEvse]
    planned_by: str | None = Field(
        None, description="the CSMS process planning the site now (holding its lease, "
        "see /api/scheduler/leases); null: none")


class PlanSummary(Model):
    id: int | None
    site_id: str
    planned_at: datetime
    trigger: str
    status: str
    sessions: int
    iterations: int
    fallback_used: bool
    fallback_reason: str | None
    solve_seconds: float
    build_seconds: float
    profiles_sent: int
    profiles_rejected: int
    profiles_failed: int


class Plan(PlanSummary):
    inputs: dict[str, Any]
    schedule: dict[str, Any]


async def node_views(parts: Parts, site: SiteModel) -> list[SiteNode]:
    """The nodes with their static limit overrides and the limit in force now."""
    now = parts.clock.now()
    overrides = await parts.store.grid.node_limits(site.id)
    merged = with_grid(site, overrides, await parts.store.grid.in_force(site.id, now))
    out = []
    for node, eff in zip(site.nodes, merged.nodes, strict=True):
        limit = float(eff.limit_over([now], [now + timedelta(seconds=1)])[0])
        out.append(SiteNode.model_validate(node).model_copy(update={
            "limit_override_kw": overrides.get(node.id),
            "effective_limit_kw": limit if math.isfinite(limit) else None}))
    return out


async def site_view(parts: Parts, site: SiteModel) -> Site:
    holder = (await holders(parts.store.pool, [site.id]))[site.id]
    return site_out(site).model_copy(update={"nodes": await node_views(parts, site),
                                             "planned_by": holder and holder.node})


def site_out(site: SiteModel) -> Site:
    return Site(
        id=site.id,
        nodes=[SiteNode.model_validate(n) for n in site.nodes],
        evses=[SiteEvse(id=e.id, node=e.node, station_id=e.station_id,
                        ocpp_evse_id=e.ocpp_evse_id, phases=list(e.phases),
                        max_current_a=e.max_current_a) for e in site.evses],
    )


def may_see(who: Caller, site_id: str) -> bool:
    """Everyone with sites:read sees every site, except a grid token: only its nodes'."""
    return who.role != "grid" or any(n.split("/", 1)[0] == site_id for n in who.nodes)


SitesReader = Annotated[Caller, require(Permission.SITES)]


async def _site_id(site_id: str, who: SitesReader, parts: PartsDep) -> str:
    """The path's site, if it exists and the caller may see it (else 404: a grid token
    learns nothing about other sites)."""
    known = site_id in parts.sites or await parts.store.plans.latest(site_id) is not None
    if not known or not may_see(who, site_id):
        raise not_found(f"site {site_id}")
    return site_id


SiteId = Annotated[str, Depends(_site_id)]


@router.get("")
async def list_sites(who: SitesReader, parts: PartsDep) -> list[Site]:
    """The sites the scheduler plans (from `[scheduler] sites`)."""
    return [await site_view(parts, s) for sid, s in sorted(parts.sites.items())
            if may_see(who, sid)]


@router.get("/{site_id}", responses={404: {"description": "no such site"}})
async def get_site(site_id: SiteId, parts: PartsDep) -> Site:
    site = parts.sites.get(site_id)
    if site is None:  # planned before, not configured now
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"site {site_id} is not configured")
    return await site_view(parts, site)


@router.get("/{site_id}/plan", responses={404: {"description": "no such site, or no plan"}})
async def current_plan(site_id: SiteId, parts: PartsDep) -> Plan:
    """The newest plan: per-slot limit, household and planned EV load (kW), and each EVSE's
    setpoints and profile outcome."""
    plan = await parts.store.plans.latest(site_id)
    if plan is None:
        raise not_found(f"plan for site {site_id} yet")
    return Plan.model_validate(plan)


@router.get("/{site_id}/plans", responses={404: {"description": "no such site"}})
async def plan_history(
    site_id: SiteId, parts: PartsDep,
    since: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[PlanSummary]:
    """Newest first, without the inputs and schedules (GET .../plan has the newest)."""
    plans = await parts.store.plans.list(site_id, since=since, limit=limit)
    return [PlanSummary.model_validate(p) for p in plans]
