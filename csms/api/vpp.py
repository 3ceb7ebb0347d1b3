"""The VPP surface (issue 14): flexibility forecasts of sites and portfolios, demand-response
invitations with the offer proposed for each, accepting it (as is or edited), and the
dispatch that follows with its minute-by-minute tracking.

An aggregator token works only on the portfolios it names (another is a 404, as if it did
not exist) and forecasts only their sites. An accepted offer and every grid event it makes
are in the audit log. Decisions live in `vpp/`; inputs are gathered by csms/flexibility.py,
dispatches placed and tracked by csms/dispatch.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Path, Query, status
from pydantic import AwareDatetime, Field

from csms import dispatch, flexibility, invitations
from csms.api.auth import Caller, Permission, caller, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import Body, Model
from csms.api.portfolios import PortfolioId, _visible
from csms.api.sites import may_see
from csms.store.portfolios import Portfolio
from csms.store.vpp import StoredDispatch, StoredInvitation
from vpp import (
    Flexibility,
    Invitation,
    check_quantity,
    total,
)

router = APIRouter(tags=["vpp"])

Reader = Annotated[Caller, require(Permission.PORTFOLIOS)]
Answerer = Annotated[Caller, require(Permission.VPP)]
HoldMinutes = Annotated[int, Query(ge=15, le=720, description="how long each interval's shed "
                                   "or absorb must hold, minutes")]


# --------------------------------------------------------------------------- models


class BandOut(Model):
    """Per arrival scenario: `p90` counts the cars that come on 90% of days (what is there
    with 90% confidence), `p50` the median, `p10` a busy day."""

    p90: float
    p50: float
    p10: float


class IntervalOut(Model):
    start: datetime
    end: datetime
    baseline_kw: BandOut = Field(description="the planned EV load without any event")
    shed_kw: BandOut = Field(description="how far it can go down from here, held for the "
                             "duration, every opted-in car still served")
    absorb_kw: BandOut = Field(description="how far it can go up from here, held alike")


class FlexibilityOut(Model):
    sites: list[str]
    hold_minutes: int
    sessions: int = Field(description="cars plugged in now")
    expected: dict[str, float] = Field(description="cars expected to arrive, by scenario")
    status: str = Field(description="the engine's status for the baseline plan")
    intervals: list[IntervalOut]


class MemberFlexibilityOut(Model):
    member: str
    site_id: str
    node: str
    forecast: FlexibilityOut


class PortfolioFlexibilityOut(Model):
    portfolio_id: str
    total: FlexibilityOut
    members: list[MemberFlexibilityOut]


class InvitationIn(Body):
    programme: str = Field(min_length=1, max_length=64,
                           description="a programme configured under [vpp.programmes]")
    direction: Literal["down", "up"] = Field(description="down: reduce the EV load (peak "
                                             "shaving); up: increase it (valley filling)")
    start: AwareDatetime
    end: AwareDatetime
    requested_kw: float = Field(gt=0, le=1e6, allow_inf_nan=False)
    price_per_kwh: float = Field(ge=0, le=1e4, allow_inf_nan=False)
    answer_by: AwareDatetime = Field(description="the deadline to accept an offer")
    reference: str | None = Field(None, max_length=200,
                                  description="the grid company's id for the invitation")


class StepOut(Model):
    quantity_kw: float = Field(description="cumulative quantity offered at this price")
    price_per_kwh: float


class MemberOfferOut(Model):
    member: str
    site_id: str
    node: str
    capacity_kw: float = Field(description="what it holds for the window at the "
                               "programme's confidence")
    share_kw: float
    shift_per_kwh: float
    engine_held_kw: float | None = Field(None, description="what the engine held of the "
                                         "share with every driver served (null: not "
                                         "checked; `[vpp] check_offers`)")


class OfferOut(Model):
    invitation_id: int
    quantity_kw: float
    eligible: bool
    reasons: list[str]
    confidence: str
    holdable_kw: dict[str, float] = Field(description="what the portfolio holds, by scenario")
    members: list[MemberOfferOut]
    bid_curve: list[StepOut]
    forecast_at: datetime


class InvitationOut(Model):
    id: int
    portfolio_id: str
    programme: str
    direction: str
    start: datetime
    end: datetime
    requested_kw: float
    price_per_kwh: float
    answer_by: datetime
    reference: str | None
    created_by: str
    created_at: datetime
    dispatch_id: int | None
    offer: OfferOut


class AcceptIn(Body):
    quantity_kw: float | None = Field(None, ge=0, le=1e6, allow_inf_nan=False,
                                      description="an edited quantity; absent: as proposed")


class DispatchEventOut(Model):
    member: str
    site_id: str
    event_id: int
    node: str
    kind: str
    kw: float
    start: datetime
    end: datetime
    status: str


class MemberMinuteOut(Model):
    share_kw: float
    baseline_kw: float
    metered_kw: float


class MinuteOut(Model):
    at: datetime
    committed_kw: float
    baseline_kw: float
    metered_kw: float
    delivered_kw: float
    error_kw: float = Field(description="committed minus delivered (positive: short)")
    members: dict[str, MemberMinuteOut]


class TrackingOut(Model):
    minutes: int
    mean_abs_error_kw: float
    worst_5min_shortfall_kw: float
    delivered_kwh: float
    committed_kwh: float


class ResplitOut(Model):
    at: datetime
    short_sites: list[str]
    before: dict[str, float]
    after: dict[str, float]


class DispatchOut(Model):
    id: int
    invitation_id: int
    portfolio_id: str
    direction: str
    start: datetime
    end: datetime
    committed_kw: float
    first_shares: dict[str, float]
    shares: dict[str, float]
    accepted_by: str
    accepted_at: datetime
    events: list[DispatchEventOut]
    resplits: list[ResplitOut]
    tracking: TrackingOut
    minutes: list[MinuteOut]


# --------------------------------------------------------------------------- helpers


def flexibility_out(f: Flexibility) -> FlexibilityOut:
    def band(b: Any, i: int) -> BandOut:
        return BandOut(p90=b.p90[i], p50=b.p50[i], p10=b.p10[i])
    return FlexibilityOut(
        sites=list(f.site_ids), hold_minutes=int(f.duration / timedelta(minutes=1)),
        sessions=f.sessions, expected=f.expected, status=f.status,
        intervals=[IntervalOut(start=a, end=b, baseline_kw=band(f.baseline_kw, i),
                               shed_kw=band(f.shed_kw, i), absorb_kw=band(f.absorb_kw, i))
                   for i, (a, b) in enumerate(zip(f.slot_starts, f.slot_ends, strict=True))])


async def _portfolio(portfolio_id: PortfolioId, who: Reader, parts: PartsDep) -> Portfolio:
    return await _visible(portfolio_id, who, parts)


PortfolioDep = Annotated[Portfolio, Depends(_portfolio)]


def _invalid(field: str, msg: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
        "loc": ["body", field], "type": "value_error", "msg": msg}])


def invitation_context(parts: Parts) -> invitations.Context:
    return invitations.Context(parts.store, parts.sites, parts.tariffs, parts.vpp,
                               parts.scheduler)


async def _forecasts(parts: Parts, portfolio: Portfolio, now: datetime,
                     duration: timedelta) -> list[flexibility.MemberForecast]:
    return await invitations.forecasts(invitation_context(parts), portfolio, now, duration)


# --------------------------------------------------------------------------- forecasts


@router.get("/api/sites/{site_id}/flexibility", responses={
    403: {"description": "the role may not read sites"},
    404: {"description": "no such site (an aggregator: none of its portfolios'; a grid "
          "token: none of its nodes')"}})
async def site_flexibility(
    site_id: Annotated[str, Path(min_length=1, max_length=64)],
    who: Annotated[Caller, Depends(caller)], parts: PartsDep, hold_minutes: HoldMinutes = 120,
) -> FlexibilityOut:
    """The site's next 24 h by interval: baseline EV load, and the shed and absorb that
    hold for `hold_minutes` from each interval, with a band from its arrival history."""
    site = parts.sites.get(site_id)
    if who.role == "aggregator":
        mine = [p for p in await parts.store.portfolios.list(who.portfolios)
                if any(m.site_id == site_id for m in p.members)]
        if not mine:
            site = None
    elif not who.may(Permission.SITES):
        raise HTTPException(status.HTTP_403_FORBIDDEN,
                            f"role {who.role} may not do this (needs permission "
                            f"{Permission.SITES.value})")
    elif not may_see(who, site_id):  # a grid token: the sites of its nodes
        site = None
    if site is None:
        raise not_found(f"site {site_id}")
    now = parts.clock.now().replace(microsecond=0)
    f, _ = await flexibility.site_forecast(parts.store, site, flexibility.prices_of(
        parts.tariffs, site.id), now, timedelta(minutes=hold_minutes), parts.vpp.history_days,
        rules=parts.scheduler)
    return flexibility_out(f)


@router.get("/api/portfolios/{portfolio_id}/flexibility",
            responses={404: {"description": "no such portfolio"}})
async def portfolio_flexibility(portfolio: PortfolioDep, parts: PartsDep,
                                hold_minutes: HoldMinutes = 120) -> PortfolioFlexibilityOut:
    """The portfolio's forecast: the sum over its members, and each member's own."""
    now = parts.clock.now().replace(microsecond=0)
    members = await _forecasts(parts, portfolio, now, timedelta(minutes=hold_minutes))
    if not members:
        raise HTTPException(status.HTTP_409_CONFLICT, "none of the portfolio's sites is "
                            "configured here")
    return PortfolioFlexibilityOut(
        portfolio_id=portfolio.id, total=flexibility_out(total([m.forecast for m in members])),
        members=[MemberFlexibilityOut(member=m.label, site_id=m.site_id, node=m.node,
                                      forecast=flexibility_out(m.forecast))
                 for m in members])


# --------------------------------------------------------------------------- invitations


def offer_out(inv: StoredInvitation) -> OfferOut:
    o = inv.offer
    return OfferOut(
        invitation_id=inv.id, quantity_kw=o["quantity_kw"], eligible=o["eligible"],
        reasons=o["reasons"], confidence=o["confidence"], holdable_kw=o["holdable_kw"],
        members=[MemberOfferOut(member=m, site_id=i["site_id"], node=i["node"],
                                capacity_kw=i["capacity_kw"], share_kw=o["by_member"][m],
                                shift_per_kwh=i["shift_per_kwh"],
                                engine_held_kw=i.get("engine_held_kw"))
                 for m, i in sorted(o["members"].items())],
        bid_curve=[StepOut(quantity_kw=q, price_per_kwh=p) for q, p in o["bid_curve"]],
        forecast_at=datetime.fromisoformat(o["forecast_at"]))


def invitation_out(inv: StoredInvitation) -> InvitationOut:
    return InvitationOut(
        id=inv.id, portfolio_id=inv.portfolio_id, programme=inv.programme,
        direction=inv.direction, start=inv.start, end=inv.end, requested_kw=inv.requested_kw,
        price_per_kwh=inv.price_per_kwh, answer_by=inv.answer_by, reference=inv.reference,
        created_by=inv.created_by, created_at=inv.created_at, dispatch_id=inv.dispatch_id,
        offer=offer_out(inv))


@router.post("/api/portfolios/{portfolio_id}/invitations",
             status_code=status.HTTP_201_CREATED, responses={
                 403: {"description": "the role may not answer invitations"},
                 404: {"description": "no such portfolio"},
                 409: {"description": "none of the portfolio's sites is configured here"},
                 422: {"description": "bad body, an unknown programme, or a window outside "
                       "the next 24 h"}})
async def create_invitation(portfolio: PortfolioDep, body: InvitationIn, who: Answerer,
                            parts: PartsDep) -> InvitationOut:
    """Record an invitation and propose an offer: what the portfolio holds for the whole
    window at the programme's confidence (P90 unless configured), within the programme's
    minimum size and duration, with a stepwise bid curve from each site's cost of shifting."""
    now = parts.clock.now().replace(microsecond=0)
    try:
        inv = await invitations.invite(
            invitation_context(parts), portfolio, body.programme, body.direction, body.start,
            body.end, body.requested_kw, body.price_per_kwh, body.answer_by, body.reference,
            who.name, now)
    except invitations.InvalidInvitation as e:
        raise _invalid(e.field, str(e)) from None
    except invitations.NoMembers as e:
        raise HTTPException(status.HTTP_409_CONFLICT, str(e)) from None
    return invitation_out(inv)


