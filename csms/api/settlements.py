"""Settling a grid event against a baseline (issue 14): baseline from the site's own meter
data on similar days, delivered energy per 15-minute interval, payment and penalty by the
programme's terms (csms/settlement.py), recorded in the audit log.

Every settlement carries its carbon figures (energy, emissions, emissions avoided against
the baseline, csms/carbon.py), for the site and for each session under the node, with the
session's measured contribution. Naming a portfolio also writes the revenue-split ledger
(csms/ledger.py): one record per payee, each with its own audit entry, stored in the
same transaction as the settlement's.

The figures are reproducible: the same stored samples, method and terms give the same
settlement, and the audit entry keeps the method, terms and totals.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import date, datetime, timedelta
from decimal import Decimal
from typing import Annotated, Literal

import asyncpg
from fastapi import APIRouter, HTTPException, status
from pydantic import Field

from csms import carbon, grid, ledger, settlement
from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.grid import EventDep, configured
from csms.api.models import Body, Model
from csms.portfolios import PORTFOLIO_ID
from csms.store.carbon import LedgerEntry
from csms.store.grid import GridEvent
from csms.store.portfolios import Portfolio
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
    portfolio: str | None = Field(None, pattern=PORTFOLIO_ID, description=(
        "write the revenue-split ledger of this portfolio (the site must be a member, "
        "its revenue shares set)"))
    programme: str = Field("", pattern=r"^[A-Za-z0-9_.-]{0,64}$",
                           description="whose revenue shares apply ('': the portfolio's)")
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")


class IntervalOut(Model):
    start: datetime
    baseline_kw: float
    metered_kw: float
    delivered_kw: float
    kg_per_kwh: float | None = None


class CarbonOut(Model):
    """Energy and emissions in the window, metered and baseline (kg: null where energy
    was drawn while the emission factor was unknown)."""

    energy_kwh: float
    emissions_kg: float | None
    baseline_kwh: float
    baseline_emissions_kg: float | None
    avoided_kg: float | None


class SessionOut(CarbonOut):
    """A session under the node during the event: pseudonymous, never an id token."""

    session: str
    driver: str | None
    opted_out: bool
    contribution_kwh: float = Field(description="kWh not drawn in the window against its "
                                    "uncontrolled counterfactual (0 when opted out)")


class LedgerRecordOut(Model):
    party: str
    payee: str
    contribution_kwh: float | None
    amount: Decimal
    currency: str
    audit_seq: int


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
    carbon: CarbonOut
    sessions: list[SessionOut]
    ledger: list[LedgerRecordOut] = Field(default_factory=list)


def interval_means(per_minute: list[float], n: int) -> list[float]:
    """Per 15-minute interval, the mean of its minutes (a NaN minute stays NaN)."""
    return [sum(per_minute[i * 15:(i + 1) * 15]) / 15 for i in range(n)]


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
    return interval_means(load, n), len(samples)


@dataclass(frozen=True)
class DayBaseline:
    """A node's baseline over n intervals from a start, from similar days, with what the
    meters show over the same intervals."""

    baseline_kw: list[float]
    metered_kw: list[float]
    days: tuple[date, ...]
    applied: float  # the same-day adjustment (kW, or a factor; 0: none)


async def similar_day_baseline(parts: Parts, site: Site, node: str, start: datetime, n: int,
                               method: settlement.BaselineMethod, now: datetime
                               ) -> DayBaseline:
    """The mean of the N most recent similar days with meter data under `node` (days with
    a grid event on it in the window or the adjustment hours before are no baseline), with
    the method's same-day adjustment; 409 when no such day exists."""
    before = math.ceil(timedelta(hours=method.adjustment_hours) / INTERVAL)
    history = await parts.store.grid.events(
        site.id, now, since=start - timedelta(days=method.lookback_days + 1), limit=1000)
    series: dict[date, list[float]] = {}
    for back in range(1, method.lookback_days + 1):
        shifted = start - timedelta(days=back)
        if _overlaps(history, node, shifted - before * INTERVAL, shifted + n * INTERVAL):
            continue  # an event day is no baseline
        kw, count = await _interval_kw(parts, site, node, shifted - before * INTERVAL,
                                       before + n)
        if count:
            series[(shifted + site.utc_offset).date()] = kw
    local_day = (start + site.utc_offset).date()
    days = settlement.similar_days(local_day, set(), set(series), method)
    if not days:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            "no similar day with meter data to build a baseline from")
    profile = settlement.mean_profile([series[d] for d in days])
    actual, _ = await _interval_kw(parts, site, node, start - before * INTERVAL, before + n)
    baseline, applied = settlement.adjusted(
        profile[before:], _mean(profile[:before]), _mean(actual[:before]), method)
    return DayBaseline(baseline, actual[before:], tuple(days), applied)



