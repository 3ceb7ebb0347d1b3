"""Settling a portfolio's dispatch (issue 14): what the aggregator is paid for.

The grid settles the portfolio, not each site: the commitment, the performance ratio, the
payment at the invitation's price and the shortfall penalty are the whole portfolio's,
whatever its re-splits moved between members. The baseline method is the programme's
(`[vpp.programmes.NAME] baseline`): the mean of similar days from stored meter data (with
its same-day adjustment), or the portfolio's own plan without the event (the forecast's
P50 stored with the offer). Both are reproducible from stored data; each settlement is
appended to the audit log. Site events keep their own settlement (csms/api/settlements.py),
which is what a site operator is paid by.

With `ledger`, the settlement also writes the portfolio's revenue-split ledger: the net is
apportioned over the member sites (a payment by what each delivered, a penalty by what
each fell short of its share: csms/ledger.py `apportion`), and each site's part is split
between aggregator, site operator and the drivers who took part, by the shares the
portfolio's managers set for the programme. Once per dispatch; in the settlement's
transaction.
"""

from __future__ import annotations

import math
from datetime import date, datetime
from decimal import Decimal
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, status
from pydantic import Field

from csms import carbon, dispatch, ledger, settlement
from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep
from csms.api.models import Body, Model
from csms.api.settlements import (
    INTERVAL,
    CarbonOut,
    LedgerRecordOut,
    LedgerSource,
    SessionOut,
    interval_factors,
    interval_means,
    once_in_ledger,
    revenue_shares,
    sessions_under,
    similar_day_baseline,
    write_ledger,
)
from csms.api.vpp import PortfolioDep, dispatch_of

router = APIRouter(tags=["vpp"])
Settler = Annotated[Caller, require(Permission.VPP)]


class DispatchSettlementIn(Body):
    baseline: Literal["similar_days", "plan"] | None = Field(
        None, description="the programme's method unless given (both are audited)")
    ledger: bool = Field(False, description="also write the revenue-split ledger (once "
                         "per dispatch; the portfolio's revenue shares must be set)")
    currency: str = Field("CNY", pattern=r"^[A-Z]{3}$")


class DispatchIntervalOut(Model):
    start: datetime
    committed_kw: float
    baseline_kw: float
    metered_kw: float
    delivered_kw: float


class MemberSettlementOut(Model):
    member: str
    site_id: str
    node: str
    baseline_days: list[date]
    share_kwh: float = Field(description="its share over the window, re-splits included")
    delivered_kwh: float
    performance: float = Field(description="delivered / share (0 without a share)")
    carbon: CarbonOut


class SiteLedgerRecordOut(LedgerRecordOut):
    site_id: str


class DispatchSettlementOut(Model):
    portfolio_id: str
    dispatch_id: int
    programme: str
    direction: str
    baseline: str
    audit_seq: int
    intervals: list[DispatchIntervalOut]
    members: list[MemberSettlementOut]
    delivered_kwh: float
    committed_kwh: float
    performance: float
    price_per_kwh: float
    payment: float
    penalty: float
    net: float
    carbon: CarbonOut
    ledger: list[SiteLedgerRecordOut] = Field(default_factory=list)


@router.post("/api/portfolios/{portfolio_id}/dispatches/{dispatch_id}/settlement",
             responses={403: {"description": "the role may not settle dispatches"},
                        404: {"description": "no such portfolio or dispatch"},
                        409: {"description": "the dispatch has not ended, is shorter than "
                              "15 minutes, its programme is no longer configured, or a "
                              "member has no similar day to build a baseline from; with "
                              "ledger: no revenue shares, or already in the ledger"},
                        422: {"description": "bad body"}})
