"""Grid events and node limits: what a grid company (role `grid`, on the nodes it was
given) or an admin sets on a site's electrical tree.

An event is a limit (curtailment: the node may carry at most `kw` over [start, end)) or a
target (demand response: the EV load under the node should follow `kw`). The scheduler
reads events and limit overrides from the database at every plan and re-plans at once when
one is created, cancelled or set. Delivery is what the CSMS metered (csms/grid.py).
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status
from pydantic import AwareDatetime, Field

from csms import grid
from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import Body, Model
from csms.api.sites import SiteId, SiteNode, node_views
from csms.events import GridEventChanged, SiteSettingsChanged
from csms.store.grid import GridEvent
from smart_charging.model import Site

router = APIRouter(prefix="/api/sites", tags=["grid events and limits"])

EventStatus = Literal["scheduled", "active", "completed", "cancelled"]


class EventIn(Body):
    node: str = Field(description="a node id of the site (a grid token: one it was given, "
                      "or beneath one)")
    kind: Literal["limit", "target"] = Field(
        description="limit: the node carries at most `kw`; target: the EV load under the "
        "node should follow `kw` (demand-response dispatch)")
    kw: float = Field(ge=-1e6, le=1e6, allow_inf_nan=False, description="a limit >= 0; a "
                      "target below 0 asks V2G cars to feed back")
    start: AwareDatetime | None = Field(None, description="default: now")
    end: AwareDatetime
    reference: str | None = Field(None, max_length=200,
                                  description="the grid company's own id for the event")


class Delivery(Model):
    """What the CSMS metered for the EV load under the node over the event's window so
    far: Power.Active.Import of those EVSEs' meter values (see docs/decisions)."""

    source: str
    window_start: datetime
    window_end: datetime
    final: bool
    evses: int
    samples: int
    max_kw: float
    mean_kw: float
    energy_kwh: float
    non_ev_kw_assumed: float | None = None
    minutes_above_limit: float | None = None
    mean_abs_deviation_kw: float | None = None
    complied: bool


class EventOut(Model):
    id: int
    site_id: str
    node: str
    kind: str
    kw: float
    start: datetime
    end: datetime
    reference: str | None
    created_by: str
    created_at: datetime
    cancelled_at: datetime | None
    status: EventStatus
    delivery: Delivery | None


class LimitIn(Body):
    limit_kw: float | None = Field(gt=0, allow_inf_nan=False,
                                   description="null removes the override")


Reader = Annotated[Caller, require(Permission.SITES)]
Writer = Annotated[Caller, require(Permission.LIMITS)]


def configured(parts: Parts, site_id: str) -> Site:
    site = parts.sites.get(site_id)
    if site is None:
        raise not_found(f"site {site_id}")
    return site


def may_act(who: Caller, site: Site, node_id: str) -> bool:
    return who.role != "grid" or grid.covers(who.nodes, site, node_id)


def _node(site: Site, node_id: str) -> None:
    if node_id not in {n.id for n in site.nodes}:
        raise not_found(f"node {node_id} in site {site.id}")


def _invalid(field: str, msg: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
        "loc": ["body", field], "type": "value_error", "msg": msg}])


async def event_out(parts: Parts, site: Site, event: GridEvent) -> EventOut:
    now = parts.clock.now()
    done = await grid.delivery_of(parts.store, event, site, now)
    return EventOut(
        id=event.id, site_id=event.site_id, node=event.node, kind=event.kind, kw=event.kw,
        start=event.start, end=event.end, reference=event.reference,
        created_by=event.created_by, created_at=event.created_at,
        cancelled_at=event.cancelled_at, status=event.status(now),  # type: ignore[arg-type]
        delivery=None if done is None else Delivery.model_validate(done))


def _published(parts: Parts, event: GridEvent, change: str) -> None:
    now = parts.clock.now()
    parts.events.publish(GridEventChanged(
        event.site_id, event.id, event.node, event.kind, event.kw, event.start, event.end,
        event.status(now), change, now))


@router.post("/{site_id}/events", status_code=status.HTTP_201_CREATED, responses={
    403: {"description": "not a node this token was given"},
    404: {"description": "no such site or node"},
    422: {"description": "bad body, or a target on a node the engine cannot follow"}})
