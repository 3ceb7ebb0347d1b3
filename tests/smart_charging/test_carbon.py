"""The carbon term: emission factors weighed beside price as a per-slot cost."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from smart_charging import Carbon, Evse, Node, Planner, Prices, Session, Site, StepSeries
from smart_charging.config import carbon_from_dict

T0 = datetime(2026, 12, 5, 0, tzinfo=UTC)
SITE = Site("c", (Node("root", None, limit_kw=50.0),),
            (Evse("e1", "root", station_id="CS1"),))
# dirty for the first two hours (coal at the margin), clean for the next two (wind)
FACTORS = StepSeries((T0, T0 + timedelta(hours=2)), (1.0, 0.2))
SESSION = Session("s1", "e1", T0, T0 + timedelta(hours=4), 7.0)


def _kwh_in_first_two_hours(prices: Prices) -> float:
    plan = Planner().plan(SITE, [SESSION], prices, T0)
    hours = np.array([(b - a).total_seconds() / 3600 for a, b in
                      zip(plan.slot_starts, plan.slot_ends, strict=True)])
    kwh = plan.planned_kw[0] * hours
    first = np.array([s < T0 + timedelta(hours=2) for s in plan.slot_starts])
    assert kwh.sum() == pytest.approx(7.0, abs=0.05)
    return float(kwh[first].sum())


def test_a_positive_carbon_weight_moves_load_to_low_carbon_slots() -> None:
    flat = Prices(flat_price=0.5)
    unweighted = replace(flat, carbon=Carbon(FACTORS, 0.0))  # reported, not optimised
    weighted = replace(flat, carbon=Carbon(FACTORS, 0.1))  # 0.1 CNY/kg: 0.08 CNY/kWh apart
    assert _kwh_in_first_two_hours(unweighted) > 3.0  # spread flat over the four hours
    assert _kwh_in_first_two_hours(weighted) < 0.1  # all in the clean hours


def test_slot_cost_adds_the_weighted_factor_to_the_price() -> None:
    starts = [T0 + timedelta(hours=h) for h in range(4)]
    ends = [t + timedelta(hours=1) for t in starts]
    prices = Prices(flat_price=0.5, carbon=Carbon(FACTORS, 0.1))
    assert prices.slot_cost(starts, ends) == pytest.approx([0.6, 0.6, 0.52, 0.52])
    assert Prices(flat_price=0.5).slot_cost(starts, ends) == pytest.approx([0.5] * 4)


def test_carbon_from_a_site_file_and_bad_values() -> None:
    carbon = carbon_from_dict({"site": {"utc_offset": "+08:00"}, "carbon": {
        "kg_per_kwh_daily": [0.8] * 12 + [0.4] * 12, "weight_per_kg": 0.05}})
    assert carbon.weight_per_kg == 0.05
    noon_local = datetime(2026, 12, 5, 4, 30, tzinfo=UTC)  # 12:30 at +08:00
    assert carbon.factors is not None
    assert float(carbon.factors.over([noon_local], [noon_local + timedelta(minutes=15)],
                                     "max")[0]) == 0.4
    assert carbon_from_dict({}) == Carbon()
    with pytest.raises(ValueError, match="unknown key"):
        carbon_from_dict({"carbon": {"weight": 1}})
    with pytest.raises(ValueError):
        Carbon(weight_per_kg=float("nan"))
    with pytest.raises(ValueError):
        Carbon(StepSeries((T0,), (-1.0,)))
