"""Block A, security: a station's CSR signed by the CSMS's CA (A02/A03) and its security
events kept as alerts (A04).

SignCertificate: the CSR is checked at once (well formed, self-signed, CN = the station
identity, O = the configured organisation) and answered Accepted or Rejected with the
reason; once answered, the CSMS sends CertificateSigned with the chain (certificate, CA)
and stores the certificate with the station's verdict. Only ChargingStationCertificate:
no V2G CA stands behind this CSMS (ISO 15118 certificates are block M's).
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import timedelta

import structlog

from csms.ca import CsrRejected, IssuedCertificate
from csms.clock import parse_ocpp
from csms.connection import CallFailed, StationContext, StationOffline
from csms.events import SecurityEventReported
from csms.frames import FrameError, Payload
from csms.ocpp.deps import Deps
from csms.store import Store

log = structlog.get_logger()

STATION_CERTIFICATE = "ChargingStationCertificate"
# A station renews its certificate a few times a year; more CSRs than this in a day is a
# fault or an attack, and each one costs a signature and a stored row.
MAX_CSRS_PER_DAY = 10

# OCPP 2.0.1 Part 2, appendix "Security events": the ones marked critical, which a station
# must deliver (queued while offline) and an operator should see at once.
CRITICAL_SECURITY_EVENTS = frozenset({
    "FirmwareUpdated", "SettingSystemTime", "StartupOfTheDevice", "ResetOrReboot",
    "SecurityLogWasCleared", "MemoryExhaustion", "TamperDetectionActivated",
    "MaintenanceLoginAccepted", "MaintenanceLoginFailed",
})


def _rejected(reason: str, detail: str) -> Payload:
    return {"status": "Rejected",
            "statusInfo": {"reasonCode": reason[:20], "additionalInfo": detail[:512]}}


@dataclass(frozen=True)
class SignCertificate:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        kind = req.get("certificateType", STATION_CERTIFICATE)
        ca = self.deps.ca
        if kind != STATION_CERTIFICATE or ca is None:
            return _rejected("NotSupported", f"this CSMS signs only {STATION_CERTIFICATE}s")
        now = self.deps.clock.now()
        store = self.deps.store
        if await store.certificates.issued_since(ctx.station_id, now - timedelta(days=1)) \
                >= MAX_CSRS_PER_DAY:
            log.warning("certificate.too_many_csrs", station_id=ctx.station_id)
            return _rejected("TooManyRequests",
                             f"at most {MAX_CSRS_PER_DAY} certificates a day per station")
        try:
            issued = await asyncio.to_thread(ca.sign_csr, req["csr"], ctx.station_id, now)
        except CsrRejected as exc:
            log.warning("certificate.csr_rejected", station_id=ctx.station_id,
                        reason=exc.reason, detail=exc.detail)
            return _rejected(exc.reason, exc.detail)
        await store.certificates.add(issued, source="csr", status="Issued", now=now)
        ctx.after(lambda: send_certificate(ctx, store, issued))
        log.info("certificate.issued", station_id=ctx.station_id, serial=issued.serial,
                 not_after=issued.not_after.isoformat())
        return {"status": "Accepted"}


async def send_certificate(ctx: StationContext, store: Store, issued: IssuedCertificate) -> None:
    """CertificateSigned with the chain; the station's answer becomes the stored status."""
    assert ctx.connection is not None
    try:
        reply = await ctx.connection.call("CertificateSigned", {
            "certificateChain": issued.chain_pem, "certificateType": STATION_CERTIFICATE})
        status = "Accepted" if reply.get("status") == "Accepted" else "Rejected"
    except (CallFailed, StationOffline, TimeoutError) as exc:
        log.warning("certificate.not_delivered", station_id=ctx.station_id,
                    serial=issued.serial, error=str(exc))
        status = "Failed"
    await store.certificates.set_status(issued.serial, status)
    log.info("certificate.signed_sent", station_id=ctx.station_id, serial=issued.serial,
             status=status)


@dataclass(frozen=True)
class SecurityEventNotification:
    """A04: every event is stored as an alert; critical ones are also logged at warning."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        kind = req["type"]
        critical = kind in CRITICAL_SECURITY_EVENTS
        try:
            occurred_at = parse_ocpp(req["timestamp"])
        except ValueError:
            raise FrameError("FormatViolation", "timestamp is not an RFC 3339 date-time") \
                from None
        now = self.deps.clock.now()
        await self.deps.store.security_events.add(
            ctx.station_id, kind, occurred_at, req.get("techInfo"), critical, now)
        self.deps.events.publish(SecurityEventReported(
            ctx.station_id, kind, critical, req.get("techInfo"), now))
        if critical:
            log.warning("security_event.critical", station_id=ctx.station_id, type=kind,
                        tech_info=req.get("techInfo"))
        else:
            log.info("security_event", station_id=ctx.station_id, type=kind)
        return {}
