"""Messages whose content the CSMS keeps as sent and answers with a fixed reply:
PublishFirmwareStatusNotification (a local controller's, not applicable here) and
DataTransfer (no vendor extensions: UnknownVendorId). Every other charger-initiated
message has a handler of its own in its block's module (see routes.py); those that keep
the message as a notification too use the same store.
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
