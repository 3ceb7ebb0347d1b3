"""Block O, display messages as a resource of each station.

The CSMS keeps what each station shows: a message is stored once the station accepted it
(SetDisplayMessage, O01/O02; the same id replaces it, O06), dropped when it is cleared
(ClearDisplayMessage, O05), and the whole set is replaced by what the station reports in a
complete, unfiltered GetDisplayMessages report (O03/O04). A refusal by the station is a
409 naming the station's status (e.g. NotSupportedPriority, UnknownTransaction).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, HTTPException, Response, status
from pydantic import AwareDatetime, Field

from csms.api import answers
from csms.api.auth import Permission, require
from csms.api.commands import CommandFailed, send
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import Body, CommandError, Model
from csms.api.tariffs import site_tariff
from csms.clock import to_ocpp
from csms.display import PriceSlot, queue_message, tariff_message
from csms.frames import Payload

router = APIRouter(prefix="/api/stations/{station_id}/display-messages",
                   tags=["display messages"])

Priority = Literal["AlwaysFront", "InFront", "NormalCycle"]
State = Literal["Charging", "Faulted", "Idle", "Unavailable"]
Format = Literal["ASCII", "HTML", "URI", "UTF8"]
INT32 = 2**31 - 1
REFUSED = {409: {"model": CommandError, "description": "the station refused the message, or "
                 "is not connected"},
           502: {"model": CommandError, "description": "the station answered a CALLERROR"},
           504: {"model": CommandError, "description": "the station did not answer in time"}}


class DisplayMessageFields(Body):
    content: str = Field(min_length=1, max_length=512)
    format: Format = "UTF8"
    language: str | None = Field(None, min_length=2, max_length=8,
                                 description="RFC 5646 language code, e.g. en, zh-CN")
    priority: Priority = "NormalCycle"
    state: State | None = Field(None, description="shown only while the station is in it")
    start: AwareDatetime | None = Field(None, description="shown from (default: now)")
    end: AwareDatetime | None = Field(None, description="shown until (default: until cleared)")
    transaction_id: str | None = Field(None, min_length=1, max_length=36,
                                       description="shown only during this transaction")
    evse_id: int | None = Field(None, ge=1, le=INT32, description="the display of this EVSE")


class DisplayMessage(Model):
    message_id: int
    priority: str
    state: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    transaction_id: str | None
    evse_id: int | None
    format: str
    language: str | None
    content: str
    source: str = Field(description="set (accepted by the station) or reported (its report)")
    updated_at: datetime


class ReportRequest(Body):
    ids: list[int] | None = Field(None, min_length=1, max_length=100,
                                  description="only these message ids")
    priority: Priority | None = None
    state: State | None = None


class Report(Model):
    request_id: int
    status: str | None = Field(description="the station's answer to the request")
    complete: bool
    truncated: bool
    parts: int
    requested_at: datetime | None
    updated_at: datetime
    items: list[dict[str, Any]] = Field(description="as the station reported them (OCPP)")


class TariffMessageRequest(Body):
    site_id: str = Field(min_length=1, max_length=100)
    language: Literal["en", "zh"] = "en"
    priority: Priority = "NormalCycle"
    hours: int = Field(12, ge=1, le=24, description="how far ahead the message looks")


class QueueMessageRequest(Body):
    position: int = Field(ge=1, le=1000, description="1: next")
    language: Literal["en", "zh"] = "en"
    evse_id: int | None = Field(None, ge=1, le=INT32)
    end: AwareDatetime | None = Field(None, description="shown until (default: until cleared)")


def message_info(message_id: int, body: DisplayMessageFields) -> Payload:
    content: Payload = {"format": body.format, "content": body.content}
    if body.language:
        content["language"] = body.language
    info: Payload = {"id": message_id, "priority": body.priority, "message": content}
    if body.state:
        info["state"] = body.state
    if body.start:
        info["startDateTime"] = to_ocpp(body.start)
    if body.end:
        info["endDateTime"] = to_ocpp(body.end)
    if body.transaction_id:
        info["transactionId"] = body.transaction_id
    if body.evse_id is not None:
        info["display"] = {"name": "Display", "evse": {"id": body.evse_id}}
    return info


async def _set(parts: Parts, station_id: str, message_id: int,
               body: DisplayMessageFields) -> DisplayMessage:
    if body.start and body.end and body.end <= body.start:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "end"], "type": "value_error", "msg": "end must be after start"}])
    info = message_info(message_id, body)
    reply = (await send(parts, station_id, "SetDisplayMessage", lambda: parts.commands.call(
        station_id, "SetDisplayMessage", {"message": info})))
    if reply["status"] != "Accepted":
        reason = (reply.get("statusInfo") or {}).get("additionalInfo", "")
        raise CommandFailed(status.HTTP_409_CONFLICT,
                            f"station {station_id} refused the message: {reply['status']}"
                            + (f" ({reason})" if reason else ""), reply["status"])
    await answers.display_message_set(parts, station_id, {"message": info}, reply)
    stored = await parts.store.display.get(station_id, message_id)
    assert stored is not None
    return DisplayMessage.model_validate(stored)


@router.get("", dependencies=[require(Permission.READ)])
async def list_messages(station_id: str, parts: PartsDep) -> list[DisplayMessage]:
    """The messages the station holds, as far as the CSMS knows."""
    return [DisplayMessage.model_validate(m) for m in await parts.store.display.list(station_id)]


@router.post("", status_code=status.HTTP_201_CREATED, responses=REFUSED,
             dependencies=[require(Permission.COMMANDS)])
async def add_message(station_id: str, body: DisplayMessageFields,
                      parts: PartsDep) -> DisplayMessage:
    """O01/O02: show a new message (the CSMS picks its id)."""
    return await _set(parts, station_id, await parts.store.display.next_id(station_id), body)


@router.put("/{message_id}", responses=REFUSED, dependencies=[require(Permission.COMMANDS)])
async def put_message(station_id: str, message_id: int, body: DisplayMessageFields,
                      parts: PartsDep) -> DisplayMessage:
    """O01/O02 with a chosen id; O06: an existing id is replaced on the station."""
    if not 0 <= message_id <= INT32:
        raise not_found(f"display message {message_id}")
    return await _set(parts, station_id, message_id, body)


@router.delete("/{message_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require(Permission.COMMANDS)],
               responses={404: {"description": "the station does not hold that message"},
                          **REFUSED})
async def clear_message(station_id: str, message_id: int, parts: PartsDep) -> Response:
    """O05: the station removes the message. Unknown to the station: 404 (and it is no
    longer kept here either)."""
    if not 0 <= message_id <= INT32:
        raise not_found(f"display message {message_id}")
    reply = (await send(parts, station_id, "ClearDisplayMessage", lambda: parts.commands.call(
        station_id, "ClearDisplayMessage", {"id": message_id})))
    await answers.display_message_cleared(parts, station_id, {"id": message_id}, reply)
    if reply["status"] != "Accepted":
        raise not_found(f"display message {message_id} on station {station_id}")
    return Response(status_code=status.HTTP_204_NO_CONTENT)


def _report(found: Any) -> Report:
    return Report(request_id=found.request_id, status=found.status, complete=found.complete,
                  truncated=found.truncated, parts=found.parts,
                  requested_at=found.requested_at, updated_at=found.updated_at,
                  items=found.items)


@router.post("/reports", status_code=status.HTTP_202_ACCEPTED, responses=REFUSED,
             dependencies=[require(Permission.COMMANDS)])
async def request_report(station_id: str, body: ReportRequest, parts: PartsDep) -> Report:
    """O03/O04: ask the station which messages it holds (GetDisplayMessages). Its
    NotifyDisplayMessages parts fill the report; read it at .../reports/{request_id}.
    A complete unfiltered report replaces the stored messages."""
    store, now = parts.store, parts.clock.now()
    if await store.stations.get(station_id) is None:
        raise not_found(f"station {station_id}")
    request_id = parts.commands.next_request_id()
    request: Payload = {"requestId": request_id}
    if body.ids:
        request["id"] = body.ids
    if body.priority:
        request["priority"] = body.priority
    if body.state:
        request["state"] = body.state
    await store.station_reports.requested(station_id, "DisplayMessages", request_id, request, now)
    reply = (await send(parts, station_id, "GetDisplayMessages", lambda: parts.commands.call(
        station_id, "GetDisplayMessages", request)))
    await answers.display_messages_requested(parts, station_id, request, reply)
    found = await store.station_reports.get(station_id, "DisplayMessages", request_id)
    assert found is not None
    return _report(found)


@router.get("/reports/{request_id}", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such report"}})
async def get_report(station_id: str, request_id: int, parts: PartsDep) -> Report:
    found = None
    if 0 <= request_id <= INT32:
        found = await parts.store.station_reports.get(station_id, "DisplayMessages", request_id)
    if found is None:
        raise not_found(f"display message report {request_id}")
    return _report(found)


@router.post("/tariff", status_code=status.HTTP_201_CREATED, responses=REFUSED,
             dependencies=[require(Permission.COMMANDS)])
async def tariff(station_id: str, body: TariffMessageRequest, parts: PartsDep
                 ) -> DisplayMessage:
    """Show drivers the site's energy prices for the next hours (English or Chinese), as a
    new message that ends when its text stops being true."""
    site = parts.sites.get(body.site_id)
    if site is None:
        raise not_found(f"site {body.site_id}")
    found = await site_tariff(parts, site.id)
    if found.tariff is None:
        raise not_found(f"tariff of site {site.id}")
    slots = [PriceSlot(p.start, p.end, p.price, p.band) for p in found.prices]
    try:
        text, until = tariff_message(slots, found.currency or "", site.utc_offset,
                                     parts.clock.now(), body.language, body.hours)
    except ValueError:
        raise not_found(f"prices of site {site.id} for the coming hours") from None
    fields = DisplayMessageFields(content=text, format="UTF8", language=body.language,
                                  priority=body.priority, end=until)
    return await _set(parts, station_id, await parts.store.display.next_id(station_id), fields)


@router.post("/queue", status_code=status.HTTP_201_CREATED, responses=REFUSED,
             dependencies=[require(Permission.COMMANDS)])
async def queue(station_id: str, body: QueueMessageRequest, parts: PartsDep
                ) -> DisplayMessage:
    """Tell the driver waiting at an EVSE their place in the queue (English or Chinese)."""
    fields = DisplayMessageFields(
        content=queue_message(body.position, body.language), format="UTF8",
        language=body.language, priority="InFront", evse_id=body.evse_id, end=body.end)
    return await _set(parts, station_id, await parts.store.display.next_id(station_id), fields)
