"""The EV model: CC-CV taper, own maximum, never above what the EVSE offers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from simulators.ev import EV


def test_ev_draws_its_max_below_taper_and_less_above():
    ev = EV(battery_kwh=60, soc=0.5, max_ac_current_a=32.0, energy_wanted_wh=1e9)
    assert ev.ac_current_a(40.0) == 32.0
    ev.soc = 0.9
    assert ev.ac_current_a(40.0) == pytest.approx(16.0)  # half way through the taper
    ev.soc = 0.99
    assert ev.ac_current_a(40.0) == pytest.approx(32.0 * 0.05)


def test_ev_never_draws_above_the_offered_limit():
    ev = EV(soc=0.2, max_ac_current_a=32.0, max_dc_power_w=150_000)
    for offered in (0.0, 6.0, 13.5, 31.9):
        assert ev.ac_current_a(offered) == offered
    assert ev.dc_power_w(20_000.0) == 20_000.0
    assert ev.dc_power_w(1e6) == 150_000.0


def test_ev_stops_when_energy_wanted_is_delivered():
    ev = EV(battery_kwh=60, soc=0.2, energy_wanted_wh=5_000)
    ev.charge(4_999)
    assert ev.ac_current_a(16.0) == 16.0
    ev.charge(1)
    assert ev.satisfied
    assert ev.ac_current_a(16.0) == 0.0
    assert ev.energy_needed_wh == 0.0


def test_ev_charge_updates_soc_and_stops_at_full():
    ev = EV(battery_kwh=10, soc=0.95, energy_wanted_wh=1e9)
    ev.charge(300)
    assert ev.soc == pytest.approx(0.98)
    ev.charge(10_000)
    assert ev.soc == 1.0
    assert ev.energy_received_wh == pytest.approx(500)
    assert ev.dc_power_w(50_000) == 0.0


def test_ev_rejects_impossible_soc():
    with pytest.raises(ValueError):
        EV(soc=1.5)


# ---- V2X: a bidirectional EV ----------------------------------------------------------


def test_a_plain_ev_gives_nothing_back():
    ev = EV(battery_kwh=60, soc=0.8)
    assert ev.discharge_limit_w(11_000.0) == 0.0
    assert ev.discharge(5_000.0) == 0.0
    assert ev.soc == 0.8


def test_a_bidirectional_ev_discharges_to_its_reserve_and_counts_net():
    ev = EV(battery_kwh=10, soc=0.5, min_soc=0.3, bidirectional=True, energy_wanted_wh=1000)
    assert ev.discharge_limit_w(7_000.0) == 7_000.0  # no own maximum: as it charges
    assert ev.discharge(5_000.0) == pytest.approx(2_000.0)  # only down to 30 %
    assert ev.soc == 0.3
    assert ev.discharge_limit_w(7_000.0) == 0.0
    assert ev.energy_received_wh == pytest.approx(-2_000.0)
    assert ev.energy_needed_wh == pytest.approx(3_000.0)  # what it gave back, then its 1 kWh


@settings(max_examples=200, deadline=None)
@given(
    soc=st.floats(0.0, 1.0),
    reserve=st.floats(0.0, 1.0),
    steps=st.lists(st.floats(-20_000, 20_000, allow_nan=False), max_size=30),
)
def test_property_soc_never_under_the_reserve_and_energy_adds_up(soc, reserve, steps):
    ev = EV(battery_kwh=40, soc=soc, min_soc=reserve, bidirectional=True, energy_wanted_wh=1e9)
    start_wh = soc * 40_000
    for wh in steps:
        before = ev.soc
        if wh >= 0:
            ev.charge(wh)
        else:
            ev.discharge(-wh)
            assert ev.soc >= min(before, reserve) - 1e-12  # never below, nor lower than it was
        assert 0.0 <= ev.soc <= 1.0
    assert ev.soc * 40_000 == pytest.approx(start_wh + ev.energy_received_wh, abs=1e-6)
    assert ev.energy_discharged_wh >= 0.0
