"""Measured EV load over time, from the stored meter values (the site-load chart's past).

A free function over the pool rather than a repository on `Store`: it only reads
`meter_values`, which `MeterWriter` owns.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta

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
    pool: asyncpg.Pool, evses: Iterable[tuple[str, int]], starts: Sequence[datetime],
    until: datetime, step_s: int, hold_s: float,
) -> list[float]:
    """Watts per bucket (`starts`, aligned to the epoch, `step_s` long): for each of `evses`
    (station id, OCPP evse id) the mean of its whole-meter power samples in the bucket,
    summed over them. Stations meter every few minutes, not in every bucket: an EVSE's
    last value holds for up to `hold_s` (then it counts as 0, e.g. a station gone quiet)."""
    if not starts:
        return []
    wanted = set(evses)
    hold = timedelta(seconds=hold_s)
    rows = await pool.fetch(_QUERY, sorted({s for s, _ in wanted}), starts[0] - hold, until,
                            float(step_s))
    by_evse: dict[tuple[str, int], dict[datetime, float]] = defaultdict(dict)
    for r in rows:
        key = (r["station_id"], r["evse_id"])
        if key in wanted:
            by_evse[key][r["bucket"]] = float(r["watts"])
    out = [0.0] * len(starts)
    for samples in by_evse.values():
        seen = sorted(samples)
        last_at, last_w, j = None, 0.0, 0
        for i, start in enumerate(starts):
            while j < len(seen) and seen[j] <= start:
                last_at, last_w = seen[j], samples[seen[j]]
                j += 1
            if last_at is not None and start - last_at <= hold:
                out[i] += last_w
    return out
