"""The event log over HTTP: errors and events at the stations (rejected profiles with the
station's reason, failed calls, non-compliance, security events, alerts, firmware
failures, faults, boots, disconnects, fallback plans), newest first, the same list as the
dashboard's /events page (csms/store/event_log.py says where each kind comes from).

`/api/events` is the live feed (server-sent events); this is the stored past.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import AwareDatetime, BaseModel

from csms.api.auth import Permission, require
from csms.api.deps import Parts, PartsDep
from csms.store.event_log import (
    KINDS,
    NON_COMPLIANCE_GRACE_S,
    NON_COMPLIANCE_MARGIN_W,
    EventLogRepo,
    LoggedEvent,
)

router = APIRouter(tags=["event log"])

Kind = Literal["profile", "call", "non-compliance", "security", "alert", "firmware", "fault",
               "boot", "disconnect", "plan"]
assert set(Kind.__args__) == set(KINDS)  # type: ignore[attr-defined]
DEFAULT_DAYS = 7
MAX_DAYS = 92  # a wider window scans too many meter samples for one request
MAX_TOLERANCE_W = 100_000.0
MAX_GRACE_S = 3600.0
Tolerance = Annotated[float, Query(
    ge=0, le=MAX_TOLERANCE_W,
    description="non-compliance: drawing more than the limit + 10% + this many W")]
Grace = Annotated[float, Query(
    ge=0, le=MAX_GRACE_S,
    description="non-compliance: samples this soon after a profile was sent do not count "
                "(the station may still be adjusting; longer under an accelerated clock)")]


class EventOut(BaseModel):
    at: datetime
    kind: str
    station_id: str | None
    evse_id: int | None
    reason: str
    detail: dict[str, Any]
    site_id: str | None


class EventPage(BaseModel):
    since: datetime
    until: datetime
    total: int
    events: list[EventOut]


def window(parts: Parts, since: datetime | None, until: datetime | None
           ) -> tuple[datetime, datetime]:
    """[since, until): by default the last week of the CSMS clock; at most MAX_DAYS wide
    (else a 422, as for any bad parameter)."""
    end = until or parts.clock.now() + timedelta(minutes=1)
    start = since or end - timedelta(days=DEFAULT_DAYS)
    if not start < end or end - start > timedelta(days=MAX_DAYS):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["query", "since"], "type": "value_error",
            "msg": f"since must come before until, at most {MAX_DAYS} days apart"}])
    return start, end


async def find(parts: Parts, since: datetime, until: datetime, station_id: str | None,
               kinds: list[str] | None, limit: int, offset: int,
               tolerance_w: float, grace_s: float) -> tuple[list[LoggedEvent], int]:
    found, total = await EventLogRepo(parts.store.pool).list(
        since, until, station_id=station_id or None, kinds=kinds, limit=limit,
        offset=offset, margin_w=tolerance_w, grace_s=grace_s)
    assert total is not None
    return found, total


@router.get("/api/event-log", dependencies=[require(Permission.READ)])
async def event_log(
    parts: PartsDep,
    station_id: Annotated[str | None, Query(max_length=48)] = None,
    kind: Annotated[list[Kind] | None, Query(
        max_length=len(KINDS), description="only these kinds (repeat for more)")] = None,
    since: Annotated[AwareDatetime | None, Query(
        description=f"default: {DEFAULT_DAYS} days before `until`")] = None,
    until: Annotated[AwareDatetime | None, Query(description="default: now")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
    tolerance_w: Tolerance = NON_COMPLIANCE_MARGIN_W,
    grace_s: Grace = NON_COMPLIANCE_GRACE_S,
) -> EventPage:
    """Errors and events at the stations, newest first, with how many match in all (page
    with `offset`). Each names its station, EVSE (where it has one), reason and time."""
    start, end = window(parts, since, until)
    found, total = await find(parts, start, end, station_id, list(kind) if kind else None,
                              limit, offset, tolerance_w, grace_s)
    return EventPage(since=start, until=end, total=total,
                     events=[EventOut.model_validate(e, from_attributes=True) for e in found])