async def settle_dispatch(portfolio: PortfolioDep, body: DispatchSettlementIn, who: Settler,
                          parts: PartsDep,
                          dispatch_id: Annotated[int, Path(ge=1, le=2**62)]
                          ) -> DispatchSettlementOut:
    """Settle an ended dispatch for the whole portfolio: per 15-minute interval the
    baseline, the metered EV load and the delivery; the performance against the
    commitment, the payment at the invitation's price and the programme's penalty under
    its threshold; each member's delivery against its share; energy and emissions.
    Appended to the audit log (`dispatch.settled`). With `ledger`: the revenue-split
    ledger too, one record per payee and site, each audited (`ledger.recorded`)."""
    d, inv = await dispatch_of(parts, portfolio, dispatch_id)
    now = parts.clock.now()
    if d.end > now:
        raise HTTPException(status.HTTP_409_CONFLICT, f"dispatch {d.id} has not ended")
    n = math.floor((d.end - d.start) / INTERVAL)
    if n < 1:
        raise HTTPException(status.HTTP_409_CONFLICT, "the dispatch is shorter than 15 minutes")
    programme = dispatch.programmes(parts.vpp).get(inv.programme)
    if programme is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"programme {inv.programme} is no "
                            "longer configured")
    method = body.baseline or programme.baseline
    shares = await _ledger_shares(parts, portfolio.id, inv.programme, d.id) if body.ledger \
        else None
    minutes = (await dispatch.tracking(parts.store, parts.sites, inv, d, now))[: n * 15]
    starts = [d.start + i * INTERVAL for i in range(n)]
    hours = INTERVAL.total_seconds() / 3600
    base_sum, met_sum = [0.0] * n, [0.0] * n
    members: list[MemberSettlementOut] = []
    totals: list[carbon.Emissions] = []
    sessions: dict[str, dict[str, SessionOut]] = {}  # site -> session -> figures
    for member, info in sorted(inv.offer["members"].items()):
        site = parts.sites.get(info["site_id"])
        if site is None:
            continue
        days: tuple[date, ...] = ()
        if method == "plan":
            baseline = interval_means([m.members[member].baseline_kw for m in minutes], n)
            metered = interval_means([m.members[member].metered_kw for m in minutes], n)
        else:
            found = await similar_day_baseline(
                parts, site, info["node"], d.start, n,
                settlement.BaselineMethod(days=programme.baseline_days,
                                          adjustment=programme.adjustment), now)
            baseline, metered, days = found.baseline_kw, found.metered_kw, found.days
        share_kwh = sum(m.members[member].share_kw for m in minutes) / 60
        own = settlement.settle(starts, hours, baseline, metered, settlement.Terms(0.0),
                                d.direction)  # type: ignore[arg-type]
        per_minute, per_interval = await interval_factors(parts, site.id, d.start, n)
        if shares is not None:
            found_sessions = await sessions_under(parts, site, info["node"], d.start, now,
                                                  per_minute)
            sessions.setdefault(site.id, {}).update({s.session: s for s in found_sessions})
        emissions = carbon.emissions(metered, baseline, per_interval, 15)
        totals.append(emissions)
        members.append(MemberSettlementOut(
            member=member, site_id=site.id, node=info["node"], baseline_days=list(days),
            share_kwh=round(share_kwh, 3), delivered_kwh=own.delivered_kwh,
            performance=round(own.delivered_kwh / share_kwh, 4) if share_kwh > 0 else 0.0,
            carbon=CarbonOut.model_validate(emissions)))
        base_sum = [a + b for a, b in zip(base_sum, baseline, strict=True)]
        met_sum = [a + b for a, b in zip(met_sum, metered, strict=True)]
    terms = settlement.Terms(d.committed_kw, inv.price_per_kwh, programme.threshold,
                             programme.penalty_per_kwh, programme.pay_cap)
    result = settlement.settle(starts, hours, base_sum, met_sum, terms,
                               d.direction)  # type: ignore[arg-type]
    total = carbon.total(totals)
    body_out = {
        "portfolio": portfolio.id, "dispatch": d.id, "invitation": inv.id,
        "programme": inv.programme, "direction": d.direction, "baseline": method,
        "committed_kw": d.committed_kw, "price_per_kwh": inv.price_per_kwh,
        "threshold": programme.threshold, "penalty_per_kwh": programme.penalty_per_kwh,
        "pay_cap": programme.pay_cap,
        "members": {m.member: {"site": m.site_id, "delivered_kwh": m.delivered_kwh,
                               "share_kwh": m.share_kwh} for m in members},
        "delivered_kwh": result.delivered_kwh, "committed_kwh": result.committed_kwh,
        "performance": result.performance, "payment": result.payment,
        "penalty": result.penalty, "avoided_kg": total.avoided_kg}
    records: list[SiteLedgerRecordOut] = []
    async with once_in_ledger(), parts.store.pool.acquire() as conn, conn.transaction():
        entry = await parts.store.audit.append(parts.audit_key, who.name, "dispatch.settled",
                                               body_out | {"ledger": body.ledger}, now, conn)
        if shares is not None:
            site_ids = sorted({m.site_id for m in members})
            nets = ledger.apportion(
                Decimal(str(result.net)),
                [sum(m.delivered_kwh for m in members if m.site_id == s) for s in site_ids],
                [sum(m.share_kwh for m in members if m.site_id == s) for s in site_ids])
            for site_id, net in zip(site_ids, nets, strict=True):
                if net == 0:
                    continue  # a site that delivered nothing and owes nothing
                written = await write_ledger(
                    parts, who, conn, (portfolio, shares),
                    LedgerSource(inv.programme, body.currency, site_id, dispatch_id=d.id),
                    entry.seq, net, list(sessions.get(site_id, {}).values()), now)
                records += [SiteLedgerRecordOut(site_id=site_id, **r.model_dump())
                            for r in written]
    return DispatchSettlementOut(
        portfolio_id=portfolio.id, dispatch_id=d.id, programme=inv.programme,
        direction=d.direction, baseline=method, audit_seq=entry.seq,
        intervals=[DispatchIntervalOut(start=i.start, committed_kw=d.committed_kw,
                                       baseline_kw=i.baseline_kw, metered_kw=i.metered_kw,
                                       delivered_kw=i.delivered_kw) for i in result.intervals],
        members=members, delivered_kwh=result.delivered_kwh,
        committed_kwh=result.committed_kwh, performance=result.performance,
        price_per_kwh=inv.price_per_kwh, payment=result.payment, penalty=result.penalty,
        net=result.net, carbon=CarbonOut.model_validate(total), ledger=records)


async def _ledger_shares(parts: Parts, portfolio_id: str, programme: str,
                         dispatch_id: int) -> ledger.Shares:
    """The shares a dispatch's ledger is split by; 409 without, or when written before."""
    shares = await revenue_shares(parts, portfolio_id, programme)
    if await parts.store.carbon.has_dispatch_ledger(portfolio_id, dispatch_id):
        raise HTTPException(status.HTTP_409_CONFLICT, f"dispatch {dispatch_id} is already "
                            f"in the ledger of portfolio {portfolio_id}")
    return shares
