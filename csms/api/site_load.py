"""A site's measured load over the last hours: what the dashboard's chart shows left of
"now" (the plan, GET /api/sites/{id}/plan, is what it shows right of it).

EV load is measured as grid-event delivery is (csms/grid.py): the stations'
Power.Active.Import samples, each holding until its EVSE's next one, the end of its
transaction, or 15 min. The household (non-EV) load is not metered by the CSMS; it is the
site's configured profile, the figure the scheduler plans with. The limit is the root
node's, with the node-limit override and the limit events that applied at the time.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import Field

from csms import grid
from csms.api.deps import PartsDep, not_found
from csms.api.models import Model
from csms.api.sites import SiteId
from csms.scheduling.grid_inputs import with_grid
from smart_charging.model import sample

router = APIRouter(prefix="/api/sites", tags=["sites"])

MAX_BUCKETS = 2000


class SiteLoad(Model):
    site_id: str
    node: str = Field(description="the root node (grid connection) the figures are for")
    now: datetime = Field(description="the CSMS clock's time of this answer")
    step_s: int
    starts: list[datetime] = Field(description="bucket starts, oldest first, up to now")
    ev_kw: list[float] = Field(description="measured EV power of the site at each start")
    household_kw: list[float | None] = Field(description="the configured household profile")
    limit_kw: list[float | None] = Field(description="the root node's limit then")


@router.get("/{site_id}/load", responses={404: {"description": "no such site"}})
async def site_load(
    site_id: SiteId, parts: PartsDep,
    hours: Annotated[float, Query(gt=0, le=48, description="how far back")] = 3.0,
    step_s: Annotated[int, Query(ge=10, le=86_400, description="bucket size")] = 300,
) -> SiteLoad:
    """EV load (measured), household load and limit per bucket, from `hours` ago to now."""
    if hours * 3600 / step_s > MAX_BUCKETS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["query", "step_s"], "type": "value_error",
            "msg": f"more than {MAX_BUCKETS} buckets: raise step_s or lower hours",
        }])
    configured = parts.sites.get(site_id)
    if configured is None:
        raise not_found(f"configuration for site {site_id}")
    now = parts.clock.now()
    first = int((now.timestamp() - hours * 3600) // step_s) * step_s
    starts = [datetime.fromtimestamp(t, now.tzinfo) for t in
              range(first, int(now.timestamp()) + 1, step_s)]
    ends = [*starts[1:], starts[-1] + timedelta(seconds=step_s)]
    events = await parts.store.grid.events(site_id, now, since=starts[0])
    site = with_grid(configured, await parts.store.grid.node_limits(site_id), events)
    evses = [(e.station_id, e.ocpp_evse_id) for e in site.evses]
    samples = await parts.store.grid.power_samples(
        sorted({s for s, _ in evses}), starts[0] - grid.MAX_HOLD, now + timedelta(seconds=1))
    root = site.root
    household = sample(root.load_kw, starts, ends, "max", 0.0)
    limit = root.limit_over(starts, ends)

    def kw(values: np.ndarray | list[float]) -> list[float | None]:
        return [round(float(v), 3) if np.isfinite(v) else None for v in values]

    return SiteLoad(
        site_id=site_id, node=root.id, now=now, step_s=step_s, starts=starts,
        ev_kw=[round(v, 3) for v in grid.ev_load(samples, evses, starts)],
        household_kw=kw(household), limit_kw=kw(limit),
    )
