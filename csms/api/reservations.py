"""Reservations (block H): reserve an EVSE (or any EVSE of a station) for a driver until a
time, cancel, list. Creating one sends ReserveNow and answers with the stored reservation
and the station's answer as its status; what happens to it later (expired, removed, used
by a transaction) shows in its status."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, Path, Query, status
from pydantic import AwareDatetime, Field

from csms.api.auth import Caller, Permission, require
from csms.api.commands import CommandFailed
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import STATION_ID, Body, CommandError, Model, TokenType
from csms.reservations import ReservationRefused, ReservationRequest, Reservations
from csms.store.reservations import STATUSES
from csms.store.reservations import Reservation as ReservationRecord

router = APIRouter(prefix="/api/reservations", tags=["reservations"])

MAX_AHEAD = timedelta(days=30)
ReservationStatus = Literal[
    "Requested", "Accepted", "Faulted", "Occupied", "Rejected", "Unavailable", "Failed",
    "Cancelled", "Expired", "Removed", "Used"]
assert set(ReservationStatus.__args__) == set(STATUSES)  # type: ignore[attr-defined]
ConnectorType = Literal[
    "cCCS1", "cCCS2", "cG105", "cTesla", "cType1", "cType2", "s309-1P-16A", "s309-1P-32A",
    "s309-3P-16A", "s309-3P-32A", "sBS1361", "sCEE-7-7", "sType2", "sType3",
    "Other1PhMax16A", "Other1PhOver16A", "Other3Ph", "Pan", "wInductive", "wResonant",
    "Undetermined", "Unknown"]


class ReservationCreate(Body):
    station_id: str = Field(pattern=STATION_ID)
    evse_id: int | None = Field(None, ge=1, le=10_000,
                                description="left out: any EVSE of the station")
    connector_type: ConnectorType | None = None
    id_token: str = Field(min_length=1, max_length=36)
    token_type: TokenType = "ISO14443"
    group_id_token: str | None = Field(
        None, min_length=1, max_length=36,
        description="any token of this group may also use the reservation")
    group_token_type: TokenType = "Central"
    expires_at: AwareDatetime = Field(description="until when the EVSE is held (at most "
                                      "30 days ahead)")


class ReservationOut(Model):
    id: int = Field(description="the OCPP reservation id")
    station_id: str
    evse_id: int | None = Field(description="null: any EVSE of the station")
    connector_type: str | None
    id_token: str
    token_type: str
    group_id_token: str | None
    group_token_type: str | None
    expires_at: datetime
    status: ReservationStatus = Field(
        description="Requested (no answer yet); the station's answer to ReserveNow "
        "(Accepted, Faulted, Occupied, Rejected, Unavailable); Failed (no answer); then "
        "Cancelled, Expired (also once its time has passed), Removed, or Used")
    status_reason: str | None
    transaction_id: str | None = Field(description="the transaction that used it")
    created_by: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None


def reservation_out(r: ReservationRecord, now: datetime) -> ReservationOut:
    out = ReservationOut.model_validate(r)
    out.status = r.status_at(now)  # type: ignore[assignment]
    if out.status == "Expired" and r.status == "Accepted":
        out.ended_at = r.expires_at
    return out


_ERRORS = {
    404: {"model": CommandError, "description": "no such station or reservation"},
    409: {"model": CommandError, "description": "not connected, or the reservation is over"},
    502: {"model": CommandError, "description": "the station answered with a CALLERROR"},
    504: {"model": CommandError, "description": "the station did not answer in time"},
}
_STATUS = {"offline": status.HTTP_409_CONFLICT, "timeout": status.HTTP_504_GATEWAY_TIMEOUT,
           "error": status.HTTP_502_BAD_GATEWAY, "not-active": status.HTTP_409_CONFLICT}


def _desk(parts: Parts) -> Reservations:
    return Reservations(parts.store, parts.commands, parts.clock, parts.events)


@router.post("", status_code=status.HTTP_201_CREATED, responses=_ERRORS)
async def create_reservation(body: ReservationCreate, parts: PartsDep,
                             who: Annotated[Caller, require(Permission.COMMANDS)]
                             ) -> ReservationOut:
    """H01: ReserveNow. 201 with the reservation, whose `status` is the station's answer
    (only Accepted holds the EVSE). 409/502/504 when the station gave no answer (the
    attempt is kept, Failed)."""
    now = parts.clock.now()
    if body.expires_at <= now:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "expires_at"], "type": "value_error",
            "msg": "must be in the future"}])
    if body.expires_at > now + MAX_AHEAD:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "expires_at"], "type": "value_error",
            "msg": f"at most {MAX_AHEAD.days} days ahead"}])
    if await parts.store.stations.get(body.station_id) is None:
        raise not_found(f"station {body.station_id}")
    request = ReservationRequest(
        station_id=body.station_id, evse_id=body.evse_id, id_token=body.id_token,
        token_type=body.token_type, expires_at=body.expires_at,
        group_id_token=body.group_id_token,
        group_token_type=body.group_token_type if body.group_id_token else None,
        connector_type=body.connector_type)
    try:
        r = await _desk(parts).create(request, by=who.name)
    except ReservationRefused as exc:
        raise CommandFailed(_STATUS[exc.kind], exc.why, exc.code) from None
    return reservation_out(r, parts.clock.now())


@router.get("", dependencies=[require(Permission.READ)])
async def list_reservations(
    parts: PartsDep,
    station_id: Annotated[str | None, Query(max_length=48)] = None,
    status_is: Annotated[ReservationStatus | None,
                         Query(alias="status", description="as of now")] = None,
    id_token: Annotated[str | None, Query(max_length=36)] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[ReservationOut]:
    """Newest first."""
    now = parts.clock.now()
    found = await parts.store.reservations.list(station_id=station_id, status=status_is,
                                                id_token=id_token, now=now, limit=limit)
    return [reservation_out(r, now) for r in found]


ReservationId = Annotated[int, Path(ge=1, le=2_147_483_647)]


@router.get("/{reservation_id}", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such reservation"}})
async def get_reservation(reservation_id: ReservationId, parts: PartsDep) -> ReservationOut:
    r = await parts.store.reservations.get(reservation_id)
    if r is None:
        raise not_found(f"reservation {reservation_id}")
    return reservation_out(r, parts.clock.now())


@router.delete("/{reservation_id}", dependencies=[require(Permission.COMMANDS)],
               responses=_ERRORS)
async def cancel_reservation(reservation_id: ReservationId, parts: PartsDep
                             ) -> ReservationOut:
    """H02: CancelReservation. The reservation comes back Cancelled, or Removed when the
    station no longer held it; 409 when it is not active (or the station is offline)."""
    try:
        r = await _desk(parts).cancel(reservation_id)
    except ReservationRefused as exc:
        raise CommandFailed(_STATUS[exc.kind], exc.why, exc.code) from None
    if r is None:
        raise not_found(f"reservation {reservation_id}")
    return reservation_out(r, parts.clock.now())
