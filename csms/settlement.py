"""Demand-response baselines and settlement (issue 14): what a site would have drawn
without the event, and what the meters prove it delivered against that.

Pure: series in, figures out; the API gathers the meter data (csms/api/settlements.py).
The method is a parameter because grid programmes differ: the mean of the N most recent
similar days (same day type, event days excluded), with an optional same-day adjustment
from the hours just before the event, scaled within a cap so an operator cannot inflate
the baseline by drawing more in the morning of the event.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date, datetime
from typing import Literal

Adjustment = Literal["none", "additive", "multiplicative"]


@dataclass(frozen=True)
class BaselineMethod:
    days: int = 5  # the N most recent similar days
    lookback_days: int = 30  # how far back similar days are looked for
    similar: Literal["day_type", "any"] = "day_type"  # weekday with weekday, weekend with weekend
    adjustment: Adjustment = "none"
    adjustment_hours: float = 2.0  # the window before the event the adjustment compares
    adjustment_cap: float = 0.2  # a multiplicative adjustment stays within 1 +- cap

    def __post_init__(self) -> None:
        if not 1 <= self.days <= self.lookback_days <= 90:
            raise ValueError("days must be 1 to lookback_days, lookback_days at most 90")
        if not 0 < self.adjustment_hours <= 12 or not 0 <= self.adjustment_cap <= 1:
            raise ValueError("adjustment_hours 0-12, adjustment_cap 0-1")


@dataclass(frozen=True)
class Terms:
    """What was committed and what it pays: the programme's rules for one event."""

    committed_kw: float  # the reduction (or increase) promised for the whole window
    price_per_kwh: float = 0.0  # paid per kWh delivered, up to `pay_cap` of the commitment
    threshold: float = 0.8  # performance under this: no payment, and the shortfall penalty
    penalty_per_kwh: float = 0.0  # per kWh short of the commitment, under the threshold
    pay_cap: float = 1.2  # delivery above 120% of the commitment is not paid


@dataclass(frozen=True)
class Interval:
    start: datetime
    baseline_kw: float
    metered_kw: float
    delivered_kw: float


@dataclass(frozen=True)
class Settlement:
    intervals: tuple[Interval, ...]
    baseline_days: tuple[date, ...]
    adjustment: float  # the additive kW or the multiplicative factor applied (0 / 1: none)
    delivered_kwh: float
    committed_kwh: float
    performance: float  # delivered / committed
    payment: float
    penalty: float
    net: float


def similar_days(event_day: date, excluded: set[date], available: set[date],
                 method: BaselineMethod) -> list[date]:
    """The N most recent days before `event_day` of the same type, not excluded (event
    days) and with data, newest first."""
    weekend = event_day.weekday() >= 5
    out: list[date] = []
    for back in range(1, method.lookback_days + 1):
        day = date.fromordinal(event_day.toordinal() - back)
        if day in excluded or day not in available:
            continue
        if method.similar == "day_type" and (day.weekday() >= 5) != weekend:
            continue
        out.append(day)
        if len(out) == method.days:
            break
    return out


def mean_profile(series: list[list[float]]) -> list[float]:
    """The interval-by-interval mean of equally long series."""
    if not series:
        return []
    return [sum(values) / len(series) for values in zip(*series, strict=True)]


def adjusted(baseline: list[float], baseline_before: float, actual_before: float,
             method: BaselineMethod) -> tuple[list[float], float]:
    """The same-day adjustment: the baseline moved (additive) or scaled (multiplicative,
    within the cap) by how the event day's hours before the event compare with the
    baseline days' same hours. Returns the baseline and the adjustment applied."""
    if method.adjustment == "additive":
        shift = actual_before - baseline_before
        return [max(0.0, b + shift) for b in baseline], shift
    if method.adjustment == "multiplicative":
        factor = actual_before / baseline_before if baseline_before > 1e-9 else 1.0
        factor = min(1 + method.adjustment_cap, max(1 - method.adjustment_cap, factor))
        return [b * factor for b in baseline], factor
    return baseline, 0.0


def settle(starts: list[datetime], interval_h: float, baseline_kw: list[float],
           metered_kw: list[float], terms: Terms, direction: Literal["down", "up"],
           baseline_days: tuple[date, ...] = (), adjustment: float = 0.0) -> Settlement:
    """Delivered = baseline - metered for a reduction (down), metered - baseline for an
    increase (up), per interval; paid and penalised by the terms."""
    if not len(starts) == len(baseline_kw) == len(metered_kw):
        raise ValueError("one baseline and one metered value per interval")
    sign = 1.0 if direction == "down" else -1.0
    intervals = tuple(Interval(t, round(b, 3), round(m, 3), round(sign * (b - m), 3))
                      for t, b, m in zip(starts, baseline_kw, metered_kw, strict=True))
    delivered = sum(i.delivered_kw for i in intervals) * interval_h
    committed = terms.committed_kw * interval_h * len(intervals)
    performance = delivered / committed if committed > 0 else 0.0
    paid_kwh = min(max(delivered, 0.0), committed * terms.pay_cap)
    payment = terms.price_per_kwh * paid_kwh if performance >= terms.threshold else 0.0
    penalty = terms.penalty_per_kwh * max(committed - max(delivered, 0.0), 0.0) \
        if performance < terms.threshold else 0.0
    return Settlement(intervals, baseline_days, adjustment, round(delivered, 3),
                      round(committed, 3), round(performance, 4), round(payment, 2),
                      round(penalty, 2), round(payment - penalty, 2))
