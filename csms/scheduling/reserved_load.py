"""Load reserved for the EVSEs the engine cannot steer (idle ones under their
TxDefaultProfile, offline stations, rejected profiles), added to the site as non-EV load.

Named apart from `csms.reservations` (block H: a driver's reservation of an EVSE), which
the planner turns into one of these. Decisions only: no I/O, no clock.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import numpy as np

from csms.scheduling.limits import Limit
from smart_charging import Node, Site, StepSeries
from smart_charging.model import PHASES, Series


@dataclass(frozen=True)
class Reservation:
    """An EVSE the engine does not steer, and what it may draw from `start` to `until`."""

    evse_id: str
    limit: Limit
    until: datetime
    reason: str  # idle | rejected | offline | uncontrolled
    start: datetime | None = None  # None: from now

    def begin(self, now: datetime) -> datetime:
        return now if self.start is None else max(now, self.start)

    def series_kw(self, now: datetime) -> StepSeries:
        begin = self.begin(now)
        points = sorted({begin, *(t for t in self.limit.breakpoints() if begin < t < self.until)})
        values = [self.limit.at(t) / 1000.0 for t in points]
        if begin > now:
            points, values = [now, *points], [0.0, *values]
        return StepSeries((*points, self.until), (*values, 0.0))

    def peak_kw(self, now: datetime) -> float:
        return self.limit.peak(self.begin(now), self.until) / 1000.0


def slot_ceil(t: datetime, slot_minutes: int) -> datetime:
    """The first slot boundary at or after `t` (slots are whole multiples of their length)."""
    step = timedelta(minutes=slot_minutes)
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    return epoch - ((epoch - t) // step) * step


def _steps(series: Series, now: datetime, end: datetime) -> StepSeries:
    return series if isinstance(series, StepSeries) else series.to_steps(now, end)


def _scaled(series: StepSeries, factor: float) -> StepSeries:
    return StepSeries(series.times, tuple(v * factor for v in series.values))


def _sum(parts: list[StepSeries]) -> StepSeries:
    """The step series of the sum, in one sweep over the steps: a site with thousands of
    reservations has as many distinct times (one per departure)."""
    before = 0.0  # each series' first value holds before its first time
    steps: dict[datetime, float] = {}
    for series in parts:
        before += series.values[0]
        steps.setdefault(series.times[0], 0.0)
        for t, a, b in zip(series.times[1:], series.values, series.values[1:], strict=False):
            steps[t] = steps.get(t, 0.0) + (b - a)
    times = sorted(steps)
    values = before + np.cumsum([steps[t] for t in times])
    return StepSeries(tuple(times), tuple(float(v) for v in values))


def with_reservations(site: Site, reservations: list[Reservation], now: datetime,
                      end: datetime) -> Site:
    """`site` with every reservation added as non-EV load on each node above its EVSE.

    Node load counts as balanced over three phases; a single-phase (or line-to-line)
    EVSE loads its own phase(s) harder, so each node with phase limits also gets the
    difference per phase, over time: a reservation that starts later (a car's
    departure) costs nothing now, and reservations spread over the phases offset.
    """
    if not reservations:
        return site
    extra: dict[str, list[StepSeries]] = {}
    extra_a: dict[str, dict[str, list[StepSeries]]] = {}
    for r in reservations:
        evse = site.evse(r.evse_id)
        series = r.series_kw(now)
        for node_id in site.path_to_root(evse.node):
            node = site.node(node_id)
            extra.setdefault(node_id, []).append(series)
            if node.phase_limit_a is None or not all(map(math.isfinite, series.values)):
                continue
            balanced = 1000.0 / (3 * node.voltage_ln_v)
            for p in PHASES:
                amps = _scaled(series, evse.phase_amps_per_kw(p) - balanced)
                extra_a.setdefault(node_id, {}).setdefault(p, []).append(amps)
    nodes: list[Node] = []
    for n in site.nodes:
        if n.id not in extra:
            nodes.append(n)
            continue
        base = [] if n.load_kw is None else [_steps(n.load_kw, now, end)]
        phase_load = dict(n.phase_load_a)
        for p, parts in extra_a.get(n.id, {}).items():
            own = phase_load.get(p)
            phase_load[p] = _sum(parts + ([] if own is None else [_steps(own, now, end)]))
        nodes.append(replace(n, load_kw=_sum(base + extra[n.id]), phase_load_a=phase_load))
    return replace(site, nodes=tuple(nodes))
