"""Block K, smart charging: the EV's charging needs (K15-K17) and the limits a station reports."""

from __future__ import annotations

from dataclasses import dataclass

from csms.clock import parse_ocpp
from csms.connection import StationContext
from csms.events import ChargingNeedsChanged
from csms.frames import Payload
from csms.ocpp.deps import Deps


@dataclass(frozen=True)
class NotifyEVChargingNeeds:
    """Departure time and energy wanted (ISO 15118) feed the planner via the session."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        needs = req["chargingNeeds"]
        parameters = needs.get("acChargingParameters") or needs.get("dcChargingParameters") or {}
        departure = needs.get("departureTime")
        departure_time = parse_ocpp(departure) if departure else None
        energy = parameters.get("energyAmount")
        transaction_id = await self.deps.store.transactions.set_needs(
            ctx.station_id, req["evseId"],
            departure_time=departure_time,
            energy_amount_wh=float(energy) if energy is not None else None,
            transfer_mode=needs.get("requestedEnergyTransfer"),
            payload=req,
            now=self.deps.clock.now(),
        )
        self.deps.events.publish(ChargingNeedsChanged(
            ctx.station_id, req["evseId"], transaction_id, departure_time,
            float(energy) if energy is not None else None,
        ))
        # Accepted: a schedule will follow in a TxProfile (K15.FR.xx), sent by the scheduler.
        return {"status": "Accepted"}


@dataclass(frozen=True)
class NotifyEVChargingSchedule:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        await self.deps.store.notifications.add(
            ctx.station_id, "NotifyEVChargingSchedule", req, self.deps.clock.now()
        )
        return {"status": "Accepted"}
