"""Grid emission factors and what they make of metered energy (issue 14): the figures an
aggregator reports for carbon trading, and the factors the engine weighs beside price.

Pure: series in, figures out. A factor holds per interval: set through the API for a
site (stored), else the site file's typical day (`[carbon] kg_per_kwh_daily`), else
unknown. Unknown is not zero: a total over energy drawn while the factor was unknown is
None rather than an understatement. The engine needs a number in every slot, so for it
gaps take the mean of the known factors (neutral: they neither attract nor repel load).

Emissions avoided are against a baseline: for a settled event the event's baseline, for
a session its uncontrolled counterfactual, charging at its own highest metered power from
plug-in until it has drawn what it drew (what the car would have done without control).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from csms.store.carbon import FactorInterval
from smart_charging.model import Carbon, Series, StepSeries

MAX_KG_PER_KWH = 3.0  # above any grid's factor (lignite ~1.2): a larger value is a typo
MINUTE = timedelta(minutes=1)


@dataclass(frozen=True)
class Emissions:
    energy_kwh: float
    emissions_kg: float | None  # None: energy drawn while the factor was unknown
    baseline_kwh: float
    baseline_emissions_kg: float | None
    avoided_kg: float | None  # baseline emissions minus emissions


def factor_at(times: Sequence[datetime], configured: Series | None,
              stored: Sequence[FactorInterval]) -> list[float]:
    """The factor holding at each time: stored, else configured, else NaN."""
    base = [math.nan] * len(times) if configured is None or not times else [
        float(v) for v in configured.over(times, [t + MINUTE for t in times], "max")]
    out = []
    for t, b in zip(times, base, strict=True):
        hit = next((i.kg_per_kwh for i in stored if i.start <= t < i.end), None)
        out.append(b if hit is None else hit)
    return out


def for_engine(configured: Carbon, stored: Sequence[FactorInterval], start: datetime,
               end: datetime) -> Carbon:
    """The site's Carbon with stored intervals over the configured day, as one step series
    from `start` to `end`; gaps take the mean of the known factors."""
    if not stored:
        return configured
    edges = {start} | {t for i in stored for t in (i.start, i.end) if start <= t < end}
    if isinstance(configured.factors, StepSeries):
        edges |= {t for t in configured.factors.times if start <= t < end}
    elif configured.factors is not None:  # a typical day: its steps inside the span
        edges |= {t for t in configured.factors.to_steps(start, end).times if start <= t < end}
    times = sorted(edges)
    values = factor_at(times, configured.factors, stored)
    known = [v for v in values if not math.isnan(v)]
    fill = sum(known) / len(known) if known else 0.0
    values = [fill if math.isnan(v) else v for v in values]
    return replace(configured, factors=StepSeries(tuple(times), tuple(values)))


def uncontrolled(power_kw: float, energy_kwh: float, minutes: int) -> list[float]:
    """kW per minute of a car charging at `power_kw` from the first minute until it has
    drawn `energy_kwh` (or the minutes run out): its draw without control."""
    out, left = [], max(energy_kwh, 0.0)
    for _ in range(minutes):
        kw = min(power_kw, left * 60.0) if power_kw > 0 else 0.0
        out.append(kw)
        left -= kw / 60.0
    return out


def emissions(metered_kw: Sequence[float], baseline_kw: Sequence[float],
              factors: Sequence[float], minutes_per_value: float = 1.0) -> Emissions:
    """Energy and emissions of a metered and a baseline series against per-value factors."""
    hours = minutes_per_value / 60.0

    def kg(series: Sequence[float]) -> float | None:
        total = 0.0
        for kw, f in zip(series, factors, strict=True):
            if kw == 0:
                continue
            if math.isnan(f):
                return None
            total += kw * hours * f
        return total

    actual, base = kg(metered_kw), kg(baseline_kw)
    return Emissions(
        round(sum(metered_kw) * hours, 3), _r(actual), round(sum(baseline_kw) * hours, 3),
        _r(base), None if actual is None or base is None else round(base - actual, 3))


def _r(value: float | None) -> float | None:
    return None if value is None else round(value, 3)


@dataclass(frozen=True)
class SessionWindow:
    """One session over a window: what it drew, what it would have drawn uncontrolled,
    and the difference, its measured contribution (kWh not drawn in the window)."""

    emissions: Emissions
    contribution_kwh: float


def minute_load(samples: Sequence[tuple[datetime, float]], start: datetime, minutes: int,
                ended: datetime | None, hold: timedelta = timedelta(minutes=15)) -> list[float]:
    """kW per minute from `start`: each sample (W) holds until the next one, the session's
    end, or `hold` at most (a station that stops reporting is not assumed to draw)."""
    out, i = [], -1
    for k in range(minutes):
        t = start + k * MINUTE
        while i + 1 < len(samples) and samples[i + 1][0] <= t:
            i += 1
        if i < 0:
            out.append(0.0)
            continue
        ts, watts = samples[i]
        until = ts + hold if ended is None else min(ts + hold, ended)
        out.append(max(watts, 0.0) / 1000.0 if t < until or t == ts else 0.0)
    return out


def session_window(samples: Sequence[tuple[datetime, float]], started: datetime | None,
                   ended: datetime | None, window_start: datetime, until: datetime,
                   factors: Sequence[float]) -> SessionWindow:
    """A session's figures over the window from `window_start`, one minute per factor.

    The counterfactual charges at the session's highest metered power from the window's
    start (or its plug-in, if later) until it has drawn what it really drew from the
    window's start to its end (or `until`): energy it needed, as the meters prove."""
    n = len(factors)
    last = min(ended or until, until)
    total = max(n, math.ceil((last - window_start) / MINUTE))
    load = minute_load(samples, window_start, total, ended)
    p_ref = max((w for _, w in samples), default=0.0) / 1000.0
    offset = 0 if started is None else min(n, max(0, math.ceil((started - window_start)
                                                              / MINUTE)))
    baseline = [0.0] * offset + uncontrolled(p_ref, sum(load) / 60.0, n - offset)
    e = emissions(load[:n], baseline, factors)
    return SessionWindow(e, round(max(0.0, e.baseline_kwh - e.energy_kwh), 3))


def total(parts: Sequence[Emissions]) -> Emissions:
    """Several series' figures added up (kg unknown where any part's is)."""

    def add(values: list[float | None]) -> float | None:
        return None if any(v is None for v in values) else _r(sum(v or 0.0 for v in values))

    return Emissions(
        round(sum(p.energy_kwh for p in parts), 3), add([p.emissions_kg for p in parts]),
        round(sum(p.baseline_kwh for p in parts), 3),
        add([p.baseline_emissions_kg for p in parts]), add([p.avoided_kg for p in parts]))
