"""The fleet runner plays a scenario against a (scripted) CSMS and reports."""

from __future__ import annotations

import asyncio
import csv
import io
import json
import textwrap
from datetime import UTC, datetime

from simulators.cli import main
from simulators.clock import AcceleratedClock
from simulators.fleet import Fleet
from simulators.scenario import load_scenario

SCENARIO = """
name = "tiny"
seed = 3
utc_offset = "+00:00"
start = "2026-11-23T17:00:00Z"
end = "2026-11-23T19:00:00Z"
meter_interval_s = 600
trace_interval_s = 900

[[nodes]]
id = "T1"
rating_kva = 50
household_kw = [10.0]

[[stations]]
id = "H{n:02d}"
count = 3
node = "T1"
  [[stations.evses]]
  kind = "AC"
  phases = 1
  max_current_a = 32.0

[arrivals]
arrive = ["17:00", "17:10"]
stay_h = [1.0, 1.5]
energy_kwh = [5.0, 12.0]
battery_kwh = [60.0, 60.0]
soc = [0.2, 0.2]
ac_phases = 1
"""


def write_scenario(tmp_path):
    path = tmp_path / "tiny.toml"
    path.write_text(textwrap.dedent(SCENARIO))
    return path


async def test_fleet_runs_sessions_and_writes_trace_and_summary(peer, tmp_path):
    scenario = load_scenario(write_scenario(tmp_path))
    clock = AcceleratedClock(datetime(2026, 11, 23, 17, 0, tzinfo=UTC), speed=3_600)
    trace = io.StringIO()
    summary = await Fleet(scenario, peer.url, clock, trace=trace).run()

    assert summary.stations == 3 and summary.stations_failed == 0
    assert len(summary.sessions) == 3
    assert all(r.plugged_in for r in summary.sessions)
    for r in summary.sessions:
        hours = (r.session.departure - r.session.arrival).total_seconds() / 3600
        # a single-phase 32 A EVSE can deliver at most 7.36 kW
        assert 0 < r.delivered_wh <= 7360 * hours + 1
        # the fleet may plug in a little late on a loaded machine: count from authorization
        charging_h = (r.session.departure - r.authorized_at).total_seconds() / 3600
        expected = min(r.session.energy_wh, 7360 * charging_h)
        assert r.delivered_wh >= 0.9 * expected
        assert r.satisfied == (r.delivered_wh >= 0.99 * r.session.energy_wh)
    peak = summary.peaks["T1"]
    assert 7.0 < peak.peak_ev_kw <= 3 * 7.36 + 0.01
    assert peak.peak_total_kw == peak.peak_ev_kw + 10.0
    rows = list(csv.DictReader(io.StringIO(trace.getvalue())))
    assert {r["station_id"] for r in rows} == {"H01", "H02", "H03"}
    assert all(float(r["power_w"]) <= float(r["limit_w"]) + 0.1 for r in rows)
    d = summary.to_dict()
    assert d["sessions"] == 3 and d["unsatisfied_sessions"] == len(summary.unsatisfied)
    # what the CSMS saw
    ended = [p for p in peer.of("TransactionEvent") if p["eventType"] == "Ended"]
    assert len(ended) == 3


async def test_cli_run_spreads_the_fleet_over_processes_on_one_clock(peer, tmp_path):
    """`--processes 2`: two processes play the three stations (H01, H03 | H02) on one
    clock; one summary and one trace come back, and the node's peak is the sum of both
    processes' loads (all three charge at 17:15: more than one process's two EVSEs)."""
    trace, summary_path = tmp_path / "trace.csv", tmp_path / "summary.json"
    code = await asyncio.to_thread(main, [
        "run", str(write_scenario(tmp_path)), "--url", peer.url, "--speed", "600",
        "--processes", "2", "--trace", str(trace), "--summary", str(summary_path)])
    assert code == 0
    d = json.loads(summary_path.read_text())
    assert d["stations"] == 3 and d["stations_failed"] == 0 and d["sessions"] == 3
    assert {s["station_id"] for s in d["per_session"]} == {"H01", "H02", "H03"}
    assert all(s["delivered_wh"] > 0 for s in d["per_session"])
    assert 2 * 7.36 < d["peaks"]["T1"]["peak_ev_kw"] <= 3 * 7.36 + 0.05  # rounded
    rows = list(csv.DictReader(io.StringIO(trace.read_text())))
    assert {r["station_id"] for r in rows} == {"H01", "H02", "H03"}
    assert not list(tmp_path.glob("trace.csv.part*"))
    ended = [p for p in peer.of("TransactionEvent") if p["eventType"] == "Ended"]
    assert len({p["transactionInfo"]["transactionId"] for p in ended}) == len(ended) == 3


def test_cli_provision_lists_stations_and_tokens(tmp_path, capsys):
    assert main(["provision", str(write_scenario(tmp_path)), "--format", "json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert [s["id"] for s in doc["stations"]] == ["H01", "H02", "H03"]
    assert doc["stations"][0]["node"] == "T1"
    assert doc["tokens"] == ["TOK-H01-1", "TOK-H02-1", "TOK-H03-1"]