async def _invitation(portfolio: PortfolioDep, parts: PartsDep,
                      invitation_id: Annotated[int, Path(ge=1, le=2**62)]) -> StoredInvitation:
    inv = await parts.store.vpp.invitation(portfolio.id, invitation_id)
    if inv is None:
        raise not_found(f"invitation {invitation_id} in portfolio {portfolio.id}")
    return inv


InvitationDep = Annotated[StoredInvitation, Depends(_invitation)]


@router.get("/api/portfolios/{portfolio_id}/invitations",
            responses={404: {"description": "no such portfolio"}})
async def list_invitations(portfolio: PortfolioDep, parts: PartsDep,
                           limit: Annotated[int, Query(ge=1, le=1000)] = 100
                           ) -> list[InvitationOut]:
    """Newest window first, each with its proposed offer and dispatch (once accepted)."""
    return [invitation_out(i) for i in await parts.store.vpp.invitations(portfolio.id, limit)]


@router.get("/api/portfolios/{portfolio_id}/invitations/{invitation_id}",
            responses={404: {"description": "no such portfolio or invitation"}})
async def get_invitation(inv: InvitationDep) -> InvitationOut:
    return invitation_out(inv)


@router.get("/api/portfolios/{portfolio_id}/invitations/{invitation_id}/offer",
            responses={404: {"description": "no such portfolio or invitation"}})
