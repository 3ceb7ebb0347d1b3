"""Settling a grid event against a baseline (issue 14): baseline from the site's own meter
data on similar days, delivered energy per 15-minute interval, payment and penalty by the
programme's terms (csms/settlement.py), recorded in the audit log.

The figures are reproducible: the same stored samples, method and terms give the same
settlement, and the audit entry keeps the method, terms and totals.
"""

from __future__ import annotations

import math
from dataclasses import asdict
from datetime import date, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import Field

from csms import grid, settlement
from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep
from csms.api.grid import EventDep, configured
from csms.api.models import Body, Model
from csms.store.grid import GridEvent
from smart_charging.model import Site

router = APIRouter(prefix="/api/sites", tags=["grid"])

INTERVAL = timedelta(minutes=15)
Settler = Annotated[Caller, require(Permission.LIMITS)]


class SettlementIn(Body):
    committed_kw: float = Field(ge=0, le=1e6, allow_inf_nan=False,
                                description="the reduction (or increase) promised")
    direction: Literal["down", "up"] = "down"
    price_per_kwh: float = Field(0.0, ge=0, le=1e4, allow_inf_nan=False)
    threshold: float = Field(0.8, ge=0, le=2, allow_inf_nan=False)
    penalty_per_kwh: float = Field(0.0, ge=0, le=1e4, allow_inf_nan=False)
    pay_cap: float = Field(1.2, ge=0, le=10, allow_inf_nan=False)
    baseline_days: int = Field(5, ge=1, le=30, description="the N most recent similar days")
    lookback_days: int = Field(30, ge=1, le=90)
    similar: Literal["day_type", "any"] = "day_type"
    adjustment: settlement.Adjustment = "none"
    adjustment_hours: float = Field(2.0, gt=0, le=12, allow_inf_nan=False)
    adjustment_cap: float = Field(0.2, ge=0, le=1, allow_inf_nan=False)


class IntervalOut(Model):
    start: datetime
    baseline_kw: float
    metered_kw: float
    delivered_kw: float


class SettlementOut(Model):
    site_id: str
    event_id: int
    audit_seq: int
    intervals: list[IntervalOut]
    baseline_days: list[date]
    adjustment: float
    delivered_kwh: float
    committed_kwh: float
    performance: float
    payment: float
    penalty: float
    net: float


async def _interval_kw(parts: Parts, site: Site, node: str, start: datetime,
                       n: int) -> tuple[list[float], int]:
    """Metered EV kW under `node`, the mean of each 15-minute interval from `start`, and
    how many samples stood behind it."""
    evses = grid.evses_under(site, node)
    stations = sorted({s for s, _ in evses})
    samples = await parts.store.grid.power_samples(stations, start - grid.MAX_HOLD,
                                                   start + n * INTERVAL)
    minutes = [start + timedelta(minutes=k) for k in range(n * 15)]
    load = grid.ev_load(samples, evses, minutes)
    return [sum(load[i * 15:(i + 1) * 15]) / 15 for i in range(n)], len(samples)


def _overlaps(events: list[GridEvent], node: str, start: datetime, end: datetime) -> bool:
    return any(e.node == node and e.start < end and e.effective_end > start for e in events)


@router.post("/{site_id}/events/{event_id}/settlement", responses={
    404: {"description": "no such event"},
    409: {"description": "the event has not ended, or is shorter than one interval"}})
async def settle_event(event: EventDep, body: SettlementIn, who: Settler,
                       parts: PartsDep) -> SettlementOut:
    """Settle an ended event: baseline from similar days (event days excluded), delivery
    per 15-minute interval, payment and penalty; appended to the audit log."""
    site = configured(parts, event.site_id)
    now = parts.clock.now()
    end = event.effective_end
    if end > now:
        raise HTTPException(status.HTTP_409_CONFLICT, f"event {event.id} has not ended")
    n = math.floor((end - event.start) / INTERVAL)
    if n < 1:
        raise HTTPException(status.HTTP_409_CONFLICT, "the event is shorter than 15 minutes")
    method = settlement.BaselineMethod(
        days=min(body.baseline_days, body.lookback_days), lookback_days=body.lookback_days,
        similar=body.similar, adjustment=body.adjustment,
        adjustment_hours=body.adjustment_hours, adjustment_cap=body.adjustment_cap)
    before = math.ceil(timedelta(hours=method.adjustment_hours) / INTERVAL)
    history = await parts.store.grid.events(
        site.id, now, since=event.start - timedelta(days=method.lookback_days + 1),
        limit=1000)
    others = [e for e in history if e.id != event.id]
    series: dict[date, list[float]] = {}
    for back in range(1, method.lookback_days + 1):
        shifted = event.start - timedelta(days=back)
        if _overlaps(others, event.node, shifted - before * INTERVAL, shifted + n * INTERVAL):
            continue  # an event day is no baseline
        kw, count = await _interval_kw(parts, site, event.node, shifted - before * INTERVAL,
                                       before + n)
        if count:
            series[(shifted + site.utc_offset).date()] = kw
    local_day = (event.start + site.utc_offset).date()
    days = settlement.similar_days(local_day, set(), set(series), method)
    if not days:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            "no similar day with meter data to build a baseline from")
    profile = settlement.mean_profile([series[d] for d in days])
    actual, _ = await _interval_kw(parts, site, event.node,
                                   event.start - before * INTERVAL, before + n)
    baseline, applied = settlement.adjusted(
        profile[before:], _mean(profile[:before]), _mean(actual[:before]), method)
    terms = settlement.Terms(body.committed_kw, body.price_per_kwh, body.threshold,
                             body.penalty_per_kwh, body.pay_cap)
    result = settlement.settle([event.start + i * INTERVAL for i in range(n)],
                               INTERVAL / timedelta(hours=1), baseline, actual[before:],
                               terms, body.direction, tuple(days), applied)
    entry = await parts.store.audit.append(parts.audit_key, who.name, "settlement.computed", {
        "site": site.id, "event": event.id, "method": asdict(method), "terms": asdict(terms),
        "direction": body.direction, "baseline_days": [d.isoformat() for d in days],
        "delivered_kwh": result.delivered_kwh, "committed_kwh": result.committed_kwh,
        "performance": result.performance, "payment": result.payment,
        "penalty": result.penalty}, now)
    return SettlementOut(site_id=site.id, event_id=event.id, audit_seq=entry.seq,
                         intervals=[IntervalOut.model_validate(i) for i in result.intervals],
                         baseline_days=list(days), adjustment=result.adjustment,
                         delivered_kwh=result.delivered_kwh,
                         committed_kwh=result.committed_kwh, performance=result.performance,
                         payment=result.payment, penalty=result.penalty, net=result.net)


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
