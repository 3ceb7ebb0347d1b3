"""The bidirectional fast path (sparse QP on OSQP) against the readable cvxpy model
(smart_charging/reference.py) on small instances, and property tests on random ones."""

from __future__ import annotations

from datetime import timedelta

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from smart_charging import DailyProfile, Evse, Node, Planner, Prices, Session, Site, StepSeries
from smart_charging import bidirectional as bidi
from smart_charging.model import SolarForecast, StationaryBattery, V2gMode, V2gTerms, Wiring
from smart_charging.problem import Weights
from smart_charging.reference import V2gReference
from smart_charging.solve import OsqpSession, SolverSettings
from tests.smart_charging.helpers import DAY, at

H8 = timedelta(hours=8)


def _instance(seed: int, with_storage: bool):
    """Three V2G cars (one backup only), one ordinary car, 6 hours from 17:00 with an
    evening household peak over the limit and a price step at 19:00."""
    rng = np.random.default_rng(seed)
    now = at(DAY, 17)
    load = StepSeries(tuple(now + timedelta(hours=h) for h in range(6)),
                      tuple(float(v) for v in rng.uniform(20.0, 55.0, 6)))
    node = Node("t", limit_kw=40.0, phase_limit_a=90.0, load_kw=load)
    v2g = [Evse(f"v{i}", "t", wiring=Wiring.DC, max_power_kw=10.0, v2g=True, rate_unit="W")
           for i in range(3)]
    evses = (*v2g, Evse("e0", "t", phases=("L1",), max_current_a=32))
    site = Site("s", (node,), evses, utc_offset=H8)
    modes = (V2gMode.EXPORT_ALLOWED, V2gMode.EXPORT_ALLOWED, V2gMode.BACKUP_ONLY)
    sessions = [Session(f"s{i}", f"v{i}", now - timedelta(hours=1),
                        now + timedelta(hours=float(rng.uniform(3.0, 6.0))),
                        float(rng.uniform(2.0, 12.0)),
                        v2g=V2gTerms(True, modes[i], 50.0, float(rng.uniform(20.0, 40.0)),
                                     min_soc=0.2)) for i in range(3)]
    sessions.append(Session("s3", "e0", now, now + timedelta(hours=5), 8.0))
    prices = Prices(per_interval=StepSeries((now, now + timedelta(hours=2)), (0.9, 0.3)))
    storage = [StationaryBattery("b", "t", 30.0, 15.0, 8.0, 8.0, min_kwh=3.0)] \
        if with_storage else []
    solar = [SolarForecast("pv", "t", StepSeries((now, now + timedelta(hours=1)), (6.0, 0.0)))] \
        if with_storage else []
    return site, sessions, prices, now, storage, solar


def _fast(lanes: bidi.Lanes, w: Weights, target: StepSeries | None = None):
    qp = bidi.build_bidi_qp(lanes, w, target_kw=target)
    res = OsqpSession(SolverSettings(eps_abs=1e-6, eps_rel=1e-6, max_iter=400000)).solve(qp)
    assert res.ok, res.status
    c, d, _, s = qp.split(res.v)
    return c, d, s


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("with_storage", [False, True])
def test_osqp_path_matches_the_cvxpy_model(seed: int, with_storage: bool) -> None:
    site, sessions, prices, now, storage, solar = _instance(seed, with_storage)
    w = Weights()
    lanes = bidi.build_lanes(site, sessions, prices, now, w, storage, solar, 15, 24)
    ref = V2gReference(lanes, w)
    ref.update(lanes)
    best = ref.solve()
    c, d, s = _fast(lanes, w)
    got, worst = ref.evaluate(lanes, c, d, s)
    assert got == pytest.approx(best, rel=1e-4, abs=1e-3)
    assert worst < 1e-3  # the raw OSQP answer holds every constraint to its tolerance
    # and after the engine's projection, every limit and window exactly
    pc, pd = bidi.project(lanes, c, d)
    assert bidi.violation(lanes, pc, pd) < 1e-9
    _, worst = ref.evaluate(lanes, pc, pd, s)
    assert worst < 0.01  # only the energy rows, by the projection's shave


