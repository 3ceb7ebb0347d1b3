"""Splitting a portfolio's commitment across its sites, and following it.

A share is in proportion to what each site can deliver, never above it; when a site falls
short, it keeps what it delivers and the rest moves to the others' headroom.
Tracking compares the commitment with what the meters show against the baseline.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass

EPS = 1e-9


def split(target_kw: float, capacity_kw: Mapping[str, float]) -> dict[str, float]:
    """Each site's share of `target_kw`: proportional to its capacity, capped by it (the
    excess of a capped site goes to the others, again by capacity). The shares sum to
    min(target, total capacity)."""
    caps = {k: max(0.0, float(v)) for k, v in capacity_kw.items()}
    out = dict.fromkeys(caps, 0.0)
    left = max(0.0, float(target_kw))
    free = {k for k, v in caps.items() if v > EPS}
    while left > EPS and free:
        weight = sum(caps[k] for k in free)
        take = {k: left * caps[k] / weight for k in free}
        full = {k for k in free if out[k] + take[k] >= caps[k] - EPS}
        if not full:
            for k in free:
                out[k] += take[k]
            break
        for k in full:
            left -= caps[k] - out[k]
            out[k] = caps[k]
        free -= full
    return out


@dataclass(frozen=True)
class SiteDelivery:
    """One site over the last minutes: its share and what it delivered (baseline minus
    metered for a reduction)."""

    site_id: str
    share_kw: float
    delivered_kw: float
    capacity_kw: float


def short_sites(deliveries: Sequence[SiteDelivery], tolerance: float = 0.1,
                tolerance_kw: float = 1.0) -> list[str]:
    """Sites delivering less than their share by more than the tolerance (10% or 1 kW)."""
    return [d.site_id for d in deliveries
            if d.delivered_kw < d.share_kw - max(tolerance * d.share_kw, tolerance_kw)]


def resplit(target_kw: float, deliveries: Sequence[SiteDelivery], tolerance: float = 0.1,
            tolerance_kw: float = 1.0) -> dict[str, float]:
    """New shares after a shortfall: a short site keeps what it shows it delivers, the rest
    of the target is split over the others by their capacity. The shares still sum to the
    target while the others have the headroom."""
    short = set(short_sites(deliveries, tolerance, tolerance_kw))
    if short == {d.site_id for d in deliveries}:  # nobody to hand it to: shares stand
        return {d.site_id: d.share_kw for d in deliveries}
    kept = {d.site_id: max(0.0, min(d.delivered_kw, d.capacity_kw, d.share_kw))
            for d in deliveries if d.site_id in short}
    rest = max(0.0, target_kw - sum(kept.values()))
    others = split(rest, {d.site_id: d.capacity_kw for d in deliveries if d.site_id not in short})
    left = rest - sum(others.values())
    if left > EPS:  # more than the others can hold: the short sites keep the remainder
        extra = split(left, {d.site_id: d.capacity_kw - kept[d.site_id]
                             for d in deliveries if d.site_id in short})
        kept = {k: v + extra.get(k, 0.0) for k, v in kept.items()}
    return {d.site_id: kept.get(d.site_id, others.get(d.site_id, 0.0)) for d in deliveries}


@dataclass(frozen=True)
class TrackingPoint:
    """One minute of a dispatch: committed and delivered response, and the error."""

    committed_kw: float
    baseline_kw: float
    metered_kw: float

    def delivered_kw(self, direction: str) -> float:
        d = self.baseline_kw - self.metered_kw
        return d if direction == "down" else -d

    def error_kw(self, direction: str) -> float:
        """Committed minus delivered: positive when short."""
        return self.committed_kw - self.delivered_kw(direction)


def tracking_error(points: Sequence[TrackingPoint], direction: str) -> tuple[float, float]:
    """(mean absolute error, worst shortfall) over the points, kW."""
    if not points:
        return 0.0, 0.0
    errors = [p.error_kw(direction) for p in points]
    return (sum(abs(e) for e in errors) / len(errors), max(0.0, max(errors)))
