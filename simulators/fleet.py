"""Many stations in one process, playing a scenario's sessions on one clock.

The fleet connects every station, plugs each session's EV in at its arrival, presents its
token, unplugs it at departure, samples a trace (per EVSE per interval: limit, power, energy,
SoC) and ends with a summary: energy requested vs delivered per session, unsatisfied
sessions, peak power per node.
"""

from __future__ import annotations

import asyncio
import csv
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import IO

from simulators.clock import Clock, to_ocpp
from simulators.ev import EV
from simulators.scenario import Node, Scenario, Session, draw_sessions
from simulators.station import Station, cancel_and_wait

log = logging.getLogger(__name__)

TRACE_COLUMNS = [
    "time",
    "station_id",
    "evse_id",
    "node",
    "session_id",
    "limit_w",
    "power_w",
    "energy_wh",
    "soc",
]
UNSATISFIED_TOLERANCE = 0.99  # delivered below 99% of what was asked counts as unsatisfied


@dataclass
class SessionResult:
    session: Session
    delivered_wh: float = 0.0
    plugged_in: bool = False
    authorized: str = ""
    authorized_at: datetime | None = None  # when charging could begin (late under load)
    discharged_wh: float = 0.0  # V2X: what the car gave back (delivered_wh is net of it)

    @property
    def satisfied(self) -> bool:
        return self.delivered_wh >= UNSATISFIED_TOLERANCE * self.session.energy_wh


@dataclass
class NodePeak:
    node: str
    peak_ev_kw: float = 0.0
    peak_ev_at: datetime | None = None
    peak_total_kw: float = 0.0  # EV load plus household load, if the scenario gives it
    peak_total_at: datetime | None = None
    limit_kw: float | None = None


@dataclass
class Summary:
    scenario: str
    sessions: list[SessionResult] = field(default_factory=list)
    peaks: dict[str, NodePeak] = field(default_factory=dict)
    stations: int = 0
    stations_failed: int = 0

    @property
    def unsatisfied(self) -> list[SessionResult]:
        return [r for r in self.sessions if r.plugged_in and not r.satisfied]

    def to_dict(self) -> dict:
        return {
            "scenario": self.scenario,
            "stations": self.stations,
            "stations_failed": self.stations_failed,
            "sessions": len(self.sessions),
            "energy_requested_kwh": round(sum(r.session.energy_wh for r in self.sessions) / 1e3, 1),
            "energy_delivered_kwh": round(sum(r.delivered_wh for r in self.sessions) / 1e3, 1),
            "energy_discharged_kwh": round(sum(r.discharged_wh for r in self.sessions) / 1e3, 1),
            "unsatisfied_sessions": len(self.unsatisfied),
            "peaks": {
                n: {
                    "peak_ev_kw": round(p.peak_ev_kw, 1),
                    "peak_ev_at": p.peak_ev_at and to_ocpp(p.peak_ev_at),
                    "peak_total_kw": round(p.peak_total_kw, 1),
                    "peak_total_at": p.peak_total_at and to_ocpp(p.peak_total_at),
                    "limit_kw": p.limit_kw,
                }
                for n, p in self.peaks.items()
            },
            "per_session": [
                {
                    "session_id": r.session.session_id,
                    "station_id": r.session.station_id,
                    "evse_id": r.session.evse_id,
                    "requested_wh": r.session.energy_wh,
                    "delivered_wh": round(r.delivered_wh, 1),
                    "discharged_wh": round(r.discharged_wh, 1),
                    "satisfied": r.satisfied,
                    "departure": to_ocpp(r.session.departure),
                }
                for r in self.sessions
            ],
        }

    def text(self) -> str:
        d = self.to_dict()
        lines = [
            f"scenario {d['scenario']}: {d['stations']} stations "
            f"({d['stations_failed']} failed to connect), {d['sessions']} sessions",
            f"energy requested {d['energy_requested_kwh']} kWh, "
            f"delivered {d['energy_delivered_kwh']} kWh, "
            f"unsatisfied sessions {d['unsatisfied_sessions']}",
        ]
        for n, p in d["peaks"].items():
            limit = f" (limit {p['limit_kw']} kW)" if p["limit_kw"] else ""
            lines.append(
                f"node {n}: peak EV load {p['peak_ev_kw']} kW at {p['peak_ev_at']}, "
                f"peak EV+household {p['peak_total_kw']} kW at {p['peak_total_at']}{limit}"
            )
        return "\n".join(lines)


