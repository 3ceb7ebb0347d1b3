"""Messages whose content the CSMS keeps as sent and answers with a fixed reply.

NotifyEvent, SecurityEventNotification, FirmwareStatusNotification, LogStatusNotification,
NotifyMonitoringReport, NotifyCustomerInformation, ReservationStatusUpdate,
PublishFirmwareStatusNotification: one handler for all, so each is persisted the same way.

It also answers what this CSMS does not offer yet, with the refusal the schema provides
rather than a CALLERROR: DataTransfer has no vendor extensions here (UnknownVendorId), and
no certificate authority stands behind block A.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from csms.connection import StationContext
from csms.frames import Payload
from csms.ocpp.deps import Deps


@dataclass(frozen=True)
class Record:
    deps: Deps
    action: str
    reply: Payload = field(default_factory=dict)

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        await self.deps.store.notifications.add(
            ctx.station_id, self.action, req, self.deps.clock.now()
        )
        return dict(self.reply)
