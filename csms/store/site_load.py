"""Measured EV load over time, from the stored meter values (the site-load chart's past).

A free function over the pool rather than a repository on `Store`: it only reads
`meter_values`, which `MeterWriter` owns.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import asyncpg

_QUERY = (
    "SELECT date_bin(make_interval(secs => $4), ts, 'epoch'::timestamptz) AS bucket,"
    " station_id, evse_id, avg(value) AS watts"
    " FROM meter_values"
    " WHERE measurand = 'Power.Active.Import' AND phase = '' AND station_id = ANY($1::text[])"
    " AND ts >= $2 AND ts < $3"
    " GROUP BY 1, 2, 3"
)


async def power_by_bucket(
    pool: asyncpg.Pool, evses: Iterable[tuple[str, int]], since: datetime, until: datetime,
    step_s: int,
) -> dict[datetime, float]:
    """Watts per `step_s` bucket (aligned to the epoch) in [since, until): for each of
    `evses` (station id, OCPP evse id) the mean of its whole-meter power samples in the
    bucket, summed. An EVSE with no sample in a bucket adds nothing (idle stations may not
    meter)."""
    wanted = set(evses)
    rows = await pool.fetch(_QUERY, sorted({s for s, _ in wanted}), since, until,
                            float(step_s))
    out: dict[datetime, float] = {}
    for r in rows:
        if (r["station_id"], r["evse_id"]) in wanted:
            out[r["bucket"]] = out.get(r["bucket"], 0.0) + float(r["watts"])
    return out