async def get_offer(inv: InvitationDep) -> OfferOut:
    """The offer proposed for the invitation (as computed when it arrived)."""
    return offer_out(inv)


@router.post("/api/portfolios/{portfolio_id}/invitations/{invitation_id}/accept",
             status_code=status.HTTP_201_CREATED, responses={
                 403: {"description": "the role may not answer invitations"},
                 404: {"description": "no such portfolio or invitation"},
                 409: {"description": "accepted already, past the deadline, or no eligible "
                       "offer to accept as is"},
                 422: {"description": "an edited quantity under the programme's minimum or "
                       "over the request"}})
async def accept_offer(inv: InvitationDep, body: AcceptIn, who: Answerer,
                       parts: PartsDep) -> DispatchOut:
    """Accept the offer, as proposed or with an edited quantity: the commitment is split
    across the members in proportion to what each holds, each member's share becomes grid
    events on its node, and the acceptance and every event go to the audit log."""
    now = parts.clock.now()
    if inv.dispatch_id is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"invitation {inv.id} was accepted "
                            f"(dispatch {inv.dispatch_id})")
    if now > inv.answer_by or now >= inv.end:
        raise HTTPException(status.HTTP_409_CONFLICT, "the answer deadline has passed")
    quantity = inv.offer["quantity_kw"] if body.quantity_kw is None else body.quantity_kw
    if body.quantity_kw is None and not inv.offer["eligible"]:
        raise HTTPException(status.HTTP_409_CONFLICT, "no eligible offer to accept as is: "
                            + "; ".join(inv.offer["reasons"]))
    programme = dispatch.programmes(parts.vpp).get(inv.programme)
    if programme is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"programme {inv.programme} is no "
                            "longer configured")
    problems = check_quantity(quantity, Invitation(
        inv.start, inv.end, inv.direction, inv.requested_kw,  # type: ignore[arg-type]
        inv.price_per_kwh, inv.answer_by), programme)
    if problems:
        raise _invalid("quantity_kw", "; ".join(problems))
    made = await dispatch.accept(parts.store, parts.audit_key, parts.events, parts.sites, inv,
                                 float(quantity), who.name, now)
    if made is None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"invitation {inv.id} was accepted")
    return await dispatch_out(parts, inv, made[0])


