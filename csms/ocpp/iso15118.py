"""Block M, ISO 15118 certificates: the station asks on the EV's behalf (M01/M02) or for a
certificate's revocation status (M06). What answers is in csms/iso15118.py; each request
and its outcome is also kept as a notification (an audit trail of Plug & Charge)."""

from __future__ import annotations

from dataclasses import dataclass

from csms.connection import StationContext
from csms.frames import Payload
from csms.iso15118 import failed
from csms.ocpp.deps import Deps


@dataclass(frozen=True)
class Get15118EVCertificate:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        service = self.deps.iso15118
        if service is None:
            reply = failed("NoContractService", "no contract certificate service configured")
        else:
            reply = await service.ev_certificate(ctx.station_id, req)
        reply.setdefault("exiResponse", "")  # required, even when Failed
        await self.deps.store.notifications.add(
            ctx.station_id, "Get15118EVCertificate",
            {"request": {k: v for k, v in req.items() if k != "exiRequest"},
             "status": reply["status"], "statusInfo": reply.get("statusInfo")},
            self.deps.clock.now(),
        )
        return reply


@dataclass(frozen=True)
class GetCertificateStatus:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        service, now = self.deps.iso15118, self.deps.clock.now()
        data = req["ocspRequestData"]
        if service is None:
            reply = failed("NoOcspSource", "no OCSP responder or CA configured")
        else:
            reply = await service.certificate_status(ctx.station_id, data, now)
        await self.deps.store.notifications.add(
            ctx.station_id, "GetCertificateStatus",
            {"request": req, "status": reply["status"], "statusInfo": reply.get("statusInfo")},
            now,
        )
        return reply