def test_the_next_interval_only_updates_numbers() -> None:
    """Same layout, new prices and loads: the Parameters take them, no rebuild."""
    site, sessions, prices, now, storage, solar = _instance(3, True)
    w = Weights()
    lanes = bidi.build_lanes(site, sessions, prices, now, w, storage, solar, 15, 24)
    ref = V2gReference(lanes, w)
    for spread in (0.2, 0.8):
        p2 = Prices(per_interval=StepSeries((now, now + timedelta(hours=2)),
                                            (0.3 + spread, 0.3)))
        lanes2 = bidi.build_lanes(site, sessions, p2, now, w, storage, solar, 15, 24)
        ref.update(lanes2)
        best = ref.solve()
        c, d, s = _fast(lanes2, w)
        got, worst = ref.evaluate(lanes2, c, d, s)
        assert got == pytest.approx(best, rel=1e-4, abs=1e-3)
        assert worst < 1e-3


def test_dispatch_tracking_matches_the_cvxpy_model() -> None:
    site, sessions, prices, now, storage, solar = _instance(4, False)
    target = StepSeries((now - timedelta(days=1), now + timedelta(hours=1),
                         now + timedelta(hours=2)), (np.nan, -15.0, np.nan))
    w = Weights()
    lanes = bidi.build_lanes(site, sessions, prices, now, w, storage, solar, 15, 24)
    ref = V2gReference(lanes, w, tracking=True)
    ref.update(lanes, target)
    best = ref.solve()
    c, d, s = _fast(lanes, w, target)
    got, worst = ref.evaluate(lanes, c, d, s)
    assert got == pytest.approx(best, rel=1e-4, abs=1e-3)
    assert worst < 1e-3


# --------------------------------------------------------------------------- properties


