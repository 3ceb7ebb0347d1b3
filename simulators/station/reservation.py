"""Block H, reservation, as this station reads OCPP 2.0.1 Part 2:

- ReserveNow (H01): Rejected when ReservationCtrlr.Enabled is false, the expiry has
  passed, the EVSE is unknown, or no evseId is given while
  ReservationCtrlr.NonEvseSpecific is false; Unavailable for an inoperative EVSE, Faulted
  for a faulted one, Occupied when it has a car, a transaction or another reservation.
  Otherwise Accepted: a reservation with the same id replaces the old one, a reserved EVSE
  reports Reserved. A reservation without evseId holds one of the free EVSEs: it is
  refused (Occupied) when none is left over, and once the free EVSEs are all spoken for
  they report Reserved.
- Only the reserved idToken, or a token of its groupIdToken, may start on a reserved EVSE
  (H03); the TransactionEvent that carries that token names the `reservationId`, and the
  reservation ends there.
- CancelReservation (H02): Accepted for a reservation the station holds, else Rejected.
- At its expiry a reservation ends with ReservationStatusUpdate Expired (H04), and the
  EVSE is Available again.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from simulators.clock import parse_ocpp
from simulators.station.replies import Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station
    from simulators.station.model import EvseState

log = logging.getLogger("simulators.station")


@dataclass
class Reservation:
    id: int
    evse_id: int | None  # None: any EVSE
    id_token: dict
    group_id_token: dict | None
    expires: datetime
    timer: asyncio.Task | None = None

    def matches(self, id_token: dict, group_id_token: dict | None) -> bool:
        if id_token.get("idToken") == self.id_token.get("idToken"):
            return True
        return bool(group_id_token and self.group_id_token
                    and group_id_token.get("idToken") == self.group_id_token.get("idToken"))


def _held_for(station: Station, evse: EvseState) -> Reservation | None:
    return next((r for r in station.reservations.values()
                 if r.evse_id == evse.spec.evse_id), None)


def _free(station: Station) -> list[EvseState]:
    """Operative EVSEs with no car, no transaction and no reservation of their own."""
    return [e for e in station.evses.values()
            if e.operative and e.ev is None and e.tx is None and e.status != "Faulted"
            and _held_for(station, e) is None]


def _unspecified(station: Station) -> list[Reservation]:
    return [r for r in station.reservations.values() if r.evse_id is None]


async def refresh(station: Station) -> None:
    """Each free EVSE reports Reserved or Available, as the reservations now stand."""
    free = _free(station)
    all_spoken_for = bool(_unspecified(station)) and len(free) <= len(_unspecified(station))
    for e in station.evses.values():
        if not e.operative or e.ev is not None or e.tx is not None or e.status == "Faulted":
            continue
        wanted = ("Reserved" if _held_for(station, e) is not None
                  or (all_spoken_for and e in free) else "Available")
        if e.status != wanted:
            await station.status(e.spec.evse_id, wanted)


def _end(station: Station, reservation_id: int) -> Reservation | None:
    r = station.reservations.pop(reservation_id, None)
    if r is not None and r.timer is not None and r.timer is not asyncio.current_task():
        r.timer.cancel()
    return r


async def reserve_now(station: Station, req: dict) -> Reply:
    dm = station.device_model
    if not dm.flag("ReservationCtrlr", "Enabled"):
        return rejected("UnsupportedRequest", "reservations are disabled"), None
    expires = parse_ocpp(req["expiryDateTime"])
    if expires <= station.clock.now():
        return rejected("InvalidValue", "expiryDateTime has passed"), None
    evse_id = req.get("evseId")
    replaced = req["id"] in station.reservations
    old = station.reservations.get(req["id"])
    if evse_id is None:
        if not dm.flag("ReservationCtrlr", "NonEvseSpecific"):
            return rejected("UnsupportedRequest", "a reservation needs an evseId"), None
        if not any(e.operative for e in station.evses.values()):
            return {"status": "Unavailable"}, None
        others = [r for r in _unspecified(station) if r.id != req["id"]]
        if len(_free(station)) <= len(others):
            return {"status": "Occupied"}, None
    else:
        evse = station.evses.get(evse_id)
        if evse is None:
            return rejected("UnknownEvse", f"no EVSE {evse_id}"), None
        if not evse.operative:
            return {"status": "Unavailable"}, None
        if evse.status == "Faulted":
            return {"status": "Faulted"}, None
        holder = _held_for(station, evse)
        if evse.ev is not None or evse.tx is not None or (
                holder is not None and holder.id != req["id"]):
            return {"status": "Occupied"}, None
    if replaced and old is not None:
        _end(station, old.id)
    r = Reservation(req["id"], evse_id, req["idToken"], req.get("groupIdToken"), expires)
    station.reservations[r.id] = r
    r.timer = station._spawn(_expire(station, r))

    async def announce() -> None:
        await refresh(station)

    return {"status": "Accepted"}, announce


async def cancel_reservation(station: Station, req: dict) -> Reply:
    if _end(station, req["reservationId"]) is None:
        return {"status": "Rejected"}, None

    async def announce() -> None:
        await refresh(station)

    return {"status": "Accepted"}, announce


async def _expire(station: Station, r: Reservation) -> None:
    await station.clock.sleep(max(0.0, (r.expires - station.clock.now()).total_seconds()))
    if station.reservations.get(r.id) is not r:
        return
    _end(station, r.id)
    try:
        await station.call("ReservationStatusUpdate", {
            "reservationId": r.id, "reservationUpdateStatus": "Expired"})
    except Exception as exc:  # offline: the CSMS sees the expiry by its own clock too
        log.info("%s ReservationStatusUpdate %s not sent: %s", station.station_id, r.id, exc)
    await refresh(station)


def claim(station: Station, evse: EvseState, id_token: dict, group_id_token: dict | None
          ) -> tuple[bool, int | None]:
    """May this token start on this EVSE, and under which reservation (which then ends)?"""
    own = _held_for(station, evse)
    if own is not None:
        if not own.matches(id_token, group_id_token):
            return False, None
        _end(station, own.id)
        return True, own.id
    mine = next((r for r in _unspecified(station) if r.matches(id_token, group_id_token)),
                None)
    if mine is not None:
        _end(station, mine.id)
        return True, mine.id
    free = _free(station)
    if evse in free and len(free) <= len(_unspecified(station)):
        return False, None  # the last free EVSEs are held for others
    return True, None
