"""V2G, stationary storage and solar in the engine (issue 15): the cases it must handle
and the rules it must never break, checked from the plan against the inputs."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import numpy as np
import pytest

from smart_charging import (
    DailyProfile,
    Evse,
    Node,
    Planner,
    Prices,
    Session,
    Site,
    StepSeries,
    TouBand,
    Wiring,
)
from smart_charging import bidirectional as bidi
from smart_charging.model import SolarForecast, StationaryBattery, V2gMode, V2gTerms
from smart_charging.problem import Weights
from tests.smart_charging.helpers import DAY, at, jiangsu_prices

H8 = timedelta(hours=8)
NOW = at(DAY, 17)
LEAVE = at(DAY, 7) + timedelta(days=1)


def shenzhen_prices() -> Prices:
    """Shenzhen's residential EV tariff (the widest spread in the shipped CSV), on
    Jiangsu's band hours (the CSV has no hours)."""
    from datetime import time
    return Prices(bands=(TouBand("peak", time(8), time(21), 1.1121),
                         TouBand("valley", time(21), time(8), 0.2486)), utc_offset=H8)


def household(evening_kw: float, base_kw: float = 120.0, hours: tuple[int, ...] = (18, 19, 20)
              ) -> DailyProfile:
    values = [base_kw] * 24
    for h in hours:
        values[h] = evening_kw
    return DailyProfile(tuple(values), H8)


def terms(mode: V2gMode = V2gMode.EXPORT_ALLOWED, now_kwh: float = 45.0, opted_in: bool = True,
          **kw: float) -> V2gTerms:
    return V2gTerms(opted_in, mode, 60.0, now_kwh, min_soc=0.2, **kw)


def wuhan(evening_kw: float = 245.0, n_v2g: int = 4, n_plain: int = 4,
          v2g: V2gTerms | None = None, bidirectional: bool = True,
          limit_kw: float = 200.0) -> tuple[Site, list[Session]]:
    """A residential transformer whose evening household load (18:00-21:00) is over its
    limit; V2G cars at 15 kW bidirectional DC chargers (Wuhan: 4 x 15 kW x 2.5 h) and
    ordinary 11 kW home chargers."""
    node = Node("tr", limit_kw=limit_kw, load_kw=household(evening_kw))
    evses = tuple(Evse(f"v{i}", "tr", wiring=Wiring.DC, max_power_kw=15.0, v2g=bidirectional,
                       rate_unit="W") for i in range(n_v2g)) + tuple(
        Evse(f"e{i}", "tr", phases=("L1", "L2", "L3"), max_current_a=16) for i in range(n_plain))
    site = Site("wuhan", (node,), evses, utc_offset=H8)
    v2g = terms() if v2g is None else v2g
    sessions = [Session(f"sv{i}", f"v{i}", NOW, LEAVE, 10.0, v2g=v2g) for i in range(n_v2g)]
    sessions += [Session(f"se{i}", f"e{i}", NOW, LEAVE, 15.0) for i in range(n_plain)]
    return site, sessions