def node_limit_kw(node: Node) -> float | None:
    if node.limit_kw is not None:
        return node.limit_kw
    return node.rating_kva  # unity power factor: kVA ~ kW


class Fleet:
    def __init__(
        self,
        scenario: Scenario,
        url: str,
        clock: Clock,
        trace: IO[str] | None = None,
        connect_concurrency: int = 200,
        ssl: object = None,
        passwords: Mapping[str, str] | None = None,
        shard: tuple[int, int] = (0, 1),
    ) -> None:
        """`passwords` (station id -> password) replaces the scenario's own, e.g. with
        passwords the CSMS generated when the stations were provisioned. `shard` (i, n):
        play only every n-th station from the i-th (simulators/spread.py runs n fleets)."""
        self.scenario = scenario
        self.clock = clock
        self.stations: dict[str, Station] = {}
        self.node_of: dict[str, str] = {}
        self.node_load: dict[tuple[int, str], float] = {}  # (trace step, node) -> EV kW
        index, count = shard
        for k, (spec, node) in enumerate(scenario.station_specs()):
            if k % count != index:
                continue
            if passwords and spec.station_id in passwords:
                spec = replace(spec, password=passwords[spec.station_id])
            self.stations[spec.station_id] = Station(spec, url=url, clock=clock, ssl=ssl)
            self.node_of[spec.station_id] = node
        self.nodes = {n.id: n for n in scenario.nodes}
        self.sessions = [s for s in draw_sessions(scenario) if s.station_id in self.stations]
        self.results = {s.session_id: SessionResult(s) for s in self.sessions}
        self.active: dict[tuple[str, int], SessionResult] = {}
        self.summary = Summary(scenario.name)
        self.summary.peaks = {
            n.id: NodePeak(n.id, limit_kw=node_limit_kw(n)) for n in scenario.nodes
        }
        self._trace_writer = csv.writer(trace) if trace is not None else None
        if self._trace_writer is not None:
            self._trace_writer.writerow(TRACE_COLUMNS)
        self._connect_gate = asyncio.Semaphore(connect_concurrency)
        self._trace_file = trace

    async def _start_station(self, st: Station) -> bool:
        async with self._connect_gate:
            try:
                await st.start()
                return True
            except Exception as exc:
                log.warning("station %s failed to start: %s", st.station_id, exc)
                return False

    async def connect(self) -> None:
        """Start (connect and boot) every station; `run` does it if not done yet."""
        ok = await asyncio.gather(*(self._start_station(s) for s in self.stations.values()))
        self.summary.stations = len(ok)
        self.summary.stations_failed = ok.count(False)

    async def run(self, disconnect: bool = True) -> Summary:
        """Play the scenario to its end. With `disconnect=False` the stations stay connected
        afterwards (idle), until `stop()`."""
        if not self.summary.stations:
            await self.connect()
        tasks = [asyncio.ensure_future(self._play(s)) for s in self.sessions]
        tracer = asyncio.ensure_future(self._trace_loop())
        try:
            await self._sleep_until(self.scenario.end)
        finally:
            await cancel_and_wait(tasks)
            # sessions still plugged in at the end: account what they got
            for (sid, evse_id), result in list(self.active.items()):
                self._account(result, sid, evse_id)
                await self._safe(self.stations[sid].unplug(evse_id))
            self._sample(self.clock.now())
            await cancel_and_wait([tracer])
            if disconnect:
                await self.stop()
        self.summary.sessions = list(self.results.values())
        return self.summary

    async def stop(self) -> None:
        await asyncio.gather(*(s.stop() for s in self.stations.values()))

    async def _sleep_until(self, t: datetime) -> None:
        seconds = (t - self.clock.now()).total_seconds()
        if seconds > 0:
            await self.clock.sleep(seconds)

    async def _safe(self, coro) -> None:
        try:
            await coro
        except Exception as exc:
            log.warning("fleet action failed: %s", exc)

    def _delivered(self, station_id: str, evse_id: int) -> float:
        ev = self.stations[station_id].ev(evse_id)
        return ev.energy_received_wh if ev is not None else 0.0

    def _account(self, result: SessionResult, station_id: str, evse_id: int) -> None:
        self.stations[station_id].energy_wh(evse_id)  # bring the meter and the EV up to now
        result.delivered_wh = self._delivered(station_id, evse_id)
        ev = self.stations[station_id].ev(evse_id)
        result.discharged_wh = ev.energy_discharged_wh if ev is not None else 0.0

    async def _play(self, session: Session) -> None:
        st = self.stations[session.station_id]
        key = (session.station_id, session.evse_id)
        await self._sleep_until(session.arrival)
        while key in self.active:  # previous car still there (CSV overlap): wait
            await self.clock.sleep(60)
        result = self.results[session.session_id]
        ev = EV(
            battery_kwh=session.battery_kwh,
            soc=session.soc,
            max_ac_current_a=session.max_ac_current_a,
            max_dc_power_w=session.max_dc_power_w,
            energy_wanted_wh=session.energy_wh,
            departure=session.departure,
            iso15118=session.iso15118,
            ac_phases=session.ac_phases,
            bidirectional=session.bidirectional,
            min_soc=session.min_soc,
            max_discharge_power_w=session.max_discharge_power_w,
        )
        # active before the first await: a car still plugging in when the scenario ends
        # is unplugged with the others, not left with a transaction running
        self.active[key] = result
        result.plugged_in = True
        try:
            await st.plug_in(session.evse_id, ev)
        except Exception as exc:
            log.warning("%s plug-in failed: %s", session.session_id, exc)
            self.active.pop(key, None)
            result.plugged_in = False
            return
        try:
            result.authorized = await st.present_token(session.evse_id, session.token)
            result.authorized_at = self.clock.now()
        except Exception as exc:
            log.warning("%s authorization failed: %s", session.session_id, exc)
        await self._sleep_until(session.departure)
        self._account(result, *key)
        self.active.pop(key, None)
        await self._safe(st.unplug(session.evse_id))

    async def _trace_loop(self) -> None:
        """A sample now, then on the scenario's grid (start + k x interval), so fleets in
        several processes sample the same moments and their loads add up."""
        interval = timedelta(seconds=self.scenario.trace_interval_s)
        steps = (self.clock.now() - self.scenario.start) // interval
        next_t = self.scenario.start + steps * interval
        while True:
            self._sample(self.clock.now())
            next_t += interval
            await self._sleep_until(next_t)

    def _sample(self, now: datetime) -> None:
        node_kw: dict[str, float] = {n: 0.0 for n in self.nodes}
        stamp = to_ocpp(now)
        for sid, st in self.stations.items():
            node = self.node_of[sid]
            for evse_id in st.evses:
                power = st.power_w(evse_id)
                node_kw[node] = node_kw.get(node, 0.0) + power / 1000.0
                if self._trace_writer is None:
                    continue
                result = self.active.get((sid, evse_id))
                soc = st.soc(evse_id)
                self._trace_writer.writerow(
                    [
                        stamp,
                        sid,
                        evse_id,
                        node,
                        result.session.session_id if result else "",
                        round(st.limit_w(evse_id), 1),
                        round(power, 1),
                        round(st.energy_wh(evse_id), 1),
                        "" if soc is None else round(soc * 100, 1),
                    ]
                )
        step = round((now - self.scenario.start).total_seconds()
                     / self.scenario.trace_interval_s)
        for node_id, kw in node_kw.items():
            self.node_load[(step, node_id)] = kw
        self.record_peaks(now, node_kw)
        if self._trace_file is not None:
            self._trace_file.flush()

    def record_peaks(self, now: datetime, node_kw: Mapping[str, float]) -> None:
        """The summary's peaks, from one sample of the EV load per node."""
        local = self.scenario.local(now)
        for node_id, kw in node_kw.items():
            peak = self.summary.peaks.setdefault(node_id, NodePeak(node_id))
            total = kw + (self.nodes[node_id].household_at(local) if node_id in self.nodes else 0)
            if kw > peak.peak_ev_kw:
                peak.peak_ev_kw, peak.peak_ev_at = kw, now
            if total > peak.peak_total_kw:
                peak.peak_total_kw, peak.peak_total_at = total, now
