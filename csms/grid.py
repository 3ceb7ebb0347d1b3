"""Grid events on a site: which nodes a grid token covers, and what the meters say came
of an event. How they enter a plan: `csms.scheduling.grid_inputs`. Why delivery is
measured the way it is: docs/decisions/0009-grid-events.md.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

import asyncpg

from csms.store import Store
from csms.store.grid import GridEvent
from smart_charging import Site
from smart_charging.model import sample

# Delivery: a power sample holds until the next one of its EVSE, the end of its
# transaction, or this long at most (a station that stops reporting is not assumed to draw)
MAX_HOLD = timedelta(minutes=15)
# The time the CSMS needs to re-plan and a station to apply a new profile and meter it:
# minutes above a limit within this much of the event's start do not break compliance
GRACE = timedelta(minutes=2)
# above a limit means above it by more than a class 2 meter's error (IEC 62053-21: 2%), at
# least 0.1 kW (rounding of readings)
LIMIT_TOLERANCE = 0.02
LIMIT_TOLERANCE_KW = 0.1
TARGET_TOLERANCE = 0.1  # a target is met if the mean absolute deviation is within 10% ...
TARGET_TOLERANCE_KW = 0.5  # ... or 0.5 kW, whichever is larger


def covers(granted: tuple[str, ...], site: Site, node_id: str) -> bool:
    """Does a grid token given `granted` ("SITE/NODE") act on `node_id` of `site`? A grant
    covers the node and everything beneath it: a DSO given the transformer controls the
    feeders under it."""
    path = set(site.path_to_root(node_id))
    return any(g.split("/", 1) == [site.id, n] for g in granted for n in path)


def audited(event: GridEvent) -> dict[str, object]:
    """What the audit log keeps of a dispatch (a grid event): no personal data."""
    return {"site": event.site_id, "event": event.id, "node": event.node, "kind": event.kind,
            "kw": event.kw, "start": event.start.isoformat(), "end": event.end.isoformat(),
            "reference": event.reference}


def holds_all_evses(site: Site, node_id: str) -> bool:
    return all(node_id in site.path_to_root(e.node) for e in site.evses)


def evses_under(site: Site, node_id: str) -> list[tuple[str, int]]:
    return [(e.station_id, e.ocpp_evse_id) for e in site.evses
            if node_id in site.path_to_root(e.node)]


# --------------------------------------------------------------------------- delivery


def ev_load(samples: list[asyncpg.Record], evses: list[tuple[str, int]],
            grid: list[datetime]) -> list[float]:
    """Metered EV power (kW) summed over `evses` at each time of `grid`."""
    wanted = set(evses)
    by_evse: dict[tuple[str, int], list[tuple[datetime, float, datetime | None]]] = {}
    for r in samples:
        key = (r["station_id"], r["evse_id"])
        if key in wanted:
            by_evse.setdefault(key, []).append((r["ts"], float(r["value"]), r["ended_at"]))
    total = [0.0] * len(grid)
    for rows in by_evse.values():
        i = -1
        for k, t in enumerate(grid):
            while i + 1 < len(rows) and rows[i + 1][0] <= t:
                i += 1
            if i < 0:
                continue
            ts, watts, ended = rows[i]
            until = ts + MAX_HOLD if ended is None else min(ts + MAX_HOLD, ended)
            if t < until or t == ts:
                total[k] += max(watts, 0.0) / 1000.0
    return total


def delivery(event: GridEvent, site: Site, samples: list[asyncpg.Record],
             now: datetime) -> dict[str, Any] | None:
    """What the meters say about the event's window so far (None before it starts)."""
    end = min(event.effective_end, now)
    if now < event.start or end <= event.start:
        return None
    step = max(timedelta(minutes=1), (end - event.start) / 5000)
    grid: list[datetime] = []
    t = event.start
    while t < end:
        grid.append(t)
        t += step
    ev = ev_load(samples, evses_under(site, event.node), grid)
    hours = step.total_seconds() / 3600.0
    out: dict[str, Any] = {
        "source": "meter_values",
        "window_start": event.start, "window_end": end,
        "final": end >= event.effective_end,
        "evses": len(evses_under(site, event.node)),
        "samples": len(samples),
        "max_kw": round(max(ev), 3),
        "mean_kw": round(sum(ev) / len(ev), 3),
        "energy_kwh": round(sum(ev) * hours, 3),
    }
    if event.kind == "limit":
        node = site.node(event.node)
        ends = [g + step for g in grid]
        non_ev = sample(node.load_kw, grid, ends, "max", 0.0)
        above = [g for g, e, h in zip(grid, ev, non_ev, strict=True)
                 if e + float(h) > event.kw + max(LIMIT_TOLERANCE * event.kw,
                                                   LIMIT_TOLERANCE_KW)]
        minutes = len(above) * step.total_seconds() / 60.0
        out["non_ev_kw_assumed"] = round(float(non_ev.mean()), 3)
        out["minutes_above_limit"] = round(minutes, 1)
        out["complied"] = all(g < event.start + GRACE for g in above)
    else:
        mad = sum(abs(e - event.kw) for e in ev) / len(ev)
        out["mean_abs_deviation_kw"] = round(mad, 3)
        out["complied"] = mad <= max(TARGET_TOLERANCE * abs(event.kw), TARGET_TOLERANCE_KW)
    return out


async def delivery_of(store: Store, event: GridEvent, site: Site,
                      now: datetime) -> dict[str, Any] | None:
    if now < event.start:
        return None
    stations = sorted({s for s, _ in evses_under(site, event.node)})
    samples = await store.grid.power_samples(
        stations, event.start - MAX_HOLD, min(event.effective_end, now))
    return delivery(event, site, samples, now)
