"""What a site's planner needs from the stations: is one connected (and booted), send it a
charging profile, read what profiles it takes. A small seam, so a site's planning does not
reach into the scheduler that owns it, and the station side can change (command routing
to the node holding a station's socket) without touching the planning.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog

from csms import metrics
from csms.commands import Commands
from csms.connection import CallFailed, Connections, StationOffline
from csms.frames import Payload
from csms.store import Store
from smart_charging import Evse

log = structlog.get_logger()


@dataclass(frozen=True)
class Capabilities:
    """SmartChargingCtrlr.RateUnit and .PeriodsPerSchedule of a station."""

    rate_units: tuple[str, ...] = ("A", "W")
    periods: int = 24


def rate_unit_for(evse: Evse, caps: Capabilities) -> str | None:
    """The unit of an EVSE's profiles: the site file's choice, else A, else W, among those
    the station reports. An AC station that reports none we can use still gets amps, the
    unit every station takes; a DC EVSE is planned in W only (its plan has no current)."""
    if not evse.is_ac:
        return "W" if "W" in caps.rate_units else None
    for unit in (evse.rate_unit, "A", "W"):
        if unit in caps.rate_units:
            return unit
    return "A"


class StationGateway(Protocol):
    """The stations as a site's planner sees them."""

    def connection(self, station_id: str) -> Any:
        """The station's live connection (compared by identity: a new one means the
        station may have lost what it held), or None when it is offline."""

    def booted(self, station_id: str) -> bool:
        """Connected, and its BootNotification was accepted."""

    async def bounded(self, job: Awaitable[None]) -> None:
        """Run `job` within the limit of stations sent to at once."""

    async def set_profile(self, station_id: str, evse_id: int, profile: Payload,
                          purpose: str = "TxProfile") -> Payload | None:
        """SetChargingProfile's answer; None when it could not be delivered."""

    async def prefetch(self, station_ids: list[str]) -> None:
        """Learn the capabilities of connected stations not known yet."""

    async def capabilities(self, station_id: str) -> Capabilities:
        """RateUnit and PeriodsPerSchedule of the station."""

    async def ask_v2x(self, station_id: str, evse_ids: list[int]) -> None:
        """Have an OCPP 2.1 station's V2XChargingCtrlr (is each EVSE bidirectional?) in
        the device model: asked once per connection when not reported."""


@dataclass
class Gateway:
    """The gateway over this process's station connections and commands."""

    commands: Commands
    connections: Connections
    store: Store
    max_concurrent_calls: int = 50
    _caps: dict[str, Capabilities] = field(default_factory=dict)
    _v2x_asked: set[str] = field(default_factory=set)
    _gate: asyncio.Semaphore | None = None

    def forget(self, station_id: str) -> None:
        """A station (re)connected: ask for its capabilities again."""
        self._caps.pop(station_id, None)
        self._v2x_asked.discard(station_id)

    def connection(self, station_id: str) -> Any:
        try:
            return self.connections.get(station_id)
        except StationOffline:
            return None

    def booted(self, station_id: str) -> bool:
        conn = self.connection(station_id)
        return conn is not None and getattr(conn.ctx, "boot_status", None) == "Accepted"

    async def bounded(self, job: Awaitable[None]) -> None:
        if self._gate is None:
            self._gate = asyncio.Semaphore(self.max_concurrent_calls)
        async with self._gate:
            await job

    async def set_profile(self, station_id: str, evse_id: int, profile: Payload,
                          purpose: str = "TxProfile") -> Payload | None:
        try:
            reply = await self.commands.set_charging_profile(station_id, evse_id, profile)
        except (StationOffline, CallFailed, TimeoutError) as exc:
            metrics.profiles.labels(purpose, "failed").inc()
            log.warning("scheduler.profile_failed", station_id=station_id, evse_id=evse_id,
                        purpose=purpose, error=str(exc) or type(exc).__name__)
            return None
        metrics.profiles.labels(purpose, str(reply.get("status", "unknown")).lower()).inc()
        return reply

    async def prefetch(self, station_ids: list[str]) -> None:
        """Asked in parallel, so a plan does not wait for them one by one."""
        async def one(station_id: str) -> None:
            await self.capabilities(station_id)

        await asyncio.gather(*(self.bounded(one(sid)) for sid in station_ids
                               if sid not in self._caps and self.connection(sid) is not None))

    async def capabilities(self, station_id: str) -> Capabilities:
        """From the device model, else asked once with GetVariables (not cached when the
        question fails, so it is asked again next time)."""
        if station_id in self._caps:
            return self._caps[station_id]
        wanted = {"RateUnit": "", "PeriodsPerSchedule": ""}
        for v in await self.store.devices.variables(station_id, "SmartChargingCtrlr"):
            if v.variable in wanted and v.attribute_type == "Actual" and v.value:
                wanted[v.variable] = v.value
        if not all(wanted.values()) and self.connection(station_id) is not None:
            try:
                results = await self.commands.get_variables(
                    station_id, [("SmartChargingCtrlr", name) for name in wanted])
                for r in results:
                    if r.get("attributeStatus") == "Accepted" and r.get("attributeValue"):
                        wanted[r["variable"]["name"]] = r["attributeValue"]
            except (StationOffline, CallFailed, TimeoutError) as exc:
                log.warning("scheduler.capabilities_unknown", station_id=station_id,
                            error=str(exc) or type(exc).__name__)
                return Capabilities()
        default = Capabilities()
        units = tuple(u.strip() for u in wanted["RateUnit"].split(",") if u.strip())
        try:
            periods = int(float(wanted["PeriodsPerSchedule"]))
        except ValueError:
            periods = default.periods
        caps = Capabilities(units or default.rate_units, max(periods, 1))
        self._caps[station_id] = caps
        return caps

    async def ask_v2x(self, station_id: str, evse_ids: list[int]) -> None:
        """GetVariables V2XChargingCtrlr Enabled and SupportedEnergyTransferModes per EVSE;
        accepted answers land in the device model (`Commands.get_variables`). A failure is
        logged and not asked again on this connection: the site file or the car may still
        say the EVSE is bidirectional."""
        if station_id in self._v2x_asked or self.connection(station_id) is None:
            return
        self._v2x_asked.add(station_id)
        items: list[Payload] = [
            {"component": {"name": "V2XChargingCtrlr", "evse": {"id": evse_id}},
             "variable": {"name": name}}
            for evse_id in evse_ids for name in ("Enabled", "SupportedEnergyTransferModes")]
        try:
            await self.commands.get_variables(station_id, items)
        except (StationOffline, CallFailed, TimeoutError) as exc:
            log.info("scheduler.v2x_unknown", station_id=station_id,
                     error=str(exc) or type(exc).__name__)
