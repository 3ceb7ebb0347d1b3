"""Scenario files and session drawing."""

from __future__ import annotations

import itertools
from datetime import time
from pathlib import Path

from simulators.scenario import draw_sessions, load_scenario, read_sessions_csv, write_sessions_csv

SCENARIOS = Path(__file__).resolve().parents[2] / "config" / "scenarios"


def test_residential_scenario_matches_the_brief():
    sc = load_scenario(SCENARIOS / "residential.toml")
    specs = sc.station_specs()
    assert len(specs) == 120
    assert {node for _, node in specs} == {"T1"}
    assert sc.nodes[0].rating_kva == 630
    evse = specs[0][0].evses[0]
    assert (evse.kind, evse.phases, evse.max_current_a) == ("AC", 1, 32.0)
    assert 7000 <= evse.max_power_w <= 7400
    assert max(sc.nodes[0].household_kw) == 0.6 * 630
    assert specs[0][0].password == "sim-RES001-0123456789"
    assert 16 <= len(specs[0][0].password) <= 40


def test_residential_sessions_arrive_in_the_evening_and_leave_next_morning():
    sc = load_scenario(SCENARIOS / "residential.toml")
    sessions = draw_sessions(sc)
    assert len(sessions) == 120
    for s in sessions:
        arrive, depart = sc.local(s.arrival), sc.local(s.departure)
        assert time(17) <= arrive.time() <= time(21)
        assert time(7) <= depart.time() <= time(9)
        assert depart.date() > arrive.date()
        assert 8000 <= s.energy_wh <= 20000
        assert s.energy_wh <= (1 - s.soc) * s.battery_kwh * 1000 + 1


def test_sessions_are_reproducible_from_the_seed():
    sc = load_scenario(SCENARIOS / "residential.toml")
    assert draw_sessions(sc) == draw_sessions(sc)


def test_workplace_has_dc_and_ac_in_daytime_without_overlaps():
    sc = load_scenario(SCENARIOS / "workplace.toml")
    kinds = {e.kind for spec, _ in sc.station_specs() for e in spec.evses}
    assert kinds == {"AC", "DC"}
    sessions = draw_sessions(sc)
    dc = [s for s in sessions if s.station_id.startswith("WDC")]
    assert dc and all(s.iso15118 for s in dc)
    by_evse: dict = {}
    for s in sessions:
        assert sc.start <= s.arrival < s.departure
        assert time(7) <= sc.local(s.arrival).time() <= time(17)
        by_evse.setdefault((s.station_id, s.evse_id), []).append(s)
    for visits in by_evse.values():
        for before, after in itertools.pairwise(visits):
            assert before.departure <= after.arrival


def test_sessions_csv_roundtrip(tmp_path):
    sc = load_scenario(SCENARIOS / "workplace.toml")
    sessions = draw_sessions(sc)
    path = tmp_path / "s.csv"
    write_sessions_csv(sessions, path)
    back = read_sessions_csv(path)
    assert [(s.session_id, s.arrival, s.energy_wh, s.iso15118) for s in back] == [
        (s.session_id, s.arrival, s.energy_wh, s.iso15118) for s in sessions
    ]
