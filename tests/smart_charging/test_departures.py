"""Learnt departures: the model from past stays, and the planner front-loading by it."""

from datetime import timedelta

import numpy as np

from smart_charging import Evse, Node, Planner, Prices, Session, Site
from smart_charging.departures import PastStay, learn_departures
from tests.smart_charging.helpers import DAY, at


def test_model_learns_the_stay_ratio_and_needs_enough_history() -> None:
    t0 = at(DAY, 8)
    # half the drivers leave at half their estimated 8 h, half stay the full 8 h
    hist = [PastStay(t0, t0 + timedelta(hours=8), t0 + timedelta(hours=4 if i % 2 else 8))
            for i in range(40)]
    model = learn_departures(hist)
    assert model is not None and model.sessions == 40
    a, e = t0.timestamp(), (t0 + timedelta(hours=10)).timestamp()
    hours = np.array([1.0, 5.0, 9.0, 10.5]) * 3600 + a
    g = model.gone_probability(a, e, hours)  # ratios 0.1, 0.5, 0.9, 1.05
    assert g[0] == 0.0 and 0.4 <= g[1] <= 0.55 and g[2] < 0.55 and g[3] == 1.0
    assert learn_departures(hist[:10]) is None  # too little history: trust the estimates


def test_planner_front_loads_where_drivers_leave_early() -> None:
    # a flat-tariff site where flatness would spread the energy over the whole stay
    node = Node("t", limit_kw=40.0, phase_limit_a=100.0)
    site = Site("s", (node,), tuple(Evse(f"e{i}", "t") for i in range(4)))
    now = at(DAY, 9)
    sessions = [Session(f"s{i}", f"e{i}", now, now + timedelta(hours=8), 12.0)
                for i in range(4)]
    t0 = at(DAY, 0)
    hist = [PastStay(t0, t0 + timedelta(hours=8), t0 + timedelta(hours=2 + (i % 7)))
            for i in range(70)]
    model = learn_departures(hist)
    trusting = Planner().plan(site, sessions, Prices(flat_price=0.3), now)
    wary = Planner().plan(site, sessions, Prices(flat_price=0.3), now, departures=model)
    first_2h = [t for t, s in enumerate(wary.slot_starts) if s < now + timedelta(hours=2)]
    early = wary.power_w[:, first_2h].sum()
    assert early > 1.5 * trusting.power_w[:, first_2h].sum()
    # and it still delivers everything the estimate allows
    assert np.allclose(wary.energy_planned_kwh, 12.0, atol=0.3)


def test_completion_finishes_the_cars_closest_to_full_when_energy_is_short() -> None:
    # 11 kW (48 A) for two hours, 22 kWh, for cars wanting 1, 2, 4, 8 and 16 kWh: with
    # the completion term the plan finishes the four smallest; energy alone (the concave
    # term) shares the shortfall out and finishes none
    from dataclasses import replace

    from smart_charging import PlanSettings, Weights

    node = Node("t", limit_kw=48 * 0.23)
    site = Site("s", (node,), tuple(Evse(f"e{i}", "t") for i in range(5)))
    now = at(DAY, 9)
    sessions = [Session(f"s{i}", f"e{i}", now, now + timedelta(hours=2), 2.0 ** i)
                for i in range(5)]
    base = PlanSettings()
    on = Planner(base).plan(site, sessions, Prices(), now)
    off = Planner(replace(base, weights=Weights(completion=0.0))).plan(
        site, sessions, Prices(), now)
    hours = np.array([(b - a).total_seconds() / 3600 for a, b in zip(
        on.slot_starts, on.slot_ends, strict=True)])

    def done(p):
        return int(((p.planned_kw * hours).sum(axis=1) >= p.energy_needed_kwh - 0.05).sum())
    assert done(on) == 4 and done(off) == 0
    # for (almost) the same energy: it only decides who gets it
    assert (on.planned_kw * hours).sum() >= (off.planned_kw * hours).sum() - 0.1