def node_total(site: Site, plan, node_id: str = "tr", storage_kw: np.ndarray | None = None,
               solar: SolarForecast | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Non-EV load + every EV's signed power (+ storage - solar) and the limit, per slot,
    recomputed from the site (not from the plan's own totals)."""
    n = site.node(node_id)
    load = n.load_kw.over(plan.slot_starts, plan.slot_ends, "max")
    total = load + plan.power_w.sum(axis=0) / 1000.0
    if storage_kw is not None:
        total = total + storage_kw.sum(axis=0)
    if solar is not None:
        total = total - solar.power_kw.over(plan.slot_starts, plan.slot_ends, "min")
    return total, n.limit_over(plan.slot_starts, plan.slot_ends)


def stored_ok(plan, sessions: list[Session]) -> None:
    """Every battery stays in [reserve, capacity], and each driver leaves with at least
    the energy charging the target alone would have stored (for the `sessions` given:
    leave out one that leaves after the horizon)."""
    for i, sid in enumerate(plan.session_ids):
        s = next((x for x in sessions if x.id == sid), None)
        if s is None or s.v2g is None or not np.isfinite(plan.stored_kwh[i]).any():
            continue
        e = plan.stored_kwh[i][np.isfinite(plan.stored_kwh[i])]
        assert e.min() >= min(s.v2g.reserve, s.v2g.energy_now_kwh) - 1e-3
        assert e.max() <= s.v2g.battery_kwh + 1e-3
        want = s.v2g.energy_now_kwh + s.v2g.charge_efficiency * s.energy_needed_kwh
        assert e[-1] >= min(want, s.v2g.battery_kwh) - 0.02, sid


# --------------------------------------------------------------------------- the cases


def test_evening_peak_over_the_transformer_is_relieved_by_v2g_discharge() -> None:
    site, sessions = wuhan()
    charge_only = Planner().plan(site, [replace(s, v2g=None) for s in sessions],
                                 jiangsu_prices(), NOW)
    total, limit = node_total(site, charge_only)
    assert (total > limit + 1).any()  # shedding EV charging alone cannot keep it under

    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW)
    assert plan.bidirectional and not plan.fallback_used
    total, limit = node_total(site, plan)
    assert np.all(total <= limit + 0.05)
    assert plan.overload_kwh < 0.05
    assert plan.discharged_kwh[:4].sum() > 4 * 20  # ~45 kW x 3 h of relief
    assert np.all(plan.power_w[4:] >= 0)  # ordinary chargers never negative
    evening = [t for t, a in enumerate(plan.slot_starts) if a.hour in (18, 19, 20)]
    assert np.all(plan.power_w[4:, evening] == 0)  # and shed while the node is over
    stored_ok(plan, sessions)


def test_overload_beyond_every_discharge_is_reduced_as_far_as_it_goes() -> None:
    site, sessions = wuhan(evening_kw=300.0)  # 100 kW over, 4 x 15 kW can relieve 60
    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW)
    total, limit = node_total(site, plan)
    over = total - limit
    evening = over > 1
    assert np.allclose(over[evening], 40.0, atol=0.5)  # every car at its 15 kW
    assert plan.overload_kwh == pytest.approx(40.0 * 3, abs=1.0)
    stored_ok(plan, sessions)


@pytest.mark.parametrize("prices, wear, discharges", [
    (shenzhen_prices(), 0.25, True),  # spread 0.86: pays wear and ~10% round-trip loss
    (jiangsu_prices(), 0.25, False),  # spread 0.20: 0.5583 - 0.3583/0.9025 = 0.16 < wear
    (jiangsu_prices(), 0.05, True),  # the same spread pays a cheaper battery
])
def test_tou_arbitrage_only_when_the_spread_pays_wear_and_losses(prices, wear, discharges
                                                                  ) -> None:
    site, sessions = wuhan(evening_kw=120.0, n_plain=0)  # no limit binds
    plan = Planner(replace_weights(wear=wear)).plan(site, sessions, prices, NOW)
    peak = np.array([prices.band_at(a).name == "peak" for a in plan.slot_starts])
    if discharges:
        assert plan.discharged_kwh.sum() > 4 * 20
        assert np.all(plan.power_w[:, ~peak] >= 0)  # never discharges in the valley
        assert np.all(plan.power_w[:, peak] <= 1.0)  # ... nor charges at the peak
    else:
        assert plan.discharged_kwh.sum() < 0.01
    stored_ok(plan, sessions)


def test_demand_response_larger_than_the_ev_load_is_met_by_export() -> None:
    site, sessions = wuhan(evening_kw=120.0, n_plain=0, limit_kw=400.0)
    start, end = at(DAY, 23), at(DAY, 23) + timedelta(hours=1)
    free = at(DAY, 0) - timedelta(days=1)
    # the aggregator asks the site's EVs for -30 kW (export) from 23:00 to 00:00
    target = StepSeries((free, start, end), (np.nan, -30.0, np.nan))
    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW, target_kw=target)
    during = np.array([start <= a < end for a in plan.slot_starts])
    site_kw = plan.power_w.sum(axis=0) / 1000.0
    assert np.all(site_kw[during] < -25.0)
    stored_ok(plan, sessions)


# --------------------------------------------------------------------------- never negative


