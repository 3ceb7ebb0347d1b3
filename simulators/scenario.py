"""Scenario files (TOML): stations, their EVSEs, the site node each sits under, and the EV
sessions to play, drawn from distributions with a seed or read from a CSV.

Everything here is pure: `load_scenario` parses, `draw_sessions` draws; no sockets.
"""

from __future__ import annotations

import csv
import random
import tomllib
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta, timezone
from pathlib import Path

from simulators.clock import parse_ocpp
from simulators.station import EvseSpec, StationSpec


@dataclass(frozen=True)
class Node:
    id: str
    kind: str = "transformer"
    rating_kva: float | None = None
    limit_kw: float | None = None
    parent: str | None = None
    household_kw: tuple[float, ...] = ()  # by local hour 0..23, if known

    def household_at(self, local: datetime) -> float:
        if not self.household_kw:
            return 0.0
        return self.household_kw[local.hour % len(self.household_kw)]


@dataclass(frozen=True)
class StationGroup:
    id_pattern: str  # e.g. "RES{n:03d}"
    count: int
    node: str
    evses: tuple[EvseSpec, ...]
    vendor: str = "SimCo"
    model: str = "Sim-7"
    first: int = 1
    arrivals: ArrivalModel | None = None  # overrides the scenario's model for this group
    ocpp_version: str = "2.0.1"  # "2.1" for V2X

    def station_ids(self) -> list[str]:
        return [self.id_pattern.format(n=n) for n in range(self.first, self.first + self.count)]


@dataclass(frozen=True)
class Window:
    start: time
    end: time


@dataclass(frozen=True)
class ArrivalModel:
    share: float = 1.0  # share of EVSEs that get a car per day
    arrive: Window = Window(time(17), time(21))
    depart: Window = Window(time(7), time(9))
    energy_kwh: tuple[float, float] = (8.0, 20.0)
    battery_kwh: tuple[float, float] = (40.0, 80.0)
    soc: tuple[float, float] = (0.15, 0.5)
    max_ac_current_a: float = 32.0
    ac_phases: int = 1
    max_dc_power_w: float = 100_000.0
    iso15118_share: float = 0.0
    token: str = "TOK-{station_id}-{evse_id}"
    stay_h: tuple[float, float] | None = None  # if set, departure = arrival + stay
    per_day: int = 1  # arrivals drawn per EVSE per day (overlapping ones are dropped)
    # V2X: the share of cars that can discharge (ISO 15118-20 BPT), their reserve and power
    bidirectional_share: float = 0.0
    min_soc: float = 0.0
    max_discharge_power_w: float | None = None


@dataclass(frozen=True)
class Session:
    session_id: str
    station_id: str
    evse_id: int
    arrival: datetime
    departure: datetime
    energy_wh: float
    battery_kwh: float
    soc: float
    token: str
    iso15118: bool = False
    max_ac_current_a: float = 32.0
    ac_phases: int = 1
    max_dc_power_w: float = 100_000.0
    bidirectional: bool = False
    min_soc: float = 0.0
    max_discharge_power_w: float | None = None


@dataclass(frozen=True)
class Scenario:
    name: str
    start: datetime
    end: datetime
    utc_offset: timezone
    nodes: tuple[Node, ...]
    groups: tuple[StationGroup, ...]
    arrivals: ArrivalModel | None = None
    sessions_csv: Path | None = None
    seed: int = 1
    password_pattern: str | None = None
    meter_interval_s: float = 300.0
    trace_interval_s: float = 900.0
    description: str = ""
    extra: dict = field(default_factory=dict)

    def station_specs(self) -> list[tuple[StationSpec, str]]:
        """(spec, node id) for every station of the scenario."""
        out = []
        for g in self.groups:
            for sid in g.station_ids():
                out.append(
                    (
                        StationSpec(
                            station_id=sid,
                            password=self.password_for(sid),
                            evses=[_copy_evse(e) for e in g.evses],
                            vendor=g.vendor,
                            model=g.model,
                            meter_interval_s=self.meter_interval_s,
                            ocpp_version=g.ocpp_version,
                        ),
                        g.node,
                    )
                )
        return out

    def password_for(self, station_id: str) -> str | None:
        if self.password_pattern is None:
            return None
        return self.password_pattern.format(station_id=station_id)

    def local(self, ts: datetime) -> datetime:
        return ts.astimezone(self.utc_offset)


def _copy_evse(e: EvseSpec) -> EvseSpec:
    return EvseSpec(
        e.evse_id, e.kind, e.phases, e.max_current_a, e.min_current_a, e.voltage_v, e.max_power_w,
        e.bidirectional, e.max_discharge_power_w,
    )


def _time(text: str) -> time:
    hh, mm = text.split(":")
    return time(int(hh), int(mm))


def _offset(text: str) -> timezone:
    sign = -1 if text.startswith("-") else 1
    hh, mm = text.lstrip("+-").split(":")
    return timezone(sign * timedelta(hours=int(hh), minutes=int(mm)))


