"""Baselines and settlement (csms/settlement.py): the arithmetic a grid programme pays by."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from csms.settlement import BaselineMethod, Terms, adjusted, mean_profile, settle, similar_days

T0 = datetime(2026, 12, 4, 18, tzinfo=UTC)
STARTS = [T0 + timedelta(minutes=15 * i) for i in range(4)]


def test_similar_days_skip_event_days_other_day_types_and_days_without_data() -> None:
    friday = date(2026, 12, 4)
    available = {date(2026, 12, d) for d in range(1, 4)} | {date(2026, 11, d)
                                                             for d in range(20, 31)}
    method = BaselineMethod(days=3)
    days = similar_days(friday, {date(2026, 12, 2)}, available, method)
    assert days == [date(2026, 12, 3), date(2026, 12, 1), date(2026, 11, 30)]  # no Sat/Sun
    weekend = similar_days(date(2026, 12, 5), set(), available, method)
    assert all(d.weekday() >= 5 for d in weekend) and len(weekend) == 3
    anyday = similar_days(friday, set(), available, BaselineMethod(days=2, similar="any"))
    assert anyday == [date(2026, 12, 3), date(2026, 12, 2)]


def test_multiplicative_adjustment_stays_within_its_cap() -> None:
    method = BaselineMethod(adjustment="multiplicative", adjustment_cap=0.2)
    scaled, factor = adjusted([10.0, 10.0], 10.0, 30.0, method)  # a morning run-up
    assert factor == pytest.approx(1.2) and scaled == pytest.approx([12.0, 12.0])
    _, factor = adjusted([10.0], 10.0, 9.0, method)
    assert factor == pytest.approx(0.9)
    moved, shift = adjusted([5.0, 1.0], 4.0, 2.0, BaselineMethod(adjustment="additive"))
    assert shift == -2.0 and moved == [3.0, 0.0]  # never a negative baseline


def test_settlement_pays_up_to_the_cap_and_penalises_under_the_threshold() -> None:
    terms = Terms(committed_kw=10, price_per_kwh=2.0, threshold=0.8, penalty_per_kwh=1.0)
    full = settle(STARTS, 0.25, [20.0] * 4, [10.0] * 4, terms, "down")
    assert (full.delivered_kwh, full.committed_kwh, full.performance) == (10.0, 10.0, 1.0)
    assert (full.payment, full.penalty, full.net) == (20.0, 0.0, 20.0)
    over = settle(STARTS, 0.25, [20.0] * 4, [0.0] * 4, terms, "down")
    assert over.payment == 24.0  # 20 kWh delivered, paid up to 120% of 10
    short = settle(STARTS, 0.25, [20.0] * 4, [15.0] * 4, terms, "down")
    assert short.performance == 0.5 and short.payment == 0 and short.penalty == 5.0
    up = settle(STARTS, 0.25, [5.0] * 4, [15.0] * 4, terms, "up")  # absorb: metered above
    assert up.delivered_kwh == 10.0


@given(st.lists(st.floats(0, 500), min_size=1, max_size=96),
       st.floats(0, 500), st.floats(0, 10), st.floats(0.01, 1.5))
def test_settlement_invariants(baseline: list[float], metered_kw: float, price: float,
                               threshold: float) -> None:
    starts = [T0 + timedelta(minutes=15 * i) for i in range(len(baseline))]
    metered = [metered_kw] * len(baseline)
    terms = Terms(committed_kw=50, price_per_kwh=price, threshold=threshold,
                  penalty_per_kwh=1.0)
    s = settle(starts, 0.25, baseline, metered, terms, "down")
    assert s.delivered_kwh == pytest.approx(
        sum(b - m for b, m in zip(baseline, metered, strict=True)) * 0.25, abs=0.05)
    assert 0 <= s.payment <= price * s.committed_kwh * terms.pay_cap + 0.01
    assert s.payment == 0 or s.penalty == 0  # paid or penalised, never both
    assert s.net == pytest.approx(s.payment - s.penalty, abs=0.01)


def test_mean_profile_and_bad_methods() -> None:
    assert mean_profile([[1.0, 2.0], [3.0, 4.0]]) == [2.0, 3.0]
    with pytest.raises(ValueError):
        BaselineMethod(days=0)
    with pytest.raises(ValueError):
        settle(STARTS, 0.25, [1.0], [1.0, 2.0], Terms(1), "down")
