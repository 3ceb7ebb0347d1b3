"""The protocol surface in one screen: each charger-initiated action and its handler.

`Router.dispatch` applies the rules every CALL shares, in order: the action must be one of
OCPP 2.0.1's (else NotImplemented) and one a station may send (else NotSupported); a station
that is not Accepted may only boot and report (B02/B03: else SecurityError); the payload
must match the schema; the handler's answer must too (else InternalError: our bug).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from csms.connection import StationContext
from csms.frames import Call, FrameError, Payload
from csms.ocpp import (
    authorization,
    availability,
    diagnostics,
    display,
    firmware,
    iso15118,
    metering,
    provisioning,
    reservation,
    security,
    smart_charging,
)
from csms.ocpp import transactions as tx
from csms.ocpp.deps import Deps
from csms.ocpp.records import Record
from csms.ocpp.schemas import known_actions, validate_request, validate_response

Handler = Callable[[StationContext, Payload], Awaitable[Payload]]

ALLOWED_BEFORE_ACCEPTED = frozenset({"BootNotification", "NotifyReport"})


def routes(deps: Deps) -> dict[str, Handler]:
    return {
        # B provisioning
        "BootNotification": provisioning.BootNotification(deps),
        "NotifyReport": provisioning.NotifyReport(deps),
        # G availability
        "Heartbeat": availability.Heartbeat(deps),
        "StatusNotification": availability.StatusNotification(deps),
        # C authorization
        "Authorize": authorization.Authorize(deps),
        # E transactions, J metering
        "TransactionEvent": tx.TransactionEvent(deps),
        "MeterValues": metering.MeterValues(deps),
        # K smart charging
        "NotifyEVChargingNeeds": smart_charging.NotifyEVChargingNeeds(deps),
        "NotifyEVChargingSchedule": smart_charging.NotifyEVChargingSchedule(deps),
        "NotifyChargingLimit": smart_charging.NotifyChargingLimit(deps),
        "ClearedChargingLimit": smart_charging.ClearedChargingLimit(deps),
        "ReportChargingProfiles": smart_charging.ReportChargingProfiles(deps),
        # A security
        "SecurityEventNotification": security.SecurityEventNotification(deps),
        "SignCertificate": security.SignCertificate(deps),
        # L firmware
        "FirmwareStatusNotification": firmware.FirmwareStatusNotification(deps),
        "PublishFirmwareStatusNotification": Record(deps, "PublishFirmwareStatusNotification"),
        # N diagnostics
        "LogStatusNotification": diagnostics.LogStatusNotification(deps),
        "NotifyEvent": diagnostics.NotifyEvent(deps),
        "NotifyMonitoringReport": diagnostics.NotifyMonitoringReport(deps),
        "NotifyCustomerInformation": diagnostics.NotifyCustomerInformation(deps),
        # O display, H reservation
        "NotifyDisplayMessages": display.NotifyDisplayMessages(deps),
        "ReservationStatusUpdate": reservation.ReservationStatusUpdate(deps),
        # M ISO 15118 certificates
        "Get15118EVCertificate": iso15118.Get15118EVCertificate(deps),
        "GetCertificateStatus": iso15118.GetCertificateStatus(deps),
        # P data transfer
        "DataTransfer": Record(deps, "DataTransfer", {"status": "UnknownVendorId"}),
    }


class Router:
    def __init__(self, table: dict[str, Handler]) -> None:
        self.table = table

    async def dispatch(self, ctx: StationContext, call: Call) -> Payload:
        handler = self.table.get(call.action)
        if handler is None:
            if call.action in known_actions():
                raise FrameError("NotSupported", f"{call.action} is sent by a CSMS, not to it",
                                 call.message_id)
            raise FrameError("NotImplemented", f"unknown action {call.action!r}",
                             call.message_id)
        if ctx.boot_status != "Accepted" and call.action not in ALLOWED_BEFORE_ACCEPTED:
            raise FrameError(
                "SecurityError",
                f"boot status is {ctx.boot_status or 'unknown'}: send BootNotification first",
                call.message_id,
            )
        validate_request(call.action, call.payload, call.message_id)
        reply = await handler(ctx, call.payload)
        try:
            validate_response(call.action, reply)
        except FrameError as exc:
            raise FrameError("InternalError", f"invalid answer: {exc.description}",
                             call.message_id) from exc
        return reply
