"""What the CSMS keeps of a station's answer to a command (blocks K, M, O), whether the
command came through a flow's own route or the plain command table (`after` hooks): the
stored messages, reports, certificate ids and the scheduler's view stay what the station
holds, whichever way the operator went."""

from __future__ import annotations

from typing import Any

import structlog

from csms.api.deps import Parts
from csms.events import ChargingProfilesCleared
from csms.frames import FrameError, Payload
from csms.ocpp.display import check_message_info, is_unfiltered

log = structlog.get_logger()
INT32 = 2**31 - 1


def _int32(value: Any) -> bool:
    return isinstance(value, int) and 0 <= value <= INT32


async def display_message_set(parts: Parts, station_id: str, request: Payload,
                              reply: Payload) -> None:
    """O01/O02/O06: the station shows the message (the same id replaced)."""
    if reply.get("status") != "Accepted":
        return
    try:
        check_message_info(request["message"], "message")
    except FrameError as exc:  # sent as the operator wrote it; kept only when storable
        log.warning("display.not_kept", station_id=station_id, reason=exc.description)
        return
    await parts.store.display.put(station_id, request["message"], parts.clock.now())


async def display_message_cleared(parts: Parts, station_id: str, request: Payload,
                                  reply: Payload) -> None:
    """O05: Accepted or Unknown, the station does not hold it any more."""
    if _int32(request.get("id")):
        await parts.store.display.remove(station_id, request["id"])


async def _report_requested(parts: Parts, station_id: str, kind: str, request: Payload,
                            reply: Payload) -> None:
    request_id = request.get("requestId")
    if not _int32(request_id):
        return
    store, now = parts.store, parts.clock.now()
    await store.station_reports.requested(station_id, kind, request_id, request, now)
    await store.station_reports.answered(station_id, kind, request_id, reply["status"], now)
    if kind != "DisplayMessages" or not is_unfiltered(request):
        return
    report = await store.station_reports.get(station_id, kind, request_id)
    if reply["status"] != "Accepted":  # an unfiltered request matched nothing: none held
        await store.display.replace_all(station_id, [], now)
    elif report is not None and report.complete and not report.truncated:
        await store.display.replace_all(station_id, report.items, now)  # it came first


async def display_messages_requested(parts: Parts, station_id: str, request: Payload,
                                     reply: Payload) -> None:
    """O03/O04: the report that follows fills the request's entry."""
    await _report_requested(parts, station_id, "DisplayMessages", request, reply)


async def charging_profiles_requested(parts: Parts, station_id: str, request: Payload,
                                      reply: Payload) -> None:
    """K09: the ReportChargingProfiles that follow fill the request's entry."""
    await _report_requested(parts, station_id, "ChargingProfiles", request, reply)


async def charging_profiles_cleared(parts: Parts, station_id: str, request: Payload,
                                    reply: Payload) -> None:
    """K10: the scheduler forgets what the cleared EVSEs held (request: the table's
    snake_case body or the OCPP request)."""
    if reply.get("status") != "Accepted":
        return
    criteria = request.get("chargingProfileCriteria") or {}
    parts.events.publish(ChargingProfilesCleared(
        station_id,
        request.get("evse_id", criteria.get("evseId")),
        request.get("purpose", criteria.get("chargingProfilePurpose")),
        request.get("charging_profile_id", request.get("chargingProfileId")),
        parts.clock.now(),
    ))


async def installed_certificate_ids(parts: Parts, station_id: str, request: Payload,
                                    reply: Payload) -> None:
    """M03: what the station holds of the types asked for (NotFound: none of them)."""
    if reply.get("status") not in ("Accepted", "NotFound"):
        return
    chains = reply.get("certificateHashDataChain") or [] if reply["status"] == "Accepted" \
        else []
    await parts.store.installed_certificates.replace(
        station_id, request.get("certificateType"), chains, parts.clock.now())


async def certificate_deleted(parts: Parts, station_id: str, request: Payload,
                              reply: Payload) -> None:
    """M04: the station no longer holds it."""
    if reply.get("status") == "Accepted":
        await parts.store.installed_certificates.remove(
            station_id, request["certificateHashData"])