@pytest.mark.parametrize("case", ["not opted in", "charge only", "not bidirectional"])
def test_sessions_that_may_not_discharge_never_go_negative(case: str) -> None:
    v2g = {"not opted in": terms(opted_in=False),
           "charge only": terms(V2gMode.CHARGE_ONLY)}.get(case, terms())
    site, sessions = wuhan(v2g=v2g, bidirectional=case != "not bidirectional")
    # a stationary battery makes the plan bidirectional, so the rule is tested there
    battery = StationaryBattery("b", "tr", 50.0, 25.0, 10.0, 10.0)
    plan = Planner().plan(site, sessions, shenzhen_prices(), NOW, storage=[battery])
    assert plan.bidirectional
    assert np.all(plan.power_w >= 0)
    assert np.all(plan.discharged_kwh == 0)


def test_charge_only_terms_give_exactly_the_charge_only_plan() -> None:
    site, sessions = wuhan(v2g=terms(V2gMode.CHARGE_ONLY))
    with_terms = Planner().plan(site, sessions, jiangsu_prices(), NOW)
    without = Planner().plan(site, [replace(s, v2g=None) for s in sessions],
                             jiangsu_prices(), NOW)
    assert not with_terms.bidirectional
    assert np.array_equal(with_terms.power_w, without.power_w)


def test_backup_only_never_below_reserve_and_never_exports() -> None:
    site, sessions = wuhan(v2g=terms(V2gMode.BACKUP_ONLY, now_kwh=20.0, reserve_kwh=18.0),
                           evening_kw=120.0, n_plain=0)
    plan = Planner().plan(site, sessions, shenzhen_prices(), NOW)
    stored_ok(plan, sessions)
    total, _ = node_total(site, plan)
    assert np.all(total >= -1e-6)
    e = plan.stored_kwh[np.isfinite(plan.stored_kwh)]
    assert e.min() >= 18.0 - 1e-3


def test_a_car_below_its_reserve_charges_before_it_may_discharge() -> None:
    site, sessions = wuhan(v2g=terms(now_kwh=5.0))  # reserve 12 kWh
    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW)
    assert np.all(plan.discharged_kwh == 0)
    stored_ok(plan, sessions)


def test_discharge_never_leaves_a_driver_short() -> None:
    # a night so tight the cars cannot recharge what relieving the evening would take:
    # the engine relieves only what the drivers' energy allows
    node = Node("tr", limit_kw=200.0, load_kw=household(230.0, base_kw=196.0))
    evses = tuple(Evse(f"v{i}", "tr", wiring=Wiring.DC, max_power_kw=15.0, v2g=True,
                       rate_unit="W") for i in range(4))
    site = Site("tight", (node,), evses, utc_offset=H8)
    sessions = [Session(f"sv{i}", f"v{i}", NOW, LEAVE, 10.0, v2g=terms(now_kwh=15.0))
                for i in range(4)]
    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW)
    stored_ok(plan, sessions)


# --------------------------------------------------------------------------- efficiency


def test_no_simultaneous_charge_and_discharge() -> None:
    """Per pair never both (the solver's own answer, before any netting), and at the
    node no car charges while another discharges unless a limit makes it pay."""
    site, sessions = wuhan(evening_kw=120.0, n_plain=0)
    w = Weights()
    lanes = bidi.build_lanes(site, sessions, shenzhen_prices(), NOW, w)
    qp = bidi.build_bidi_qp(lanes, w)
    from smart_charging.solve import OsqpSession, SolverSettings
    res = OsqpSession(SolverSettings(eps_abs=1e-6, eps_rel=1e-6, max_iter=200000)).solve(qp)
    assert res.ok
    c, d, _, _ = qp.split(res.v)
    assert d.sum() * 0.25 > 20  # it does discharge (the Shenzhen spread pays)
    assert np.max(np.minimum(c, d)) < 0.01
    per_slot_c = np.bincount(lanes.pair_slot, weights=c)
    per_slot_d = np.bincount(lanes.pair_slot, weights=d)
    assert np.max(np.minimum(per_slot_c, per_slot_d)) < 0.05


# --------------------------------------------------------------------------- storage, solar


def test_stationary_battery_relieves_the_peak_and_keeps_its_window() -> None:
    site, sessions = wuhan(n_v2g=0)
    battery = StationaryBattery("b", "tr", 200.0, 150.0, 50.0, 50.0, min_kwh=20.0)
    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW, storage=[battery])
    assert plan.storage_ids == ("b",)
    total, limit = node_total(site, plan, storage_kw=plan.storage_power_kw)
    assert np.all(total <= limit + 0.05)
    e = plan.storage_stored_kwh[0]
    assert e.min() >= 20.0 - 1e-3 and e.max() <= 200.0 + 1e-3
    assert e[-1] >= 150.0 - 0.1  # ends with what it had (solver tolerance)
    assert np.all(plan.power_w >= 0)