@st.composite
def sites(draw):
    """1-4 V2G cars (any mode, opted in or not) and 0-2 ordinary cars on one node whose
    evening excess over its limit the cars' discharge could cover with energy to spare."""
    n_v2g = draw(st.integers(1, 4))
    n_plain = draw(st.integers(0, 2))
    dis_kw = draw(st.floats(5.0, 15.0))
    limit = 100.0
    excess = draw(st.floats(0.0, 0.5)) * n_v2g * dis_kw
    hours = [70.0] * 24
    for h in (18, 19, 20):
        hours[h] = limit + excess
    node = Node("t", limit_kw=limit, load_kw=DailyProfile(tuple(hours), H8))
    evses = tuple(Evse(f"v{i}", "t", wiring=Wiring.DC, max_power_kw=15.0, v2g=True,
                       max_discharge_kw=dis_kw, rate_unit="W") for i in range(n_v2g)) + tuple(
        Evse(f"e{i}", "t", phases=("L1", "L2", "L3"), max_current_a=16) for i in range(n_plain))
    site = Site("p", (node,), evses, utc_offset=H8)
    now = at(DAY, 17)
    sessions = []
    for i in range(n_v2g):
        cap = draw(st.floats(40.0, 80.0))
        reserve = draw(st.floats(0.1, 0.3)) * cap
        # enough above the reserve for every car's share of the whole excess, twice
        e0 = draw(st.floats(min(reserve + 2 * 3 * excess / n_v2g / 0.9, cap), cap))
        mode = draw(st.sampled_from(list(V2gMode)))
        opted = draw(st.booleans())
        need = draw(st.floats(0.0, min(20.0, (cap - e0) / 0.95)))
        sessions.append(Session(f"sv{i}", f"v{i}", now - timedelta(minutes=30),
                                at(DAY, 7) + timedelta(days=1), need,
                                v2g=V2gTerms(opted, mode, cap, e0, reserve_kwh=reserve)))
    for i in range(n_plain):
        sessions.append(Session(f"se{i}", f"e{i}", now, at(DAY, 7) + timedelta(days=1),
                                draw(st.floats(1.0, 20.0))))
    price = draw(st.sampled_from([(0.5583, 0.3583), (1.1121, 0.2486), (0.5, 0.5)]))
    from datetime import time

    from smart_charging import TouBand
    prices = Prices(bands=(TouBand("peak", time(8), time(21), price[0]),
                           TouBand("valley", time(21), time(8), price[1])), utc_offset=H8)
    all_discharge = all(s.v2g is not None and s.v2g.may_discharge for s in sessions[:n_v2g])
    storage, solar = [], []
    if draw(st.booleans()):  # a site battery behind the meter, and some evening sun
        size = draw(st.floats(20.0, 100.0))
        storage = [StationaryBattery("b", "t", size, draw(st.floats(0.2, 1.0)) * size,
                                     20.0, 20.0, min_kwh=0.1 * size)]
        sun = [0.0] * 24
        sun[17] = draw(st.floats(0.0, 20.0))
        solar = [SolarForecast("pv", "t", DailyProfile(tuple(sun), H8))]
    return site, sessions, prices, now, all_discharge, storage, solar


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(sites())
def test_random_sites_keep_energy_windows_and_limits(case) -> None:
    site, sessions, prices, now, all_discharge, storage, solar = case
    plan = Planner().plan(site, sessions, prices, now, storage=storage, solar=solar)
    node = site.node("t")
    load = node.load_kw.over(plan.slot_starts, plan.slot_ends, "max")
    for f in solar:
        load = load - f.power_kw.over(plan.slot_starts, plan.slot_ends, "min")
    total = load + plan.power_w.sum(axis=0) / 1000.0
    if plan.storage_power_kw is not None:
        total = total + plan.storage_power_kw.sum(axis=0)
        for b, e in zip(storage, plan.storage_stored_kwh, strict=True):
            assert e.min() >= b.min_kwh - 1e-3 and e.max() <= b.capacity_kwh + 1e-3
    limit = node.limit_over(plan.slot_starts, plan.slot_ends)
    assert np.all(total <= np.maximum(limit, load) + 0.05)  # EVs never make it worse
    if all_discharge:  # the cars can cover the excess: the limit holds
        assert np.all(total <= limit + 0.05)
    by_id = {s.id: s for s in sessions}
    for i, sid in enumerate(plan.session_ids):
        s = by_id[sid]
        may = s.v2g is not None and s.v2g.may_discharge
        if not may or not plan.bidirectional:
            assert np.all(plan.power_w[i] >= 0)
            continue
        e = plan.stored_kwh[i][np.isfinite(plan.stored_kwh[i])]
        assert e.min() >= s.v2g.reserve - 1e-3
        assert e.max() <= s.v2g.battery_kwh + 1e-3
        want = min(s.v2g.energy_now_kwh + 0.95 * s.energy_needed_kwh, s.v2g.battery_kwh)
        assert e[-1] >= want - 0.02  # the driver's energy at departure
        if s.v2g.mode == V2gMode.BACKUP_ONLY and all(
                x.v2g is None or x.v2g.mode != V2gMode.EXPORT_ALLOWED for x in sessions):
            assert np.all(total >= -1e-6)  # nothing exports


def test_another_layout_needs_a_new_model() -> None:
    site, sessions, prices, now, storage, solar = _instance(5, False)
    w = Weights()
    lanes = bidi.build_lanes(site, sessions, prices, now, w, storage, solar, 15, 24)
    ref = V2gReference(lanes, w)
    fewer = bidi.build_lanes(site, sessions[:2], prices, now, w, storage, solar, 15, 24)
    with pytest.raises(ValueError, match="layout"):
        ref.update(fewer)
