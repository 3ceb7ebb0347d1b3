"""What the same cars would have done without smart charging: each one draws full power
from the moment it arrives until it has its energy (or leaves). Computed from the
scenario, not simulated, to put the night's peak next to the one it avoided."""

from __future__ import annotations

from datetime import datetime, timedelta

from simulators.scenario import Scenario, Session


def full_power_w(scenario: Scenario, session: Session) -> float:
    evse = next(e for spec, _ in scenario.station_specs() if spec.station_id == session.station_id
                for e in spec.evses if e.evse_id == session.evse_id)
    if evse.kind == "DC":
        return min(session.max_dc_power_w, evse.max_power_w or session.max_dc_power_w)
    amps = min(session.max_ac_current_a, evse.max_current_a)
    return amps * evse.voltage_v * min(session.ac_phases, evse.phases)


def uncontrolled_peak(scenario: Scenario, sessions: list[Session]) -> tuple[float, datetime]:
    """(peak kW of households plus EVs on the scenario's root nodes, when)."""
    roots = [n for n in scenario.nodes if n.parent is None]
    spans = []
    for s in sessions:
        power = full_power_w(scenario, s)
        done = s.arrival + timedelta(hours=s.energy_wh / power) if power > 0 else s.arrival
        spans.append((s.arrival, min(done, s.departure), power / 1000.0))
    # the load only steps up when a car arrives or a new household hour starts
    hour = scenario.start.replace(minute=0, second=0, microsecond=0)
    moments = {s.arrival for s in sessions}
    while hour < scenario.end:
        moments.add(max(hour, scenario.start))
        hour += timedelta(hours=1)
    best = (0.0, scenario.start)
    for t in sorted(m for m in moments if scenario.start <= m < scenario.end):
        local = scenario.local(t)
        kw = sum(n.household_at(local) for n in roots)
        kw += sum(p for start, end, p in spans if start <= t < end)
        best = max(best, (kw, t), key=lambda b: b[0])
    return best
