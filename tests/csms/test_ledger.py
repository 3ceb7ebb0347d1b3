"""The revenue split (csms/ledger.py) and the carbon arithmetic (csms/carbon.py): pure."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.carbon import emissions, factor_at, for_engine, session_window, uncontrolled
from csms.ledger import Contribution, Shares, apportion, pseudonym, split
from csms.store.carbon import FactorInterval
from smart_charging.model import Carbon, DailyProfile

T0 = datetime(2026, 12, 5, 10, tzinfo=UTC)
SHARES = Shares(0.2, 0.3, 0.5)


def test_drivers_share_by_contribution_and_the_records_add_up() -> None:
    records = split(Decimal("100.00"), SHARES, "east", "Suzhou Property Co.",
                    [Contribution("drv-a", 2.0), Contribution("drv-b", 1.0),
                     Contribution("drv-c", 0.0)])
    amounts = {r.payee: r.amount for r in records}
    assert amounts == {"east": Decimal("20.00"), "Suzhou Property Co.": Decimal("30.00"),
                       "drv-a": Decimal("33.33"), "drv-b": Decimal("16.67")}
    assert [r.party for r in records] == ["aggregator", "site_operator", "driver", "driver"]


def test_no_contributor_leaves_the_pool_to_the_operator_and_drivers_never_pay() -> None:
    alone = split(Decimal("10"), SHARES, "east", "op", [Contribution("drv-a", 0.0)])
    assert [(r.party, r.amount) for r in alone] == [("aggregator", Decimal("2.00")),
                                                     ("site_operator", Decimal("8.00"))]
    penalty = split(Decimal("-10"), SHARES, "east", "op", [Contribution("drv-a", 5.0)])
    assert [(r.party, r.amount) for r in penalty] == [("aggregator", Decimal("-4.00")),
                                                       ("site_operator", Decimal("-6.00"))]
    with pytest.raises(ValueError):
        Shares(0.5, 0.5, 0.5)


@given(st.decimals(min_value=-10_000, max_value=10_000, places=2),
       st.lists(st.floats(0, 50), max_size=20))
def test_split_invariants(net: Decimal, kwh: list[float]) -> None:
    records = split(net, SHARES, "a", "o",
                    [Contribution(f"drv-{i}", k) for i, k in enumerate(kwh)])
    assert sum(r.amount for r in records) == net
    assert all(r.amount >= 0 for r in records if r.party == "driver")


def test_a_dispatch_pays_the_sites_that_delivered_and_penalises_the_short_ones() -> None:
    # paid by delivery: the site that delivered nothing (or drew more) gets nothing
    assert apportion(Decimal("10"), [3.0, 1.0, -2.0], [2.0, 2.0, 2.0]) == [
        Decimal("7.50"), Decimal("2.50"), Decimal("0.00")]
    # a penalty by shortfall against each share (drawing more than the baseline is short
    # by more than the share): the site that delivered its share pays none
    assert apportion(Decimal("-9"), [5.0, 1.0, -2.0], [5.0, 4.0, 4.0]) == [
        Decimal("0.00"), Decimal("-3.00"), Decimal("-6.00")]
    # nobody short (over-delivery under the portfolio's threshold cannot happen, but a
    # rounding can): by share
    assert apportion(Decimal("-1"), [2.0, 4.0], [1.0, 3.0]) == [Decimal("-0.25"),
                                                                 Decimal("-0.75")]


@given(st.decimals(min_value=-10_000, max_value=10_000, places=2),
       st.lists(st.tuples(st.floats(-50, 50), st.floats(0, 50)), min_size=1, max_size=8))
def test_apportion_adds_up_and_never_pays_a_non_deliverer(
        net: Decimal, sites: list[tuple[float, float]]) -> None:
    delivered, owed = [d for d, _ in sites], [o for _, o in sites]
    parts = apportion(net, delivered, owed)
    assert sum(parts) == net.quantize(Decimal("0.01"))
    for part, d, o in zip(parts, delivered, owed, strict=True):
        if net > 0 and d <= 0 and any(dd > 0 for dd in delivered):
            assert part == 0
        if net > 0:
            assert part >= 0
        if net < 0:
            assert part <= 0
        if net < 0 and d >= o and any(od - dd > 0 for dd, od in sites):
            assert part == 0


def test_pseudonyms_are_keyed_and_stable() -> None:
    assert pseudonym(b"k1", "CARD-A") == pseudonym(b"k1", "CARD-A")
    assert pseudonym(b"k1", "CARD-A") != pseudonym(b"k2", "CARD-A")
    assert "CARD" not in pseudonym(b"k1", "CARD-A")


def test_factors_stored_over_configured_and_unknown_stays_unknown() -> None:
    configured = DailyProfile((0.8,))
    stored = [FactorInterval(T0, T0 + timedelta(hours=1), 0.5)]
    times = [T0 - timedelta(minutes=1), T0, T0 + timedelta(hours=1)]
    assert factor_at(times, configured, stored) == [0.8, 0.5, 0.8]
    assert all(math.isnan(f) for f in factor_at(times, None, []))
    engine = for_engine(Carbon(None, 0.1), stored, T0 - timedelta(hours=1),
                        T0 + timedelta(hours=3))
    assert engine.factors is not None and engine.factors.values == (0.5, 0.5, 0.5)  # gaps: mean
    e = emissions([1.0, 2.0], [2.0, 2.0], [0.5, math.nan], 60)
    assert (e.energy_kwh, e.emissions_kg, e.avoided_kg) == (3.0, None, None)


def test_a_session_contributes_what_it_did_not_draw_against_charging_uncontrolled() -> None:
    assert uncontrolled(6.0, 1.5, 20) == pytest.approx([6.0] * 15 + [0.0] * 5)
    # 7 kW before, 2 kW for the two-hour window, 7 kW for an hour after: it needed 11 kWh
    samples = [(T0 - timedelta(minutes=30), 7000.0)] + [
        (T0 + timedelta(minutes=m), 2000.0) for m in range(0, 120, 10)] + [
        (T0 + timedelta(minutes=m), 7000.0) for m in range(120, 180, 10)]
    w = session_window(samples, T0 - timedelta(minutes=30), T0 + timedelta(hours=3), T0,
                       T0 + timedelta(hours=4), [0.5] * 120)
    assert w.emissions.energy_kwh == pytest.approx(4.0)
    assert w.emissions.baseline_kwh == pytest.approx(11.0, abs=0.01)
    assert w.contribution_kwh == pytest.approx(7.0, abs=0.01)
    assert w.emissions.avoided_kg == pytest.approx(3.5, abs=0.01)
