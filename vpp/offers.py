"""Answering demand response: an offer for an invitation, and a stepwise bid curve.

The programme's rules (minimum size, minimum duration, the confidence an offer must hold)
differ by grid company and province, so they are data (`Programme`), not code. Quantities
are what the forecast can hold for the whole window: an offer promises the P90 shed (or
absorb), what the portfolio delivers on 9 days in 10.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Literal

from vpp.dispatch import split
from vpp.forecast import Flexibility

Direction = Literal["down", "up"]


@dataclass(frozen=True)
class Programme:
    """A demand-response programme's rules, e.g. a provincial interruptible-load scheme:
    at least 300 kW, held at least 2 h."""

    name: str
    min_kw: float = 300.0
    min_duration: timedelta = timedelta(hours=2)
    confidence: Literal["p90", "p50", "p10"] = "p90"
    penalty_per_kwh: float = 0.0  # per kWh short (under the threshold); prices bid risk
    # settling a dispatch: the baseline is the mean of the N most recent similar days
    # with a same-day adjustment, or the portfolio's own plan without the event (the
    # forecast's P50 at the invitation); under `threshold` x the commitment nothing is
    # paid and the shortfall penalised; above `pay_cap` x the commitment nothing more paid
    baseline: Literal["similar_days", "plan"] = "similar_days"
    baseline_days: int = 5
    adjustment: Literal["none", "additive", "multiplicative"] = "none"
    threshold: float = 0.8
    pay_cap: float = 1.2

    def __post_init__(self) -> None:
        if self.min_kw < 0 or self.min_duration < timedelta(0) or self.penalty_per_kwh < 0:
            raise ValueError("programme minimums and penalty must be >= 0")
        if self.confidence not in ("p90", "p50", "p10"):
            raise ValueError("a programme's confidence is p90, p50 or p10")
        if self.baseline not in ("similar_days", "plan") or self.adjustment not in (
                "none", "additive", "multiplicative"):
            raise ValueError("a programme's baseline is similar_days or plan; its adjustment "
                             "none, additive or multiplicative")
        if not 1 <= self.baseline_days <= 30 or not 0 <= self.threshold <= 2 or not (
                0 <= self.pay_cap <= 10):
            raise ValueError("baseline_days 1-30, threshold 0-2, pay_cap 0-10")


@dataclass(frozen=True)
class Invitation:
    """What the grid asks: a window, a reduction (down) or increase (up), a price."""

    start: datetime
    end: datetime
    direction: Direction
    requested_kw: float
    price_per_kwh: float
    answer_by: datetime

    def __post_init__(self) -> None:
        if self.end <= self.start:
            raise ValueError("an invitation's window must end after it starts")
        if self.requested_kw <= 0 or self.price_per_kwh < 0:
            raise ValueError("requested_kw must be positive, price_per_kwh >= 0")

    @property
    def duration(self) -> timedelta:
        return self.end - self.start


@dataclass(frozen=True)
class Offer:
    """The proposal: `quantity_kw` for the whole window (0 when it cannot meet the
    programme), split by site, and why it is what it is."""

    quantity_kw: float
    by_site: dict[str, float]
    holdable_kw: dict[str, float]  # by scenario: what the portfolio could hold
    eligible: bool
    reasons: tuple[str, ...] = field(default_factory=tuple)


def holdable(flex: Flexibility, start: datetime, direction: Direction,
             scenario: str) -> float:
    """What `flex` holds from `start` for its duration (0 outside the horizon)."""
    i = flex.slot_of(start)
    if i is None:
        return 0.0
    band = flex.shed_kw if direction == "down" else flex.absorb_kw
    return float(band.of(scenario)[i])


def propose(invitation: Invitation, sites: Mapping[str, Flexibility],
            programme: Programme) -> Offer:
    """The offer for `invitation` from per-site forecasts made with the window's
    duration: the requested quantity, or as much as the sites hold at the programme's
    confidence, if that meets the programme's minimums."""
    reasons: list[str] = []
    by_scenario = {name: round(sum(holdable(f, invitation.start, invitation.direction, name)
                                   for f in sites.values()), 3)
                   for name in ("p90", "p50", "p10")}
    per_site = {sid: holdable(f, invitation.start, invitation.direction,
                              programme.confidence) for sid, f in sites.items()}
    for sid, f in sites.items():
        if f.duration < invitation.duration:
            raise ValueError(f"site {sid}: forecast held {f.duration}, the window is longer")
    can = sum(per_site.values())
    quantity = min(invitation.requested_kw, can)
    if invitation.duration < programme.min_duration:
        reasons.append(f"the window ({invitation.duration}) is shorter than the programme's "
                       f"minimum duration ({programme.min_duration})")
    if quantity < programme.min_kw:
        reasons.append(f"{quantity:.1f} kW at {programme.confidence} is under the "
                       f"programme's minimum of {programme.min_kw:.1f} kW")
    if can < invitation.requested_kw:
        reasons.append(f"the portfolio holds {can:.1f} kW at {programme.confidence}, "
                       f"less than the {invitation.requested_kw:.1f} kW requested")
    eligible = invitation.duration >= programme.min_duration and quantity >= programme.min_kw
    if not eligible:
        quantity = 0.0
    shares = split(quantity, per_site) if quantity > 0 else {sid: 0.0 for sid in per_site}
    return Offer(round(quantity, 3), {k: round(v, 3) for k, v in shares.items()},
                 by_scenario, eligible, tuple(reasons))