def test_solar_is_a_negative_load_that_lets_cars_charge_more() -> None:
    node = Node("tr", limit_kw=40.0, load_kw=household(30.0, base_kw=30.0))
    evses = tuple(Evse(f"e{i}", "tr", phases=("L1", "L2", "L3"), max_current_a=16)
                  for i in range(4))
    site = Site("solar", (node,), evses, utc_offset=H8)
    now = at(DAY, 10)
    sessions = [Session(f"s{i}", f"e{i}", now, at(DAY, 14), 40.0) for i in range(4)]
    sun = SolarForecast("pv", "tr", StepSeries((now - timedelta(days=1),), (30.0,)))
    flat = Prices(flat_price=0.5)
    without = Planner().plan(site, sessions, flat, now)
    with_sun = Planner().plan(site, sessions, flat, now, solar=[sun])
    assert with_sun.bidirectional
    assert with_sun.energy_planned_kwh.sum() > without.energy_planned_kwh.sum() + 50
    total, limit = node_total(site, with_sun, solar=sun)
    assert np.all(total <= limit + 0.05)


# --------------------------------------------------------------------------- boundary


@pytest.mark.parametrize("bad", [
    lambda: V2gTerms(True, V2gMode.EXPORT_ALLOWED, float("nan"), 10.0),
    lambda: V2gTerms(True, V2gMode.EXPORT_ALLOWED, 60.0, float("inf")),
    lambda: V2gTerms(True, V2gMode.EXPORT_ALLOWED, -60.0, 10.0),
    lambda: V2gTerms(True, V2gMode.EXPORT_ALLOWED, 60.0, 70.0),
    lambda: V2gTerms(True, V2gMode.EXPORT_ALLOWED, 60.0, 10.0, max_discharge_kw=-1.0),
    lambda: V2gTerms(True, V2gMode.EXPORT_ALLOWED, 60.0, 10.0, discharge_efficiency=1.2),
    lambda: V2gTerms(True, "sometimes", 60.0, 10.0),
    lambda: StationaryBattery("b", "n", float("nan"), 1.0, 1.0, 1.0),
    lambda: StationaryBattery("b", "n", 10.0, 1.0, -1.0, 1.0),
    lambda: StationaryBattery("b", "n", 10.0, 1.0, 1.0, 1.0, min_kwh=20.0),
    lambda: Evse("e", "n", v2g=True, max_discharge_kw=float("nan")),
    lambda: Session("s", "e", NOW, LEAVE, float("nan"), v2g=terms()),
    lambda: SolarForecast("pv", "n", StepSeries((NOW,), (float("inf"),))),
])
def test_bad_numbers_are_rejected_at_the_boundary(bad) -> None:
    with pytest.raises(ValueError):
        bad()


def test_storage_on_an_unknown_node_is_rejected() -> None:
    site, sessions = wuhan()
    with pytest.raises(ValueError, match="unknown node"):
        Planner().plan(site, sessions, jiangsu_prices(), NOW,
                       storage=[StationaryBattery("b", "nowhere", 10.0, 5.0, 1.0, 1.0)])


def replace_weights(**kw: float):
    from smart_charging import PlanSettings
    return PlanSettings(weights=replace(Weights(), **kw))


def test_export_stays_within_the_reverse_flow_limit() -> None:
    # a full stationary battery allowed to export and to end low could sell 50 kW at
    # the Shenzhen peak; the transformer takes back 15 kW (limit) + 5 kW (own load)
    node = Node("tr", limit_kw=15.0, load_kw=household(5.0, base_kw=5.0))
    site = Site("export", (node,), (), utc_offset=H8)
    battery = StationaryBattery("b", "tr", 200.0, 190.0, 50.0, 50.0, min_kwh=20.0,
                                end_energy_kwh=20.0, export_allowed=True)
    plan = Planner().plan(site, [], shenzhen_prices(), NOW, storage=[battery])
    total, limit = node_total(site, plan, storage_kw=plan.storage_power_kw)
    assert np.all(total >= -limit - 0.05)
    assert total.min() < -limit.max() + 0.5  # and it does use the room it has
    evening = np.array([a < at(DAY, 21) for a in plan.slot_starts])
    assert np.all(plan.storage_power_kw[0, evening] < -19.9)