# --------------------------------------------------------------------------- dispatches


async def dispatch_out(parts: Parts, inv: StoredInvitation, d: StoredDispatch) -> DispatchOut:
    now = parts.clock.now()
    members = inv.offer["members"]
    events = []
    for member, event_id in await parts.store.vpp.event_ids(d.id):
        e = await parts.store.grid.event(members[member]["site_id"], event_id)
        if e is not None:
            events.append(DispatchEventOut(member=member, site_id=e.site_id, event_id=e.id,
                                           node=e.node, kind=e.kind, kw=e.kw, start=e.start,
                                           end=e.end, status=e.status(now)))
    minutes = await dispatch.tracking(parts.store, parts.sites, inv, d, now)
    errors = [m.point.error_kw(d.direction) for m in minutes]
    hours = dispatch.STEP / timedelta(hours=1)
    return DispatchOut(
        id=d.id, invitation_id=d.invitation_id, portfolio_id=d.portfolio_id,
        direction=d.direction, start=d.start, end=d.end, committed_kw=d.committed_kw,
        first_shares=d.first_shares, shares=d.shares, accepted_by=d.accepted_by,
        accepted_at=d.accepted_at, events=events,
        resplits=[ResplitOut.model_validate(r) for r in await parts.store.vpp.resplits(d.id)],
        tracking=TrackingOut(
            minutes=len(minutes),
            mean_abs_error_kw=round(sum(abs(e) for e in errors) / len(errors), 3)
            if errors else 0.0,
            worst_5min_shortfall_kw=round(dispatch.worst_window(minutes, d.direction), 3),
            delivered_kwh=round(sum(m.point.delivered_kw(d.direction) for m in minutes)
                                * hours, 3),
            committed_kwh=round(d.committed_kw * len(minutes) * hours, 3)),
        minutes=[MinuteOut(at=m.at, committed_kw=m.point.committed_kw,
                           baseline_kw=round(m.point.baseline_kw, 3),
                           metered_kw=round(m.point.metered_kw, 3),
                           delivered_kw=round(m.point.delivered_kw(d.direction), 3),
                           error_kw=round(m.point.error_kw(d.direction), 3),
                           members={k: MemberMinuteOut(share_kw=v.share_kw,
                                                       baseline_kw=v.baseline_kw,
                                                       metered_kw=round(v.metered_kw, 3))
                                    for k, v in m.members.items()})
                 for m in minutes])


