"""What the grid side sets on a site (static limit overrides, limit and target events, a
tariff and emission factors set through the API), merged into the site and prices a plan
uses.

A plan reads these from the database every time (`plan_inputs`), so a limit, an event or a
tariff set through the API holds after a restart with nothing kept in memory.
"""

from __future__ import annotations

import asyncio
import math
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from csms import carbon
from csms.store import Store
from csms.store.grid import GridEvent
from smart_charging import Prices, Site, StepSeries, TimedLimit, prices_from_dict


@dataclass(frozen=True)
class PlanInputs:
    site: Site
    prices: Prices
    target_kw: StepSeries | None


def with_grid(site: Site, limits: dict[str, float], events: list[GridEvent]) -> Site:
    """The site with static limit overrides and every limit event as a TimedLimit."""
    nodes = []
    for n in site.nodes:
        timed = tuple(TimedLimit(e.start, e.effective_end, e.kw) for e in events
                      if e.node == n.id and e.kind == "limit")
        if n.id in limits or timed:
            n = replace(n, limit_kw=limits.get(n.id, n.limit_kw),
                        timed_limits=n.timed_limits + timed)
        nodes.append(n)
    return replace(site, nodes=tuple(nodes))


def target_series(events: list[GridEvent]) -> StepSeries | None:
    """The site EV power to follow (NaN where there is none); where targets overlap, the
    newest one counts."""
    targets = [e for e in events if e.kind == "target"]
    if not targets:
        return None
    edges = sorted({t for e in targets for t in (e.start, e.effective_end)})
    values = []
    for a in edges:
        now = [e for e in targets if e.start <= a < e.effective_end]
        values.append(max(now, key=lambda e: (e.created_at, e.id)).kw if now else math.nan)
    first = edges[0] - timedelta(days=1)
    return StepSeries((first, *edges), (math.nan, *values))


FACTOR_SPAN = timedelta(days=3)  # emission factors read for a plan: beyond any horizon


async def plan_inputs(store: Store, site: Site, prices: Prices, now: datetime) -> PlanInputs:
    """The site and prices as configured, with what was set through the API. A tariff set
    through the API keeps the site file's carbon weight; stored emission factors hold
    over the configured ones where set."""
    limits, events, stored, factors = await asyncio.gather(  # small reads, one round trip
        store.grid.node_limits(site.id), store.grid.in_force(site.id, now),
        store.grid.tariff(site.id), store.carbon.factors(site.id, now, now + FACTOR_SPAN))
    chosen = prices if stored is None else replace(prices_from_dict(stored),
                                                   carbon=prices.carbon)
    return PlanInputs(with_grid(site, limits, events),
                      replace(chosen, carbon=carbon.for_engine(chosen.carbon, factors, now,
                                                               now + FACTOR_SPAN)),
                      target_series(events))
