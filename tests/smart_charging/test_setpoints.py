from datetime import timedelta

import numpy as np
import pytest

from smart_charging import (
    Evse,
    Node,
    Prices,
    Rounding,
    Session,
    Site,
    build_grid,
    equal_share,
    project,
    round_setpoints,
    uncontrolled,
    violations,
)
from smart_charging.baselines import water_fill
from smart_charging.model import Wiring
from tests.smart_charging.helpers import DAY, at


def _grid(limit_kw: float, n: int, hours: float = 2.0, phase_limit_a: float | None = None,
          energy: float = 50.0, evse_kw: dict | None = None):
    node = Node("t", limit_kw=limit_kw, phase_limit_a=phase_limit_a)
    evses = tuple(Evse(f"e{i}", "t", **(evse_kw or {})) for i in range(n))
    site = Site("s", (node,), evses)
    now = at(DAY, 1)
    sessions = [Session(f"s{i}", f"e{i}", now, now + timedelta(hours=hours), energy)
                for i in range(n)]
    return build_grid(site, sessions, Prices(flat_price=0.3), now, 15, int(hours * 4))


def test_rounding_never_lands_between_zero_and_the_minimum() -> None:
    g = _grid(100.0, 4)
    rng = np.random.default_rng(0)
    x = project(g, rng.uniform(0, 3.0, g.n_pairs))  # 0-13 A, many below 6 A
    sp = round_setpoints(g, x)
    on = sp.value > 0
    assert (sp.value[on] >= 6.0).all()
    assert np.allclose(sp.value, np.round(sp.value))  # whole amps
    assert violations(g, sp.power_kw) <= 1e-9


def test_rounding_does_not_break_a_tight_limit() -> None:
    # two cars planned at 6.5 A each under a 13.9 A-equivalent limit: 7 + 7 would not fit
    limit = 13.9 * 0.23
    g = _grid(limit, 2)
    x = np.full(g.n_pairs, 6.5 * 0.23)
    sp = round_setpoints(g, x)
    per_slot = np.bincount(g.pair_slot, weights=sp.power_kw)
    assert per_slot.max() <= limit + 1e-9
    assert set(np.unique(sp.value)) <= {0.0, 6.0, 7.0}


def test_low_plan_alternates_instead_of_starving() -> None:
    # 3 A planned for 2 h, all the car needs: below the 6 A minimum every slot, but
    # the energy is kept
    g = _grid(100.0, 1, energy=3.0 * 0.23 * 2.0)
    x = np.full(g.n_pairs, 3.0 * 0.23)
    sp = round_setpoints(g, x)
    assert set(np.unique(sp.value)) == {0.0, 6.0}
    delivered = (sp.power_kw * g.pair_hours).sum()
    assert delivered == pytest.approx((x * g.pair_hours).sum(), abs=0.2)


def test_idle_room_goes_to_short_cars_earliest_departure_first() -> None:
    # 4 cars planned at 8 A under a 11.5 kW (50 A) limit, all short of their energy:
    # rounding alone sends 32 A and leaves 18 A idle; the fill gives it to the cars
    # leaving first, in whole amps, and no row breaks
    node = Node("t", limit_kw=50 * 0.23)
    site = Site("s", (node,), tuple(Evse(f"e{i}", "t") for i in range(4)))
    now = at(DAY, 1)
    sessions = [Session(f"s{i}", f"e{i}", now, now + timedelta(hours=2 + i), 30.0)
                for i in range(4)]
    g = build_grid(site, sessions, Prices(), now, 15, 20)
    x = np.full(g.n_pairs, 8.0 * 0.23)
    off = round_setpoints(g, x, Rounding(fill_short=False))
    on = round_setpoints(g, x, Rounding())
    first = g.pair_slot == 0
    assert off.value[first].sum() == 32.0
    amps = on.value[first][np.argsort(g.pair_session[first])]
    assert amps.sum() == 50.0 and list(amps) == [26.0, 8.0, 8.0, 8.0]
    assert violations(g, on.power_kw) <= 1e-9
    # a car the plan serves in full gets nothing extra: no shifting against the plan
    full = build_grid(site, [Session("a", "e0", now, now + timedelta(hours=2), 1.0)],
                      Prices(), now, 15, 8)
    xa = np.where(full.pair_slot == 0, 0.0, 1.0 / 1.75)
    assert round_setpoints(full, xa).value[full.pair_slot == 0].sum() == 0.0