def test_an_unsafe_bidirectional_plan_falls_back_to_charge_only(monkeypatch) -> None:
    site, sessions = wuhan()
    monkeypatch.setattr(bidi, "violation", lambda *a: 1.0)
    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW)
    assert plan.fallback_used and "charge only" in (plan.fallback_reason or "")
    assert not plan.bidirectional
    assert np.all(plan.power_w >= 0)


def test_a_warm_re_plan_gives_the_cold_answer() -> None:
    """The next plan starts from the last answer (by lane and slot end); that only moves
    where OSQP stops inside its tolerance, not the plan."""
    site, sessions = wuhan()
    warm = Planner()
    warm.plan(site, sessions, jiangsu_prices(), NOW)
    later = NOW + timedelta(minutes=5)
    moved = [replace(s, energy_delivered_kwh=0.2) if s.v2g is None else s for s in sessions]
    a = warm.plan(site, moved, jiangsu_prices(), later)
    b = Planner().plan(site, moved, jiangsu_prices(), later)
    assert a.bidirectional and b.bidirectional
    assert np.allclose(a.discharged_kwh, b.discharged_kwh, atol=0.1)
    assert np.allclose(a.stored_kwh[:4, -1], b.stored_kwh[:4, -1], atol=0.05)
    total, limit = node_total(site, a)
    assert np.all(total <= limit + 0.05)
    stored_ok(a, moved)


def test_line_to_line_chargers_get_no_relief_credit_and_no_row_breaks() -> None:
    """With a 400 V line-to-line charger the phase rows are bounds, not signed sums: a
    discharge counts as added current there, and the plan still holds every row."""
    node = Node("tr", limit_kw=200.0, phase_limit_a=300.0, load_kw=household(245.0))
    evses = (Evse("v0", "tr", phases=("L1",), v2g=True, max_discharge_kw=7.0),
             Evse("v1", "tr", phases=("L2",), v2g=True),
             Evse("x0", "tr", wiring=Wiring.DELTA, phases=("L1", "L2"), voltage_v=400.0))
    site = Site("delta", (node,), evses, utc_offset=H8)
    sessions = [Session("a", "v0", NOW, LEAVE, 10.0, v2g=terms()),
                Session("b", "v1", NOW, LEAVE, 10.0, v2g=terms()),
                Session("c", "x0", NOW, LEAVE, 10.0)]
    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW)
    assert plan.bidirectional and not plan.fallback_used
    assert {q for _, q in plan.rows} >= {"L1/0", "L2/0"}
    stored_ok(plan, sessions)


def test_late_arrivals_and_departures_after_the_horizon() -> None:
    site, _ = wuhan(n_plain=0)
    sessions = [Session("a", "v0", NOW, NOW + timedelta(hours=30), 10.0, v2g=terms()),
                Session("b", "v1", NOW + timedelta(hours=2), LEAVE, 10.0, v2g=terms()),
                Session("c", "v2", NOW, LEAVE, 0.0, v2g=terms(now_kwh=60.0))]
    plan = Planner().plan(site, sessions, jiangsu_prices(), NOW)
    assert plan.bidirectional and not plan.fallback_used
    total, limit = node_total(site, plan)
    arrive = np.array([a < NOW + timedelta(hours=2) for a in plan.slot_starts])
    assert np.all(plan.power_w[1, arrive] == 0)  # nothing before the car is there
    # two cars relieve 30 of the 45 kW until the third comes, and the first runs low
    # before 21:00: what is left over is what the plan reports
    evening = np.array([a.hour in (18,) for a in plan.slot_starts])
    assert np.allclose(total[evening], 245.0 - 30.0, atol=0.05)
    over_kwh = float(np.sum(np.maximum(total - limit, 0.0)) * 0.25)
    assert plan.overload_kwh == pytest.approx(over_kwh, abs=0.1)
    stored_ok(plan, sessions[1:])
    # a car leaving after the horizon ends it with at least what it had
    e = plan.stored_kwh[0][np.isfinite(plan.stored_kwh[0])]
    assert e[-1] >= 45.0 - 0.02 and e.min() >= 12.0 - 1e-3
