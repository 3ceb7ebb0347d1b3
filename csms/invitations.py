"""An invitation answered (issue 14): the portfolio's forecast for the window, the offer
the programme allows, each member's share of it and baseline, and the bid curve, stored.

One place for both ways an invitation arrives: the HTTP API (an aggregator types it in)
and the OpenADR VEN (a utility's event). The decisions are `vpp`'s; this module gathers
the forecasts and stores the answer. Why: docs/decisions/0029-vpp.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from csms import dispatch, flexibility
from csms.config import SchedulerConfig, VppConfig
from csms.store import Store
from csms.store.portfolios import Portfolio
from csms.store.vpp import StoredInvitation
from csms.tariffs import TariffCatalog
from smart_charging import Site
from smart_charging.problem import make_slots
from vpp import (
    Invitation,
    SiteCost,
    bid_curve,
    checked,
    holdable,
    propose,
    share_holds,
    shift_cost,
)
from vpp.offers import Direction

HORIZON = timedelta(hours=24)
SLOT = timedelta(minutes=15)


class InvalidInvitation(ValueError):
    """An invitation that cannot be answered: which field, and why."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class NoMembers(LookupError):
    """None of the portfolio's sites is configured here."""


@dataclass(frozen=True)
class Context:
    """What answering needs besides the invitation."""

    store: Store
    sites: Mapping[str, Site]
    tariffs: TariffCatalog
    vpp: VppConfig
    rules: SchedulerConfig


async def forecasts(ctx: Context, portfolio: Portfolio, now: datetime,
                    duration: timedelta) -> list[flexibility.MemberForecast]:
    return await flexibility.portfolio_forecast(
        ctx.store, dict(ctx.sites), ctx.tariffs, portfolio.members, now, duration,
        ctx.vpp.history_days, ctx.rules)


async def invite(ctx: Context, portfolio: Portfolio, programme_name: str, direction: Direction,
                 start: datetime, end: datetime, requested_kw: float, price_per_kwh: float,
                 answer_by: datetime, reference: str | None, actor: str,
                 now: datetime) -> StoredInvitation:
    """Check the invitation, forecast the portfolio for its window and store the proposed
    offer: what the portfolio holds for the whole window at the programme's confidence,
    within its minimum size and duration, with a stepwise bid curve from each site's cost
    of shifting. InvalidInvitation or NoMembers when it cannot be answered."""
    programme = dispatch.programmes(ctx.vpp).get(programme_name)
    if programme is None:
        raise InvalidInvitation("programme", "unknown programme; configured: "
                                + ", ".join(sorted(dispatch.programmes(ctx.vpp))))
    if end <= start:
        raise InvalidInvitation("end", "must be after start")
    if start < now:
        raise InvalidInvitation("start", "the window has started")
    slots = make_slots(now, int(SLOT / timedelta(minutes=1)), int(HORIZON / SLOT))
    if end > slots.ends[-1]:
        raise InvalidInvitation("end", f"beyond the forecast's horizon "
                                f"({slots.ends[-1].isoformat()})")
    if answer_by > start:
        raise InvalidInvitation("answer_by", "must not be after the window's start")
    if not 0 < requested_kw <= 1e6 or not 0 <= price_per_kwh <= 1e4:
        raise InvalidInvitation("requested_kw", "requested_kw 0-1e6 kW, price 0-1e4 per kWh")
    invitation = Invitation(start, end, direction, requested_kw, price_per_kwh, answer_by)
    first = max(i for i, a in enumerate(slots.starts) if a <= start)
    members = await forecasts(ctx, portfolio, now, end - slots.starts[first])
    if not members:
        raise NoMembers("none of the portfolio's sites is configured here")
    flex = {m.label: m.forecast for m in members}
    offer = propose(invitation, flex, programme)
    window = [(a, b) for a, b in zip(slots.starts, slots.ends, strict=True)
              if a < end and b > start]
    held: dict[str, float] = {}
    if ctx.vpp.check_offers and offer.eligible:
        found = await asyncio.gather(*(  # in the default executor's threads
            _holds(m, offer.by_site.get(m.label, 0.0), window, invitation,
                   programme.confidence, now) for m in members))
        held = {m.label: kw for m, kw in zip(members, found, strict=True)}
        offer = checked(offer, held, programme)
    costs = {}
    info: dict[str, dict[str, Any]] = {}
    for m in members:
        f = m.forecast
        prices = flexibility.prices_of(ctx.tariffs, m.site_id).energy_price(
            f.slot_starts, f.slot_ends)
        inside = [float(p) for a, p in zip(f.slot_starts, prices, strict=True)
                  if start <= a < end]
        other = [float(p) for a, p in zip(f.slot_starts, prices, strict=True)
                 if not start <= a < end]
        shift = round(shift_cost(inside, other, invitation.direction), 4)
        costs[m.label] = SiteCost(m.label, shift)
        idx = [f.slot_of(a) for a, _ in window]
        capacity = holdable(f, start, invitation.direction, programme.confidence)
        share = offer.by_site.get(m.label, 0.0)
        if m.label in held and held[m.label] < share - 1e-9:
            capacity = held[m.label]  # the engine held less: so a dispatch splits by it
        info[m.label] = {
            "site_id": m.site_id, "node": m.node, "shift_per_kwh": shift,
            "capacity_kw": round(capacity, 3),
            "engine_held_kw": round(held[m.label], 3) if m.label in held else None,
            "baseline_kw": [f.baseline_kw.p50[i] if i is not None else 0.0 for i in idx]}
    curve = bid_curve(flex, costs, start, invitation.direction, programme)
    stored = {
        "quantity_kw": offer.quantity_kw, "eligible": offer.eligible,
        "reasons": list(offer.reasons), "holdable_kw": offer.holdable_kw,
        "by_member": offer.by_site, "confidence": programme.confidence,
        "programme": {"min_kw": programme.min_kw,
                      "min_duration_minutes": programme.min_duration / timedelta(minutes=1)},
        "members": info, "bid_curve": [[s.quantity_kw, s.price_per_kwh] for s in curve],
        "intervals": [[max(a, start).isoformat(), min(b, end).isoformat()]
                      for a, b in window],
        "forecast_at": now.isoformat()}
    return await ctx.store.vpp.add_invitation(
        portfolio.id, programme_name, invitation.direction, start, end,
        invitation.requested_kw, invitation.price_per_kwh, invitation.answer_by, reference,
        stored, actor, now)


async def _holds(member: flexibility.MemberForecast, share: float,
                 window: list[tuple[datetime, datetime]], invitation: Invitation,
                 confidence: str, now: datetime) -> float:
    """What a member holds of its share with every driver served, as the engine plans
    it (in a thread) against the targets a dispatch would give it: the share, else half
    of it, else nothing."""
    f, inputs = member.forecast, member.inputs
    for kw in (share, share / 2):
        if kw <= 0:
            break
        steps = []
        for a, b in window:
            i = f.slot_of(a)
            base = f.baseline_kw.p50[i] if i is not None else 0.0
            steps.append((a, b, dispatch.target_kw(base, kw, invitation.direction)))
        if await asyncio.to_thread(share_holds, inputs.site, inputs.plugged,
                                   inputs.arrivals, inputs.prices, now, steps, confidence,
                                   inputs.settings):
            return kw
    return 0.0