async def create_event(site_id: SiteId, body: EventIn, who: Writer,
                       parts: PartsDep) -> EventOut:
    """Create a limit or target event on a node; the site re-plans at once."""
    site = configured(parts, site_id)
    _node(site, body.node)
    if not may_act(who, site, body.node):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this token was not given node {body.node} (or one above it)")
    now = parts.clock.now()
    start = body.start or now
    if body.end <= start:
        raise _invalid("end", "must be after start")
    if body.end <= now:
        raise _invalid("end", "is in the past")
    if body.kw < 0 and body.kind != "target":
        raise _invalid("kw", "a limit must be >= 0 (only a target may be below zero)")
    if body.kind == "target" and not grid.holds_all_evses(site, body.node):
        raise _invalid("kind", "target is not supported yet on a node that does not hold "
                       "all the site's EVSEs (the engine follows a target for the site's "
                       "total EV load); use the root node, or a limit")
    async with parts.store.pool.acquire() as conn, conn.transaction():  # with its audit entry
        event = await parts.store.grid.add_event(site.id, body.node, body.kind, body.kw,
                                                 start, body.end, body.reference, who.name,
                                                 now, conn)
        await parts.store.audit.append(parts.audit_key, who.name, "dispatch.created",
                                       grid.audited(event), now, conn)
    _published(parts, event, "created")
    return await event_out(parts, site, event)


@router.get("/{site_id}/events", responses={404: {"description": "no such site"}})
async def list_events(
    site_id: SiteId, who: Reader, parts: PartsDep,
    status_: Annotated[EventStatus | None, Query(alias="status")] = None,
    since: Annotated[AwareDatetime | None, Query(
        description="only events still running at or after this time")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[EventOut]:
    """Newest start first. A grid token sees the events on the nodes it was given."""
    site = configured(parts, site_id)
    events = await parts.store.grid.events(site.id, parts.clock.now(), status_, since, limit)
    return [await event_out(parts, site, e) for e in events
            if may_act(who, site, e.node)]


async def _event(site_id: SiteId, event_id: int, who: Reader, parts: PartsDep) -> GridEvent:
    site = configured(parts, site_id)
    event = await parts.store.grid.event(site.id, event_id)
    if event is None or not may_act(who, site, event.node):
        raise not_found(f"event {event_id} in site {site_id}")
    return event


EventDep = Annotated[GridEvent, Depends(_event)]


@router.get("/{site_id}/events/{event_id}", responses={404: {"description": "no such event"}})
async def get_event(event: EventDep, parts: PartsDep) -> EventOut:
    """The event with its metered delivery once it has started."""
    return await event_out(parts, configured(parts, event.site_id), event)


@router.delete("/{site_id}/events/{event_id}", responses={
    404: {"description": "no such event"},
    409: {"description": "the event is completed or already cancelled"}})
async def cancel_event(event: EventDep, who: Writer, parts: PartsDep) -> EventOut:
    """Cancel a scheduled or active event (an active one ends now); the site re-plans."""
    site = configured(parts, event.site_id)
    now = parts.clock.now()
    async with parts.store.pool.acquire() as conn, conn.transaction():
        cancelled = await parts.store.grid.cancel(site.id, event.id, now, conn)
        if cancelled is None:
            raise HTTPException(status.HTTP_409_CONFLICT,
                                f"event {event.id} is {event.status(now)}")
        await parts.store.audit.append(parts.audit_key, who.name, "dispatch.cancelled",
                                       grid.audited(cancelled), now, conn)
    _published(parts, cancelled, "cancelled")
    return await event_out(parts, site, cancelled)


@router.put("/{site_id}/nodes/{node_id}/limit", responses={
    403: {"description": "not a node this token was given"},
    404: {"description": "no such site or node"}})
async def set_limit(site_id: SiteId, node_id: str, body: LimitIn, who: Writer,
                    parts: PartsDep) -> SiteNode:
    """Set the node's static limit in place of the configured one (null: back to the
    configured one); the site re-plans at once. Grid events still lower it."""
    site = configured(parts, site_id)
    _node(site, node_id)
    if not may_act(who, site, node_id):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"this token was not given node {node_id} (or one above it)")
    now = parts.clock.now()
    await parts.store.grid.set_node_limit(site.id, node_id, body.limit_kw, who.name, now)
    parts.events.publish(SiteSettingsChanged(site.id, f"limit of {node_id}", now))
    views = await node_views(parts, site)
    return next(v for v in views if v.id == node_id)
