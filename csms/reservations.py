"""Block H, the CSMS side: make and cancel reservations, keeping the books.

A reservation is stored (Requested) before the ReserveNow goes, so its id is the OCPP
reservation id and no answer can arrive for a reservation the CSMS does not know. The
station's answer becomes its status; no answer (offline, CALLERROR, timeout) makes it
Failed with the reason. What the station reports later is csms/ocpp/reservation.py.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import structlog

from csms.clock import Clock, parse_ocpp, to_ocpp
from csms.commands import Commands
from csms.connection import CallFailed, StationOffline
from csms.events import EventBus, ReservationChanged
from csms.frames import FrameError, Payload
from csms.store import Store
from csms.store.reservations import ANSWERS, Reservation

log = structlog.get_logger()


class ReservationRefused(Exception):
    """The reservation could not be made or cancelled; `why` says so, `kind` is one of
    offline | timeout | error | not-active."""

    def __init__(self, kind: str, why: str, reservation: Reservation | None = None,
                 code: str | None = None) -> None:
        super().__init__(why)
        self.kind, self.why, self.reservation, self.code = kind, why, reservation, code


@dataclass(frozen=True)
class ReservationRequest:
    station_id: str
    evse_id: int | None  # None: any EVSE of the station (H01, unspecified EVSE)
    id_token: str
    token_type: str
    expires_at: datetime
    group_id_token: str | None = None
    group_token_type: str | None = None
    connector_type: str | None = None


def reserve_now_payload(r: Reservation) -> Payload:
    payload: Payload = {
        "id": r.id,
        "expiryDateTime": to_ocpp(r.expires_at),
        "idToken": {"idToken": r.id_token, "type": r.token_type},
    }
    if r.evse_id is not None:
        payload["evseId"] = r.evse_id
    if r.connector_type is not None:
        payload["connectorType"] = r.connector_type
    if r.group_id_token is not None:
        payload["groupIdToken"] = {"idToken": r.group_id_token,
                                   "type": r.group_token_type or "Central"}
    return payload


@dataclass(frozen=True)
class Reservations:
    store: Store
    commands: Commands
    clock: Clock
    events: EventBus

    async def create(self, request: ReservationRequest, by: str) -> Reservation:
        """Store, send ReserveNow, store the answer. Raises ReservationRefused (with the
        stored, Failed reservation) when the station gave no answer."""
        now = self.clock.now()
        r = await self.store.reservations.create(
            request.station_id, evse_id=request.evse_id, connector_type=request.connector_type,
            id_token=request.id_token, token_type=request.token_type,
            group_id_token=request.group_id_token, group_token_type=request.group_token_type,
            expires_at=request.expires_at, created_by=by, now=now)
        try:
            reply = await self.commands.call(r.station_id, "ReserveNow", reserve_now_payload(r))
        except (StationOffline, TimeoutError, CallFailed, FrameError) as exc:
            kind, code = _failure(exc)
            failed = await self._set(r, "Failed", f"{kind}: {exc}" if str(exc) else kind)
            raise ReservationRefused(kind, _describe(r.station_id, "ReserveNow", kind, exc),
                                     failed, code) from None
        status = reply.get("status")
        info = reply.get("statusInfo") or {}
        reason = info.get("reasonCode")
        if info.get("additionalInfo"):
            reason = f"{reason}: {info['additionalInfo']}"
        return await self._set(r, status if status in ANSWERS else "Failed", reason)

    async def cancel(self, reservation_id: int) -> Reservation | None:
        """H02: CancelReservation for an active reservation; None if there is none.
        Accepted: Cancelled. Rejected: the station holds no such reservation (it ended
        there unseen): Removed, with that reason."""
        r = await self.store.reservations.get(reservation_id)
        if r is None:
            return None
        now = self.clock.now()
        if r.status_at(now) not in ("Accepted", "Requested", "Failed"):
            raise ReservationRefused("not-active",
                                     f"reservation {r.id} is {r.status_at(now)}", r)
        try:
            reply = await self.commands.call(r.station_id, "CancelReservation",
                                             {"reservationId": r.id})
        except (StationOffline, TimeoutError, CallFailed, FrameError) as exc:
            kind, code = _failure(exc)
            raise ReservationRefused(kind, _describe(r.station_id, "CancelReservation", kind,
                                                     exc), r, code) from None
        if reply.get("status") == "Accepted":
            return await self._set(r, "Cancelled", "CancelReservation Accepted")
        return await self._set(r, "Removed",
                               "CancelReservation Rejected: the station holds no such "
                               "reservation")

    async def _set(self, r: Reservation, status: str, reason: str | None) -> Reservation:
        now = self.clock.now()
        updated = await self.store.reservations.set_status(r.id, status, now, reason=reason)
        assert updated is not None
        log.info("reservation.status", reservation_id=r.id, station_id=r.station_id,
                 status=status, reason=reason)
        self.events.publish(ReservationChanged(r.station_id, r.id, r.evse_id, status, now))
        return updated


async def record_reserve_now(store: Store, clock: Clock, events: EventBus, station_id: str,
                             request: Payload, reply: Payload) -> None:
    """After a raw ReserveNow command: keep the books as if it went through `create`."""
    status = reply.get("status")
    evse_id = request.get("evseId")
    if status not in ANSWERS or not 0 < request["id"] <= 2_147_483_647 or (
            evse_id is not None and not 0 < evse_id <= 2_147_483_647):
        return
    group = request.get("groupIdToken") or {}
    now = clock.now()
    r = await store.reservations.adopt(
        request["id"], station_id, evse_id=evse_id,
        connector_type=request.get("connectorType"),
        id_token=request["idToken"]["idToken"], token_type=request["idToken"]["type"],
        group_id_token=group.get("idToken"), group_token_type=group.get("type"),
        expires_at=parse_ocpp(request["expiryDateTime"]), status=status,
        created_by="ReserveNow command", now=now)
    if r is None:
        log.warning("reservation.id_taken", reservation_id=request["id"],
                    station_id=station_id)
        return
    events.publish(ReservationChanged(station_id, r.id, r.evse_id, status, now))


async def record_cancel_reservation(store: Store, clock: Clock, events: EventBus,
                                    station_id: str, request: Payload, reply: Payload
                                    ) -> None:
    """After a raw CancelReservation command: the reservation ends as with `cancel`."""
    status = "Cancelled" if reply.get("status") == "Accepted" else "Removed"
    now = clock.now()
    r = await store.reservations.set_status(
        request["reservationId"], status, now, only_from=("Accepted", "Requested", "Failed"),
        station_id=station_id, reason=f"CancelReservation command {reply.get('status')}")
    if r is not None:
        events.publish(ReservationChanged(station_id, r.id, r.evse_id, status, now))


def _failure(exc: Exception) -> tuple[str, str | None]:
    if isinstance(exc, StationOffline):
        return "offline", None
    if isinstance(exc, TimeoutError):
        return "timeout", None
    return "error", getattr(exc, "code", None)


def _describe(station_id: str, action: str, kind: str, exc: Exception) -> str:
    if kind == "offline":
        return f"station {station_id} is not connected"
    if kind == "timeout":
        return f"station {station_id} did not answer {action} in time"
    return f"station {station_id} answered {action} with an error: {exc}"