@router.get("/api/portfolios/{portfolio_id}/dispatches",
            responses={404: {"description": "no such portfolio"}})
async def list_dispatches(portfolio: PortfolioDep, parts: PartsDep,
                          limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[DispatchOut]:
    """Newest first, each with its events and tracking so far."""
    out = []
    for d in await parts.store.vpp.dispatches(portfolio.id, limit=limit):
        inv = await parts.store.vpp.invitation(portfolio.id, d.invitation_id)
        if inv is not None:
            out.append(await dispatch_out(parts, inv, d))
    return out


@router.get("/api/portfolios/{portfolio_id}/dispatches/{dispatch_id}",
            responses={404: {"description": "no such portfolio or dispatch"}})
async def get_dispatch(portfolio: PortfolioDep, parts: PartsDep,
                       dispatch_id: Annotated[int, Path(ge=1, le=2**62)]) -> DispatchOut:
    """The dispatch: shares, grid events, re-splits, and the portfolio's metered response
    minute by minute against the commitment and the baseline."""
    d, inv = await dispatch_of(parts, portfolio, dispatch_id)
    return await dispatch_out(parts, inv, d)


async def dispatch_of(parts: Parts, portfolio: Portfolio, dispatch_id: int
                      ) -> tuple[StoredDispatch, StoredInvitation]:
    """The portfolio's dispatch and its invitation, or 404."""
    d = await parts.store.vpp.dispatch(portfolio.id, dispatch_id)
    inv = None if d is None else await parts.store.vpp.invitation(portfolio.id,
                                                                   d.invitation_id)
    if d is None or inv is None:
        raise not_found(f"dispatch {dispatch_id} in portfolio {portfolio.id}")
    return d, inv