def test_rate_unit_watts_rounds_to_whole_watts_and_dc_has_no_current() -> None:
    g = _grid(100.0, 2, evse_kw={"rate_unit": "W"})
    x = np.full(g.n_pairs, 3.3333)
    sp = round_setpoints(g, x)
    assert np.allclose(sp.value, np.round(sp.value))
    assert sp.value.max() >= 3333.0
    dc = _grid(200.0, 2, evse_kw={"wiring": Wiring.DC, "max_power_kw": 50.0,
                                  "min_power_kw": 5.0, "phases": ("L1", "L2", "L3"),
                                  "rate_unit": "W"}, energy=40.0)  # the plan's energy
    sp = round_setpoints(dc, np.full(dc.n_pairs, 20.0))
    assert np.isnan(sp.current_a).all()
    assert np.allclose(sp.power_kw, 20.0)


def test_projection_makes_any_schedule_safe() -> None:
    g = _grid(20.0, 6, phase_limit_a=40.0)
    rng = np.random.default_rng(1)
    for _ in range(20):
        x = rng.uniform(-5, 20, g.n_pairs)
        x[rng.integers(0, g.n_pairs)] = np.nan
        y = project(g, x)
        assert violations(g, y) <= 1e-9
        assert (g.delivered_kwh(y) <= g.need_kwh + 1e-9).all()


def test_water_fill_is_equal_until_a_cap_binds() -> None:
    coef = np.ones((1, 3))
    rate = water_fill(coef, np.array([9.0]), np.array([1.0, 7.0, 7.0]))
    assert rate == pytest.approx([1.0, 4.0, 4.0])
    phase = np.array([[1.0, 1.0, 0.0], [0.0, 0.0, 1.0]])  # two rows, different members
    rate = water_fill(phase, np.array([4.0, 10.0]), np.full(3, 7.0))
    assert rate == pytest.approx([2.0, 2.0, 7.0])


def test_equal_share_respects_limits_uncontrolled_does_not() -> None:
    g = _grid(10.0, 5, phase_limit_a=30.0)
    assert violations(g, equal_share(g)) <= 1e-9
    assert violations(g, uncontrolled(g)) > 1.0


def test_line_to_line_and_three_phase_coefficients() -> None:
    delta = Evse("d", "t", wiring=Wiring.DELTA, phases=("L1", "L2"), voltage_v=208.0)
    assert delta.max_kw == pytest.approx(32 * 0.208)
    # linear bound: each of the two phases carries the full EVSE current
    assert delta.phase_amps_per_kw("L1") * delta.max_kw == pytest.approx(32.0)
    assert delta.phase_amps_per_kw("L3") == 0.0
    three = Evse("w", "t", phases=("L1", "L2", "L3"), max_current_a=16.0)
    assert three.max_kw == pytest.approx(16 * 0.69)
    assert three.phase_amps_per_kw("L2") * three.max_kw == pytest.approx(16.0)


def test_small_remainder_is_delivered_now_not_spread_below_the_minimum() -> None:
    # 0.2 kWh over 2 h: the solver spreads it at ~0.1 kW, far under 6 A in every slot
    g = _grid(100.0, 1, energy=0.2)
    x = np.full(g.n_pairs, 0.2 / 2.0)
    sp = round_setpoints(g, x)
    assert sp.value[0] == 6.0
    assert (sp.power_kw * g.pair_hours).sum() == pytest.approx(0.2, abs=0.2)
    assert violations(g, sp.power_kw) <= 1e-9


def test_coarse_current_step_is_respected_and_safe() -> None:
    """A station taking only 0/8/16/24/32 A gets only those, inside every limit, and
    keeps its energy over the slots (the carry turns 10 A into 8/16 A alternation)."""
    g = _grid(100.0, 3, phase_limit_a=40.0,
              evse_kw={"min_current_a": 8.0, "current_step_a": 8.0})
    rng = np.random.default_rng(3)
    x = project(g, rng.uniform(0, 2.8, g.n_pairs))
    sp = round_setpoints(g, x)
    assert set(np.unique(sp.current_a)) <= {0.0, 8.0, 16.0, 24.0, 32.0}
    assert violations(g, sp.power_kw) <= 1e-9
    flat = project(g, np.full(g.n_pairs, 10 * 0.23))  # 10 A everywhere
    # the carry rule alone (these cars are short of 50 kWh: the fill would top up slot 0)
    got = g.delivered_kwh(round_setpoints(g, flat, Rounding(fill_short=False)).power_kw)
    assert np.allclose(got, g.delivered_kwh(flat), atol=8 * 0.23 * 0.25 + 1e-9)


def test_tiny_remainder_gets_the_minimum_now() -> None:
    """40 Wh left is under half a 15-minute slot at 6 A: it still gets 6 A in the first
    slot (re-planned every 5 minutes it would otherwise never finish)."""
    g = _grid(100.0, 1, energy=0.04)
    x = np.zeros(g.n_pairs)
    x[0] = 0.04 / g.pair_hours[0]
    sp = round_setpoints(g, x)
    assert sp.value[0] == 6.0
    assert np.all(sp.value[1:] == 0.0)
    assert violations(g, sp.power_kw) <= 1e-9