def load_scenario(path: str | Path) -> Scenario:
    path = Path(path)
    data = tomllib.loads(path.read_text())
    offset = _offset(data.get("utc_offset", "+00:00"))
    nodes = tuple(
        Node(
            id=n["id"],
            kind=n.get("kind", "transformer"),
            rating_kva=n.get("rating_kva"),
            limit_kw=n.get("limit_kw"),
            parent=n.get("parent"),
            household_kw=tuple(n.get("household_kw", ())),
        )
        for n in data.get("nodes", [])
    )
    groups = []
    for g in data["stations"]:
        evses = tuple(
            EvseSpec(
                evse_id=e.get("evse_id", i + 1),
                kind=e.get("kind", "AC"),
                phases=e.get("phases", 3),
                max_current_a=e.get("max_current_a", 32.0),
                min_current_a=e.get("min_current_a", 6.0),
                voltage_v=e.get("voltage_v", 230.0),
                max_power_w=e.get("max_power_w"),
                bidirectional=e.get("bidirectional", False),
                max_discharge_power_w=e.get("max_discharge_power_w"),
            )
            for i, e in enumerate(g["evses"])
        )
        groups.append(
            StationGroup(
                id_pattern=g["id"],
                count=g.get("count", 1),
                node=g["node"],
                evses=evses,
                vendor=g.get("vendor", "SimCo"),
                model=g.get("model", "Sim-7"),
                first=g.get("first", 1),
                arrivals=_arrival_model(g["arrivals"]) if "arrivals" in g else None,
                ocpp_version=g.get("ocpp_version", "2.0.1"),
            )
        )
    known = {n.id for n in nodes}
    for g in groups:
        if g.node not in known:
            raise ValueError(f"station group {g.id_pattern} sits under unknown node {g.node}")
    arrivals = _arrival_model(data["arrivals"]) if "arrivals" in data else None
    sessions_csv = data.get("sessions_csv")
    return Scenario(
        name=data.get("name", path.stem),
        description=data.get("description", ""),
        start=parse_ocpp(data["start"]),
        end=parse_ocpp(data["end"]),
        utc_offset=offset,
        nodes=nodes,
        groups=tuple(groups),
        arrivals=arrivals,
        sessions_csv=(path.parent / sessions_csv) if sessions_csv else None,
        seed=data.get("seed", 1),
        password_pattern=data.get("password"),
        meter_interval_s=data.get("meter_interval_s", 300.0),
        trace_interval_s=data.get("trace_interval_s", 900.0),
    )


def _arrival_model(a: dict) -> ArrivalModel:
    return ArrivalModel(
        share=a.get("share", 1.0),
        arrive=Window(*(_time(t) for t in a.get("arrive", ["17:00", "21:00"]))),
        depart=Window(*(_time(t) for t in a.get("depart", ["07:00", "09:00"]))),
        energy_kwh=tuple(a.get("energy_kwh", [8.0, 20.0])),  # type: ignore[arg-type]
        battery_kwh=tuple(a.get("battery_kwh", [40.0, 80.0])),  # type: ignore[arg-type]
        soc=tuple(a.get("soc", [0.15, 0.5])),  # type: ignore[arg-type]
        max_ac_current_a=a.get("max_ac_current_a", 32.0),
        ac_phases=a.get("ac_phases", 1),
        max_dc_power_w=a.get("max_dc_power_w", 100_000.0),
        iso15118_share=a.get("iso15118_share", 0.0),
        token=a.get("token", "TOK-{station_id}-{evse_id}"),
        stay_h=tuple(a["stay_h"]) if "stay_h" in a else None,  # type: ignore[arg-type]
        per_day=a.get("per_day", 1),
        bidirectional_share=a.get("bidirectional_share", 0.0),
        min_soc=a.get("min_soc", 0.0),
        max_discharge_power_w=a.get("max_discharge_power_w"),
    )


def _at(day: datetime, t: time, offset: timezone) -> datetime:
    return datetime.combine(day.date(), t, tzinfo=offset)


def _uniform_between(rng: random.Random, start: datetime, end: datetime) -> datetime:
    span = (end - start).total_seconds()
    return start + timedelta(seconds=round(rng.uniform(0, span)))


def draw_sessions(scenario: Scenario) -> list[Session]:
    """Sessions for the whole scenario: from the CSV if given, else drawn with the seed."""
    if scenario.sessions_csv is not None:
        return read_sessions_csv(scenario.sessions_csv)
    rng = random.Random(scenario.seed)
    sessions: list[Session] = []
    first_day = scenario.local(scenario.start).replace(hour=0, minute=0, second=0, microsecond=0)
    days = (scenario.end - scenario.start).days + 2
    for group in scenario.groups:
        model = group.arrivals or scenario.arrivals
        if model is None:
            continue
        _draw_group(scenario, group, model, rng, first_day, days, sessions)
    sessions.sort(key=lambda s: (s.arrival, s.station_id, s.evse_id))
    return sessions