async def interval_factors(parts: Parts, site_id: str, start: datetime, n: int
                           ) -> tuple[list[float], list[float]]:
    """The site's grid emission factor (kg/kWh) per minute and per 15-minute interval
    from `start` (stored, else configured, else NaN, which stays NaN in the mean)."""
    minutes = [start + k * carbon.MINUTE for k in range(n * 15)]
    stored = await parts.store.carbon.factors(site_id, start, minutes[-1] + carbon.MINUTE)
    configured_carbon = parts.carbon.get(site_id)
    per_minute = carbon.factor_at(minutes, None if configured_carbon is None
                                  else configured_carbon.factors, stored)
    return per_minute, interval_means(per_minute, n)

def _overlaps(events: list[GridEvent], node: str, start: datetime, end: datetime) -> bool:
    return any(e.node == node and e.start < end and e.effective_end > start for e in events)


@router.post("/{site_id}/events/{event_id}/settlement", responses={
    403: {"description": "a portfolio named by a caller who may not write portfolios"},
    404: {"description": "no such event, or no such portfolio"},
    409: {"description": "the event has not ended, or is shorter than one interval; the "
          "portfolio has no revenue shares, or this event is in its ledger already"},
    422: {"description": "bad body, or the site is not a member of the portfolio"}})
async def settle_event(event: EventDep, body: SettlementIn, who: Settler,
                       parts: PartsDep) -> SettlementOut:
    """Settle an ended event: baseline from similar days (event days excluded), delivery
    per 15-minute interval, payment and penalty, energy and emissions (site and each
    session); appended to the audit log. With `portfolio`: the revenue-split ledger too."""
    site = configured(parts, event.site_id)
    if body.portfolio is not None and not who.may(Permission.PORTFOLIOS_WRITE):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"role {who.role} may not write a "
                            "portfolio's ledger (needs permission portfolios:write)")
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
    found = await similar_day_baseline(parts, site, event.node, event.start, n, method, now)
    baseline, actual, days, applied = found.baseline_kw, found.metered_kw, found.days, found.applied
    terms = settlement.Terms(body.committed_kw, body.price_per_kwh, body.threshold,
                             body.penalty_per_kwh, body.pay_cap)
    result = settlement.settle([event.start + i * INTERVAL for i in range(n)],
                               INTERVAL / timedelta(hours=1), baseline, actual,
                               terms, body.direction, days, applied)
    per_minute, per_interval = await interval_factors(parts, site.id, event.start, n)
    site_carbon = carbon.emissions([i.metered_kw for i in result.intervals],
                                   [i.baseline_kw for i in result.intervals], per_interval, 15)
    sessions = await sessions_under(parts, site, event.node, event.start, now, per_minute)
    portfolio = None if body.portfolio is None else await _ledger_portfolio(
        parts, who, body.portfolio, body.programme, site, event)
    body_out = {
        "site": site.id, "event": event.id, "method": asdict(method), "terms": asdict(terms),
        "direction": body.direction, "baseline_days": [d.isoformat() for d in days],
        "delivered_kwh": result.delivered_kwh, "committed_kwh": result.committed_kwh,
        "performance": result.performance, "payment": result.payment,
        "penalty": result.penalty, "carbon": asdict(site_carbon)}
    if portfolio is not None:
        body_out |= {"portfolio": portfolio[0].id, "programme": body.programme}
    records: list[LedgerRecordOut] = []
    async with once_in_ledger(), parts.store.pool.acquire() as conn, conn.transaction():
        entry = await parts.store.audit.append(parts.audit_key, who.name,
                                               "settlement.computed", body_out, now, conn)
        if portfolio is not None:
            records = await write_ledger(
                parts, who, conn, portfolio, LedgerSource(body.programme, body.currency,
                                                          site.id, event_id=event.id),
                entry.seq, Decimal(str(result.net)), sessions, now)
    return SettlementOut(site_id=site.id, event_id=event.id, audit_seq=entry.seq,
                         intervals=[IntervalOut.model_validate(asdict(i) | {
                             "kg_per_kwh": None if math.isnan(f) else round(f, 4)})
                             for i, f in zip(result.intervals, per_interval, strict=True)],
                         baseline_days=list(days), adjustment=result.adjustment,
                         delivered_kwh=result.delivered_kwh,
                         committed_kwh=result.committed_kwh, performance=result.performance,
                         payment=result.payment, penalty=result.penalty, net=result.net,
                         carbon=CarbonOut.model_validate(site_carbon), sessions=sessions,
                         ledger=records)