def checked(offer: Offer, held: Mapping[str, float], programme: Programme) -> Offer:
    """The offer once the engine has checked each site's share: `held` is what a site
    holds with every session served (its share, less, or 0; a site not in it keeps its
    share). The quantity is their sum, under the programme's minimum not eligible."""
    by_site = {sid: round(min(kw, held.get(sid, kw)), 3) for sid, kw in offer.by_site.items()}
    cut = sorted(sid for sid, kw in by_site.items() if kw < offer.by_site[sid] - 1e-9)
    if not cut:
        return offer
    quantity = round(sum(by_site.values()), 3)
    reasons = [*offer.reasons, f"the engine holds {quantity:.1f} of {offer.quantity_kw:.1f} "
               f"kW with every driver served (less at {', '.join(cut)})"]
    eligible = offer.eligible and quantity >= programme.min_kw
    if offer.eligible and not eligible:
        reasons.append(f"{quantity:.1f} kW is under the programme's minimum of "
                       f"{programme.min_kw:.1f} kW")
    if not eligible:
        quantity, by_site = 0.0, {sid: 0.0 for sid in by_site}
    return Offer(quantity, by_site, offer.holdable_kw, eligible, tuple(reasons))


def check_quantity(quantity_kw: float, invitation: Invitation,
                   programme: Programme) -> list[str]:
    """Why an edited quantity cannot be accepted (empty: it can)."""
    problems = []
    if invitation.duration < programme.min_duration:
        problems.append(f"the window is shorter than {programme.min_duration}")
    if quantity_kw < programme.min_kw:
        problems.append(f"{quantity_kw} kW is under the programme's minimum "
                        f"{programme.min_kw} kW")
    if quantity_kw > invitation.requested_kw:
        problems.append(f"{quantity_kw} kW is more than the {invitation.requested_kw} kW "
                        "requested")
    return problems


# --------------------------------------------------------------------------- bidding


@dataclass(frozen=True)
class SiteCost:
    """What a kW held over the window costs a site per kWh: the tariff difference of
    moving the energy (`shift_per_kwh`, >= 0 once clipped) and the risk of unmet energy."""

    site_id: str
    shift_per_kwh: float
    risk_per_kwh: float = 0.0


@dataclass(frozen=True)
class Step:
    quantity_kw: float  # cumulative: offered at this price and above
    price_per_kwh: float


def shift_cost(window_prices: Sequence[float], other_prices: Sequence[float],
               direction: Direction) -> float:
    """Tariff cost per kWh of moving energy out of the window (down: bought later at the
    other hours' mean price instead of the window's) or into it (up), never below 0."""
    if not window_prices or not other_prices:
        return 0.0
    inside = sum(window_prices) / len(window_prices)
    outside = sum(other_prices) / len(other_prices)
    return max(0.0, outside - inside if direction == "down" else inside - outside)


def bid_curve(sites: Mapping[str, Flexibility], costs: Mapping[str, SiteCost],
              start: datetime, direction: Direction, programme: Programme) -> list[Step]:
    """A stepwise offer: each site's P90 quantity at its cost, then its P90-P50 part at its
    cost plus the programme's penalty weighted by the extra risk (a P50 kW is missing on
    half the days), sorted by price, cumulative, equal prices merged. Quantities and prices
    both never decrease along the curve."""
    pieces: list[tuple[float, float]] = []
    for sid, flex in sites.items():
        cost = costs.get(sid, SiteCost(sid, 0.0))
        firm = holdable(flex, start, direction, "p90")
        likely = max(0.0, holdable(flex, start, direction, "p50") - firm)
        base = max(0.0, cost.shift_per_kwh) + max(0.0, cost.risk_per_kwh)
        if firm > 0:
            pieces.append((round(base + 0.1 * programme.penalty_per_kwh, 4), firm))
        if likely > 0:
            pieces.append((round(base + 0.5 * programme.penalty_per_kwh, 4), likely))
    steps: list[Step] = []
    cumulative = 0.0
    for price, kw in sorted(pieces):
        cumulative += kw
        if steps and steps[-1].price_per_kwh == price:
            steps[-1] = Step(round(cumulative, 3), price)
        else:
            steps.append(Step(round(cumulative, 3), price))
    return steps