def _draw_group(
    scenario: Scenario,
    group: StationGroup,
    model: ArrivalModel,
    rng: random.Random,
    first_day: datetime,
    days: int,
    sessions: list[Session],
) -> None:
    tz = scenario.utc_offset
    for station_id in group.station_ids():
        for evse in group.evses:
            busy_until = scenario.start
            for d in range(-1, days):
                day = first_day + timedelta(days=d)
                a_start = _at(day, model.arrive.start, tz)
                a_end = _at(day, model.arrive.end, tz)
                if a_end <= a_start:
                    a_end += timedelta(days=1)
                arrivals = sorted(
                    _uniform_between(rng, a_start, a_end) for _ in range(model.per_day)
                )
                for arrival in arrivals:
                    if model.stay_h is not None:
                        stay_s = round(rng.uniform(*model.stay_h) * 3600)
                        departure = arrival + timedelta(seconds=stay_s)
                    else:
                        dep_day = (
                            day
                            if model.depart.start > model.arrive.end
                            else day + timedelta(days=1)
                        )
                        d_start = _at(dep_day, model.depart.start, tz)
                        d_end = _at(dep_day, model.depart.end, tz)
                        if d_end <= d_start:
                            d_end += timedelta(days=1)
                        departure = _uniform_between(rng, d_start, d_end)
                    energy = rng.uniform(*model.energy_kwh) * 1000.0
                    battery = rng.uniform(*model.battery_kwh)
                    soc = rng.uniform(*model.soc)
                    iso = rng.random() < model.iso15118_share
                    present = rng.random() < model.share
                    # drawn only where the scenario has such cars: older seeds draw as before
                    bidirectional = (
                        model.bidirectional_share > 0
                        and rng.random() < model.bidirectional_share
                    )
                    if not present or arrival < busy_until:
                        continue
                    if departure <= scenario.start or arrival >= scenario.end:
                        continue
                    soc = min(soc, max(0.0, 1.0 - energy / (battery * 1000.0)))
                    sessions.append(
                        Session(
                            session_id=f"{station_id}-{evse.evse_id}-{arrival:%Y%m%d%H%M}",
                            station_id=station_id,
                            evse_id=evse.evse_id,
                            arrival=max(arrival, scenario.start),
                            departure=departure,
                            energy_wh=round(energy, 1),
                            battery_kwh=round(battery, 1),
                            soc=round(soc, 3),
                            token=model.token.format(station_id=station_id, evse_id=evse.evse_id),
                            iso15118=iso,
                            max_ac_current_a=model.max_ac_current_a,
                            ac_phases=model.ac_phases,
                            max_dc_power_w=model.max_dc_power_w,
                            bidirectional=bidirectional,
                            min_soc=model.min_soc if bidirectional else 0.0,
                            max_discharge_power_w=(
                                model.max_discharge_power_w if bidirectional else None
                            ),
                        )
                    )
                    busy_until = departure


SESSION_COLUMNS = (
    "session_id,station_id,evse_id,arrival,departure,energy_wh,battery_kwh,soc,token,iso15118,"
    "bidirectional,min_soc"
).split(",")


def read_sessions_csv(path: Path) -> list[Session]:
    sessions = []
    with path.open(newline="") as f:
        for row in csv.DictReader(f):
            sessions.append(
                Session(
                    session_id=row.get("session_id") or f"S{len(sessions) + 1}",
                    station_id=row["station_id"],
                    evse_id=int(row.get("evse_id") or 1),
                    arrival=parse_ocpp(row["arrival"]),
                    departure=parse_ocpp(row["departure"]),
                    energy_wh=float(row["energy_wh"]),
                    battery_kwh=float(row.get("battery_kwh") or 60.0),
                    soc=float(row.get("soc") or 0.3),
                    token=row.get("token") or f"TOK-{row['station_id']}",
                    iso15118=_yes(row.get("iso15118")),
                    bidirectional=_yes(row.get("bidirectional")),
                    min_soc=float(row.get("min_soc") or 0.0),
                )
            )
    sessions.sort(key=lambda s: (s.arrival, s.station_id, s.evse_id))
    return sessions


def _yes(text: str | None) -> bool:
    return (text or "").lower() in ("1", "true", "yes")


def write_sessions_csv(sessions: list[Session], path: Path) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(SESSION_COLUMNS)
        for s in sessions:
            w.writerow(
                [
                    s.session_id,
                    s.station_id,
                    s.evse_id,
                    s.arrival.isoformat(),
                    s.departure.isoformat(),
                    s.energy_wh,
                    s.battery_kwh,
                    s.soc,
                    s.token,
                    s.iso15118,
                    s.bidirectional,
                    s.min_soc,
                ]
            )
