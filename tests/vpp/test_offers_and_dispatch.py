"""Offers respect the programme's minimums, bid curves climb, and a portfolio's target is
split in proportion to what each site can deliver, re-split when one falls short."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from vpp import (
    Band,
    Flexibility,
    Invitation,
    Programme,
    SiteCost,
    SiteDelivery,
    TrackingPoint,
    bid_curve,
    check_quantity,
    checked,
    propose,
    resplit,
    shift_cost,
    short_sites,
    split,
    tracking_error,
)

T0 = datetime(2026, 12, 7, 10, tzinfo=UTC)
SLOTS = tuple(T0 + timedelta(minutes=15 * i) for i in range(96))


def flex(site: str, p90: float, p50: float, p10: float,
         duration: timedelta = timedelta(hours=2)) -> Flexibility:
    def flat(v: float) -> tuple[float, ...]:
        return (v,) * 96
    band = Band(flat(p90), flat(p50), flat(p10))
    return Flexibility((site,), SLOTS, (*SLOTS[1:], SLOTS[-1] + timedelta(minutes=15)),
                       duration, Band(flat(500), flat(500), flat(500)), band, band)


def invitation(kw: float, hours: float = 2) -> Invitation:
    start = T0 + timedelta(hours=4)
    return Invitation(start, start + timedelta(hours=hours), "down", kw, 1.5,
                      T0 + timedelta(hours=1))


PROGRAMME = Programme("jiangsu-interruptible", min_kw=300, min_duration=timedelta(hours=2),
                      penalty_per_kwh=2.0)


def test_the_offer_is_what_the_sites_hold_at_p90() -> None:
    sites = {"a": flex("a", 200, 260, 300), "b": flex("b", 150, 170, 200)}
    offer = propose(invitation(1000), sites, PROGRAMME)
    assert offer.eligible and offer.quantity_kw == pytest.approx(350)
    assert offer.by_site == pytest.approx({"a": 200, "b": 150})
    assert offer.holdable_kw == {"p90": 350, "p50": 430, "p10": 500}
    assert any("less than the 1000.0 kW requested" in r for r in offer.reasons)
    smaller = propose(invitation(320), sites, PROGRAMME)
    assert smaller.quantity_kw == 320 and sum(smaller.by_site.values()) == pytest.approx(320)


def test_the_offer_respects_the_programmes_minimums() -> None:
    small = propose(invitation(1000), {"a": flex("a", 250, 400, 500)}, PROGRAMME)
    assert not small.eligible and small.quantity_kw == 0
    assert any("under the programme's minimum of 300.0 kW" in r for r in small.reasons)
    short = propose(invitation(400, hours=1), {"a": flex("a", 400, 400, 400)}, PROGRAMME)
    assert not short.eligible and "minimum duration" in short.reasons[0]
    assert check_quantity(299, invitation(400), PROGRAMME)
    assert check_quantity(401, invitation(400), PROGRAMME)
    assert check_quantity(350, invitation(400), PROGRAMME) == []
    with pytest.raises(ValueError):  # a forecast for a shorter hold than the window
        propose(invitation(400, hours=3), {"a": flex("a", 400, 400, 400)}, PROGRAMME)
    with pytest.raises(ValueError):
        Invitation(T0, T0, "down", 10, 1, T0)
    with pytest.raises(ValueError):
        Programme("x", min_kw=-1)


def test_an_offer_is_cut_to_what_the_engine_holds() -> None:
    sites = {"a": flex("a", 200, 260, 300), "b": flex("b", 150, 170, 200)}
    offer = propose(invitation(1000), sites, PROGRAMME)
    assert checked(offer, {"a": 200, "b": 150}, PROGRAMME) == offer  # both held
    cut = checked(offer, {"a": 200, "b": 120}, PROGRAMME)  # b holds less than its share
    assert cut.eligible and cut.quantity_kw == 320 and cut.by_site == {"a": 200, "b": 120}
    assert "the engine holds 320.0 of 350.0 kW" in cut.reasons[-1] and "at b" in cut.reasons[-1]
    too_little = checked(offer, {"a": 100, "b": 0}, PROGRAMME)  # under the 300 kW minimum
    assert not too_little.eligible and too_little.quantity_kw == 0
    assert set(too_little.by_site.values()) == {0.0}
    assert "under the programme's minimum" in too_little.reasons[-1]


@given(st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(0, 5)),
                min_size=1, max_size=20))
def test_the_bid_curve_climbs(sites: list[tuple[float, float, float]]) -> None:
    forecasts = {f"s{i}": flex(f"s{i}", lo, lo + extra, lo + extra)
                 for i, (lo, extra, _) in enumerate(sites)}
    costs = {f"s{i}": SiteCost(f"s{i}", cost) for i, (_, _, cost) in enumerate(sites)}
    steps = bid_curve(forecasts, costs, T0 + timedelta(hours=4), "down", PROGRAMME)
    for a, b in itertools.pairwise(steps):
        assert b.quantity_kw >= a.quantity_kw and b.price_per_kwh > a.price_per_kwh
    top = sum(lo + extra for lo, extra, _ in sites)
    assert (steps[-1].quantity_kw if steps else 0.0) == pytest.approx(top, abs=0.01)


def test_shifting_costs_what_the_tariff_says() -> None:
    assert shift_cost([1.0, 1.0], [0.3, 0.5], "down") == 0  # moved out of a peak: gains
    assert shift_cost([0.3], [1.0, 0.6], "down") == pytest.approx(0.5)
    assert shift_cost([1.0], [0.4], "up") == pytest.approx(0.6)
    assert shift_cost([], [1.0], "up") == 0


capacities = st.dictionaries(st.sampled_from([f"site-{i}" for i in range(50)]),
                             st.floats(0, 2000), min_size=1, max_size=50)


@given(capacities, st.floats(0, 60000))
def test_the_split_sums_to_the_target_and_follows_capacity(
        caps: dict[str, float], target: float) -> None:
    shares = split(target, caps)
    assert set(shares) == set(caps)
    assert sum(shares.values()) == pytest.approx(min(target, sum(caps.values())),
                                                 rel=1e-6, abs=1e-6)
    for k, v in shares.items():
        assert -1e-9 <= v <= caps[k] + 1e-6
    if target <= sum(caps.values()):  # uncapped sites get the same share of their capacity
        ratios = [shares[k] / caps[k] for k in caps if caps[k] > 1 and shares[k] < caps[k]]
        assert max(ratios, default=0) - min(ratios, default=0) < 1e-6


def test_a_site_that_falls_short_hands_its_share_to_the_others() -> None:
    shares = split(600, {"a": 400, "b": 400, "c": 200})
    assert shares == pytest.approx({"a": 240, "b": 240, "c": 120})
    seen = [SiteDelivery("a", 240, 100, 400), SiteDelivery("b", 240, 238, 400),
            SiteDelivery("c", 120, 125, 200)]
    assert short_sites(seen) == ["a"]
    again = resplit(600, seen)
    assert again["a"] == pytest.approx(100)
    assert sum(again.values()) == pytest.approx(600)
    assert again["b"] == pytest.approx(2 * again["c"]) and again["b"] > 240


@given(st.lists(st.tuples(st.floats(0, 500), st.floats(0, 500), st.floats(0, 500)),
                min_size=1, max_size=60))
def test_tracking_error(points: list[tuple[float, float, float]]) -> None:
    track = [TrackingPoint(c, b, m) for c, b, m in points]
    mean, worst = tracking_error(track, "down")
    assert mean >= 0 and worst >= 0
    exact = [TrackingPoint(c, b, b - c) for c, b, _ in points]
    assert tracking_error(exact, "down") == pytest.approx((0.0, 0.0), abs=1e-9)

