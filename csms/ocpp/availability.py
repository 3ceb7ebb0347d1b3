"""Block G, availability: Heartbeat (G02) and StatusNotification (G01)."""

from __future__ import annotations

from dataclasses import dataclass

from csms.clock import parse_ocpp, to_ocpp
from csms.connection import StationContext
from csms.frames import Payload
from csms.ocpp.deps import Deps


@dataclass(frozen=True)
class Heartbeat:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        return {"currentTime": to_ocpp(self.deps.clock.now())}


@dataclass(frozen=True)
class StatusNotification:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        await self.deps.store.devices.set_connector_status(
            ctx.station_id, req["evseId"], req["connectorId"], req["connectorStatus"],
            parse_ocpp(req["timestamp"]),
        )
        return {}