async def sessions_under(parts: Parts, site: Site, node: str, start: datetime,
                         now: datetime, factors: list[float]) -> list[SessionOut]:
    """Each session under `node` that ran in the window of `factors` (one a minute from
    `start`), with its carbon figures and measured contribution, by pseudonym."""
    evses = set(grid.evses_under(site, node))
    window_end = start + len(factors) * carbon.MINUTE
    found = await parts.store.carbon.sessions(sorted({s for s, _ in evses}), start,
                                              window_end)
    key = ledger.key_from(parts.audit_key)
    out = []
    for tx in found:
        if (tx.station_id, tx.evse_id) not in evses:
            continue
        samples = await parts.store.carbon.session_samples(tx.station_id, tx.transaction_id,
                                                           now)
        w = carbon.session_window(samples, tx.started_at, tx.ended_at, start, now, factors)
        session = ledger.session_pseudonym(key, tx.station_id, tx.transaction_id)
        out.append(SessionOut(
            **asdict(w.emissions), session=session, opted_out=tx.charge_now,
            driver=None if tx.id_token is None else ledger.pseudonym(key, tx.id_token),
            contribution_kwh=0.0 if tx.charge_now else w.contribution_kwh))
    return sorted(out, key=lambda s: s.session)


async def _ledger_portfolio(parts: Parts, who: Caller, portfolio_id: str, programme: str,
                            site: Site, event: GridEvent
                            ) -> tuple[Portfolio, ledger.Shares]:
    """The portfolio whose ledger a settlement writes, and its shares; or why not."""
    found = await parts.store.portfolios.get(portfolio_id)
    if found is None or not who.sees_portfolio(portfolio_id):
        raise not_found(f"portfolio {portfolio_id}")
    if site.id not in {m.site_id for m in found.members}:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"site {site.id} is not a member of portfolio {portfolio_id}")
    shares = await revenue_shares(parts, portfolio_id, programme)
    if await parts.store.carbon.has_ledger(portfolio_id, site.id, event.id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"event {event.id} is already in the "
                            f"ledger of portfolio {portfolio_id}")
    return found, shares


async def revenue_shares(parts: Parts, portfolio_id: str, programme: str) -> ledger.Shares:
    """The shares a ledger is split by (the programme's, else the portfolio's); 409
    without."""
    shares = await parts.store.carbon.shares(portfolio_id, programme)
    if shares is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"portfolio {portfolio_id} has no "
                            f"revenue shares for programme {programme!r} (PUT them first)")
    return ledger.Shares(*shares)


@dataclass(frozen=True)
class LedgerSource:
    """What a site's ledger records come from: a site event's settlement, or a portfolio
    dispatch's (exactly one of the two ids)."""

    programme: str
    currency: str
    site_id: str
    event_id: int | None = None
    dispatch_id: int | None = None


@asynccontextmanager
async def once_in_ledger() -> AsyncIterator[None]:
    """409, not a 500, when a concurrent settlement wrote the same ledger first (the
    unique indexes of ledger_entries; the whole transaction is rolled back)."""
    try:
        yield
    except asyncpg.UniqueViolationError:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            "already in the portfolio's ledger") from None


async def write_ledger(parts: Parts, who: Caller, conn: asyncpg.Connection,
                       portfolio: tuple[Portfolio, ledger.Shares], source: LedgerSource,
                       settlement_seq: int, net: Decimal, sessions: list[SessionOut],
                       now: datetime) -> list[LedgerRecordOut]:
    """Split one site's net, and store and audit each record (in the settlement's
    transaction)."""
    owner, shares = portfolio
    by_driver: dict[str, float] = {}
    for s in sessions:
        if not s.opted_out and s.contribution_kwh > 0:
            payee = s.driver or s.session
            by_driver[payee] = by_driver.get(payee, 0.0) + s.contribution_kwh
    records = ledger.split(net, shares, owner.id, owner.operator,
                           [ledger.Contribution(p, k) for p, k in sorted(by_driver.items())])
    origin = ({"event": source.event_id} if source.event_id is not None
              else {"dispatch": source.dispatch_id})
    out = []
    for r in records:
        audited = await parts.store.audit.append(parts.audit_key, who.name, "ledger.recorded", {
            "portfolio": owner.id, "programme": source.programme, "site": source.site_id,
            **origin, "settlement_seq": settlement_seq, "party": r.party,
            "payee": r.payee, "contribution_kwh": r.contribution_kwh,
            "amount": str(r.amount), "currency": source.currency}, now, conn)
        await parts.store.carbon.add_entry(LedgerEntry(
            0, owner.id, source.programme, source.site_id, source.event_id,
            source.dispatch_id, settlement_seq, r.party, r.payee, r.contribution_kwh,
            r.amount, source.currency, audited.seq, now), conn)
        out.append(LedgerRecordOut(party=r.party, payee=r.payee,
                                   contribution_kwh=r.contribution_kwh, amount=r.amount,
                                   currency=source.currency, audit_seq=audited.seq))
    return out


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else 0.0
