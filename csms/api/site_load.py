"""A site's measured load over the last hours: what the dashboard's chart shows left of
"now" (the plan, GET /api/sites/{id}/plan, is what it shows right of it).

EV load is measured: the stations' Power.Active.Import samples, per bucket; a station
meters every few minutes, so an EVSE's last sample holds until its next one (at most
15 min). The household
(non-EV) load is not metered by the CSMS; it is the site's configured profile, the same
figure the scheduler plans with. The limit is the root node's configured limit.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated

import numpy as np
from fastapi import APIRouter, HTTPException, Query, status
from pydantic import Field

from csms.api.deps import PartsDep, not_found
from csms.api.models import Model
from csms.api.sites import SiteId
from csms.store.site_load import power_by_bucket
from smart_charging.model import sample

router = APIRouter(prefix="/api/sites", tags=["sites"])

MAX_BUCKETS = 2000
HOLD_S = 900.0  # a power sample stands for its EVSE until the next, for up to 15 min


class SiteLoad(Model):
    site_id: str
    node: str = Field(description="the root node (grid connection) the figures are for")
    now: datetime = Field(description="the CSMS clock's time of this answer")
    step_s: int
    starts: list[datetime] = Field(description="bucket starts, oldest first, up to now")
    ev_kw: list[float] = Field(description="measured: the site's EVSEs' mean power, summed "
                               "(an EVSE's last sample holds up to 15 min)")
    household_kw: list[float | None] = Field(description="the configured household profile")
    limit_kw: list[float | None] = Field(description="the root node's configured limit")


@router.get("/{site_id}/load", responses={404: {"description": "no such site"}})
async def site_load(
    site_id: SiteId, parts: PartsDep,
    hours: Annotated[float, Query(gt=0, le=168, description="how far back")] = 3.0,
    step_s: Annotated[int, Query(ge=10, le=86_400, description="bucket size")] = 300,
) -> SiteLoad:
    """EV load (measured), household load and limit per bucket, from `hours` ago to now."""
    if hours * 3600 / step_s > MAX_BUCKETS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["query", "step_s"], "type": "value_error",
            "msg": f"more than {MAX_BUCKETS} buckets: raise step_s or lower hours",
        }])
    site = parts.sites.get(site_id)
    if site is None:
        raise not_found(f"configuration for site {site_id}")
    now = parts.clock.now()
    first = int((now.timestamp() - hours * 3600) // step_s) * step_s
    starts = [datetime.fromtimestamp(t, now.tzinfo) for t in
              range(first, int(now.timestamp()) + 1, step_s)]
    ends = [*starts[1:], starts[-1] + timedelta(seconds=step_s)]
    watts = await power_by_bucket(
        parts.store.pool, [(e.station_id, e.ocpp_evse_id) for e in site.evses],
        starts, now + timedelta(microseconds=1), step_s, HOLD_S)
    root = site.root
    household = sample(root.load_kw, starts, ends, "max", 0.0)
    limit = root.limit_over(starts, ends)

    def kw(values: np.ndarray) -> list[float | None]:
        return [round(float(v), 3) if np.isfinite(v) else None for v in values]

    return SiteLoad(
        site_id=site_id, node=root.id, now=now, step_s=step_s, starts=starts,
        ev_kw=[round(w / 1000.0, 3) for w in watts],
        household_kw=kw(household), limit_kw=kw(limit),
    )
