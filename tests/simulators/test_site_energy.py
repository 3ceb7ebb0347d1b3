"""A scenario's solar and battery (issue 15): solar is a negative household load on its
node and the battery a local peak-shaving controller, both in the node load the summary's
peaks come from."""

from __future__ import annotations

import textwrap
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from simulators.clock import AcceleratedClock
from simulators.fleet import Fleet
from simulators.scenario import load_scenario
from simulators.site_energy import Battery, BatterySpec

SCENARIO = Path(__file__).resolve().parents[2] / "config/scenarios/solar-storage.toml"


def test_the_scenario_has_its_panels_and_battery() -> None:
    s = load_scenario(SCENARIO)
    (pv,) = s.solar
    (bess,) = s.storage
    assert (pv.node, pv.peak_kw, bess.capacity_kwh, bess.charge_below_kw) == (
        "transformer", 120.0, 215.0, 250.0)
    noon = datetime(2026, 11, 23, 12, 30, tzinfo=s.utc_offset)
    assert pv.kw_at(noon) == pytest.approx(118.8)
    assert pv.kw_at(noon.replace(hour=20)) == 0.0


def test_a_day_of_node_load_with_sun_and_battery() -> None:
    """No cars: the node load is the household less the sun, plus the battery, which
    charges at midday and in the valley and covers the evening peak (375 kW on 360)."""
    s = load_scenario(SCENARIO)
    fleet = Fleet(s, "ws://unused", AcceleratedClock(s.start), shard=(0, 1))
    totals = {}
    t = s.start
    while t < s.end:
        fleet.record_peaks(t, {"transformer": 0.0})
        (b,) = fleet.batteries
        local = s.local(t)
        totals[(local.hour, local.minute)] = s.nodes[0].household_at(local) \
            - s.solar[0].kw_at(local) + b.power_kw
        t += timedelta(minutes=15)
    peak = fleet.summary.peaks["transformer"]
    assert peak.peak_total_kw <= 360.0 + 1e-6  # the household alone: 375 kW
    assert totals[(10, 0)] == pytest.approx(250 - 108 + 100)  # sun, and the battery charges
    assert totals[(12, 0)] == pytest.approx(260 - 118.8)  # full by then
    assert totals[(19, 30)] == pytest.approx(360.0)  # the battery gives 15 kW
    d = fleet.summary.to_dict()["storage"]["bess"]
    assert d["charged_kwh"] > 100 and d["discharged_kwh"] == pytest.approx(30.0)  # 15 kW, 2 h
    assert 0.1 <= d["soc_end"] <= 0.95
    assert "battery bess on transformer: charged" in fleet.summary.text()


def test_a_battery_stays_in_its_window() -> None:
    spec = BatterySpec("b", "n", capacity_kwh=10, max_charge_kw=50, max_discharge_kw=50,
                       initial_soc=0.5, min_soc=0.2, max_soc=0.8, round_trip_efficiency=1.0,
                       discharge_above_kw=10)
    b = Battery(spec)
    t = datetime(2026, 11, 23, 18, 0)
    assert b.sample(t, 100.0, None) == -50.0
    b.sample(t + timedelta(hours=1), 100.0, None)
    assert b.soc == pytest.approx(0.2) and b.discharged_kwh == pytest.approx(3.0)
    assert b.sample(t + timedelta(hours=2), 100.0, None) == 0.0  # empty: no more
    assert b.sample(t + timedelta(hours=3), -5.0, None) == 5.0  # surplus: charge
    b.sample(t + timedelta(hours=9), -5.0, None)
    assert b.soc == pytest.approx(0.8)


@pytest.mark.parametrize(("text", "message"), [
    ('[[solar]]\nid = "pv"\nnode = "T1"\npeak_kw = -1', r"\[\[solar\]\] pv: peak_kw"),
    ('[[solar]]\nid = "pv"\nnode = "T1"\npeak_kw = 5\nshape = [2.0]', r"shape\[0\]"),
    ('[[solar]]\nid = "pv"\nnode = "T9"\npeak_kw = 5', "one of the scenario's nodes"),
    ('[[storage]]\nid = "b"\nnode = "T1"\ncapacity_kwh = 0\nmax_charge_kw = 1\n'
     'max_discharge_kw = 1', r"\[\[storage\]\] b: capacity_kwh"),
    ('[[storage]]\nid = "b"\nnode = "T1"\ncapacity_kwh = 10\nmax_charge_kw = 1\n'
     'max_discharge_kw = 1\ninitial_soc = 1.5', "initial_soc"),
])
def test_a_bad_entry_is_refused_naming_the_field(tmp_path: Path, text: str,
                                                 message: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(textwrap.dedent("""
        start = "2026-11-23T17:00:00Z"
        end = "2026-11-23T19:00:00Z"
        stations = []
        [[nodes]]
        id = "T1"
        """) + text + "\n")
    with pytest.raises(ValueError, match=message):
        load_scenario(path)
