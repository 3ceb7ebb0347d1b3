"""A portfolio's page (issue 14): its latest dispatch, committed against baseline against
metered minute by minute, each member's share, and the invitations answered."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from csms import dispatch
from csms.api.auth import Caller, Permission
from csms.api.deps import Parts
from csms.dashboard.i18n import _
from csms.dashboard.views import step_path
from csms.store.portfolios import Portfolio

WIDTH, HEIGHT = 720, 160
STATES = (_("scheduled"), _("active"), _("completed"), _("accepted"), _("open"),
          _("expired"), _("similar_days"), _("plan"))  # shown translated


@dataclass(frozen=True)
class MemberRow:
    member: str
    capacity_kw: float
    first_share_kw: float
    share_kw: float
    baseline_kw: float | None
    metered_kw: float | None


@dataclass(frozen=True)
class InvitationRow:
    id: int
    programme: str
    direction: str
    start: datetime
    end: datetime
    requested_kw: float
    offered_kw: float
    eligible: bool
    state: str  # accepted | open | expired


@dataclass(frozen=True)
class SettlementRow:
    """The dispatch's newest settlement, as the audit log keeps it."""

    baseline: str  # similar_days | plan
    delivered_kwh: float
    committed_kwh: float
    performance: float
    payment: float
    penalty: float
    at: datetime


@dataclass(frozen=True)
class DispatchView:
    id: int
    direction: str
    start: datetime
    end: datetime
    committed_kw: float
    status: str
    resplits: int
    minutes: int
    mean_abs_error_kw: float
    worst_5min_shortfall_kw: float
    top_kw: float
    baseline_path: str
    committed_path: str
    metered_path: str
    members: list[MemberRow]
    settlement: SettlementRow | None


async def dispatch_view(parts: Parts, portfolio: Portfolio) -> DispatchView | None:
    """The newest dispatch of the portfolio, drawn over its window."""
    found = await parts.store.vpp.dispatches(portfolio.id, limit=1)
    if not found:
        return None
    d = found[0]
    inv = await parts.store.vpp.invitation(portfolio.id, d.invitation_id)
    if inv is None:
        return None
    now = parts.clock.now()
    minutes = await dispatch.tracking(parts.store, parts.sites, inv, d, now)
    sign = -1.0 if d.direction == "down" else 1.0
    spans = dispatch.intervals(inv.offer)
    members = inv.offer["members"]
    base = [(a, sum(m["baseline_kw"][i] for m in members.values()))
            for i, (a, _) in enumerate(spans)]
    committed = [(t, max(0.0, kw + sign * d.committed_kw)) for t, kw in base]
    metered = [(m.at, m.point.metered_kw) for m in minutes]
    top = max([kw for _, kw in base + committed + metered] + [1.0]) * 1.1
    errors = [m.point.error_kw(d.direction) for m in minutes]
    last = minutes[-1].members if minutes else {}
    rows = [MemberRow(name, float(info["capacity_kw"]), d.first_shares.get(name, 0.0),
                      d.shares.get(name, 0.0),
                      last[name].baseline_kw if name in last else None,
                      last[name].metered_kw if name in last else None)
            for name, info in sorted(members.items())]
    settled = await parts.store.audit.newest("dispatch.settled", "dispatch", str(d.id))
    body = settled.body if settled is not None else {}
    settlement = None if settled is None else SettlementRow(
        str(body.get("baseline", "")), float(body.get("delivered_kwh", 0.0)),
        float(body.get("committed_kwh", 0.0)), float(body.get("performance", 0.0)),
        float(body.get("payment", 0.0)), float(body.get("penalty", 0.0)), settled.at)
    return DispatchView(
        d.id, d.direction, d.start, d.end, d.committed_kw,
        "scheduled" if now < d.start else "active" if now < d.end else "completed",
        len(await parts.store.vpp.resplits(d.id)), len(minutes),
        round(sum(abs(e) for e in errors) / len(errors), 2) if errors else 0.0,
        round(dispatch.worst_window(minutes, d.direction), 2), round(top, 1),
        step_path(base, d.start, d.end, top, WIDTH, HEIGHT),
        step_path(committed, d.start, d.end, top, WIDTH, HEIGHT),
        step_path(metered, d.start, d.end, top, WIDTH, HEIGHT), rows, settlement)


async def invitation_rows(parts: Parts, portfolio: Portfolio) -> list[InvitationRow]:
    now = parts.clock.now()
    return [InvitationRow(
        i.id, i.programme, i.direction, i.start, i.end, i.requested_kw,
        float(i.offer["quantity_kw"]), bool(i.offer["eligible"]),
        "accepted" if i.dispatch_id is not None else "open" if now <= i.answer_by
        else "expired") for i in await parts.store.vpp.invitations(portfolio.id, 20)]


async def visible(parts: Parts, who: Caller) -> list[Portfolio]:
    """The portfolios the caller may see (an aggregator: those its token names)."""
    if not who.may(Permission.PORTFOLIOS):
        return []
    return await parts.store.portfolios.list(who.portfolios if who.role == "aggregator"
                                             else None)
