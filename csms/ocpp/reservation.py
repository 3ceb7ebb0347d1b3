"""Block H, reservation: what the station tells the CSMS about a reservation.

- ReservationStatusUpdate (H04): the station ended a reservation that was not used,
  Expired or Removed. The stored reservation takes that status (only from a state in
  which the station could hold it); the message is also kept as sent.
- A TransactionEvent naming a `reservationId` (H03) ended that reservation: Used, and
  the transaction is noted on it (`reservation_used`, called by the transactions handler).
The CSMS-initiated side (ReserveNow, CancelReservation) is csms/reservations.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from csms.connection import StationContext
from csms.events import EventBus, ReservationChanged
from csms.frames import Payload
from csms.ocpp.deps import Deps
from csms.store import Store

log = structlog.get_logger()

# the states in which a station may hold the reservation: answered Accepted, or sent but
# the answer was lost (Requested, Failed)
HELD = ("Accepted", "Requested", "Failed")


@dataclass(frozen=True)
class ReservationStatusUpdate:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        now = self.deps.clock.now()
        await self.deps.store.notifications.add(ctx.station_id, "ReservationStatusUpdate",
                                                req, now)
        reservation_id, status = req["reservationId"], req["reservationUpdateStatus"]
        updated = await self.deps.store.reservations.set_status(
            reservation_id, status, now, only_from=HELD, station_id=ctx.station_id,
            reason=f"station: {status}")
        if updated is None:
            log.info("reservation.update_ignored", station_id=ctx.station_id,
                     reservation_id=reservation_id, status=status)
            return {}
        self.deps.events.publish(ReservationChanged(
            ctx.station_id, reservation_id, updated.evse_id, status, now))
        return {}


async def reservation_used(store: Store, events: EventBus, station_id: str,
                           reservation_id: int, transaction_id: str, now: datetime) -> None:
    """H03: a transaction started on the reservation; it has ended, used."""
    updated = await store.reservations.set_status(
        reservation_id, "Used", now, only_from=HELD, station_id=station_id,
        transaction_id=transaction_id, reason=f"used by transaction {transaction_id}")
    if updated is not None:
        events.publish(ReservationChanged(station_id, reservation_id, updated.evse_id,
                                          "Used", now))
