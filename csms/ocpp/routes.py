"""The protocol surface in one screen: each charger-initiated action and its handler.

`Router.dispatch` applies the rules every CALL shares, in order: the action must be one of
the connection's OCPP version's (2.0.1 or 2.1: else NotImplemented), one the CSMS handles
(a 2.1 action in `NOT_YET_21`: NotImplemented) and one a station may send (else
NotSupported); a station that is not Accepted may only boot and report (B02/B03: else
SecurityError); the payload must match that version's schema; the handler's answer must too
(else InternalError: our bug).

One table serves both versions: where 2.1 only adds fields, the 2.0.1 handler answers 2.1
too. The 2.1-only notifications whose answer is empty are kept as sent (`Record`), like
2.0.1's PublishFirmwareStatusNotification.
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

# Charger-initiated OCPP 2.1 actions the CSMS cannot answer yet: their answer must carry
# a decision (a status, a certificate status, a VAT check) that an empty reply would fake.
NOT_YET_21 = frozenset({
    "GetCertificateChainStatus",  # M: OCSP status of a whole chain
    "OpenPeriodicEventStream",  # N: periodic event streams
    "PullDynamicScheduleUpdate",  # K: dynamic schedules
    "VatNumberValidation",  # C: ad hoc payment with VAT number
})
# Charger-initiated OCPP 2.1 notifications, answered empty and kept as sent.
RECORDED_21 = (
    "BatterySwap",  # C: battery swap in / out
    "ClosePeriodicEventStream",  # N
    "NotifyDERAlarm",  # R: DER control
    "NotifyDERStartStop",  # R
    "ReportDERControl",  # R
    "NotifyPriorityCharging",  # K: priority charging
    "NotifySettlement",  # C: payment terminal settlement
)


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
        # OCPP 2.1 only (a 2.0.1 connection never reaches them: not its actions)
        **{action: Record(deps, action) for action in RECORDED_21},
    }


class Router:
    def __init__(self, table: dict[str, Handler]) -> None:
        self.table = table

    async def dispatch(self, ctx: StationContext, call: Call) -> Payload:
        version = ctx.ocpp_version
        handler = self.table.get(call.action)
        if call.action not in known_actions(version):
            raise FrameError("NotImplemented",
                             f"unknown action {call.action!r} in OCPP {version}",
                             call.message_id)
        if handler is None:
            if call.action in NOT_YET_21:
                raise FrameError("NotImplemented", f"this CSMS does not handle {call.action} yet",
                                 call.message_id)
            raise FrameError("NotSupported", f"{call.action} is sent by a CSMS, not to it",
                             call.message_id)
        if ctx.boot_status != "Accepted" and call.action not in ALLOWED_BEFORE_ACCEPTED:
            raise FrameError(
                "SecurityError",
                f"boot status is {ctx.boot_status or 'unknown'}: send BootNotification first",
                call.message_id,
            )
        validate_request(call.action, call.payload, call.message_id, version)
        reply = await handler(ctx, call.payload)
        try:
            validate_response(call.action, reply, version=version)
        except FrameError as exc:
            raise FrameError("InternalError", f"invalid answer: {exc.description}",
                             call.message_id) from exc
        return reply
