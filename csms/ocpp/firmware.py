"""Block L, firmware: FirmwareStatusNotification (L01/L02) moves the station's update on.

The notification carries the requestId of the UpdateFirmware it reports on (the id of the
update's row, csms.store.firmware); without one (allowed only for Idle), it applies to the
station's newest update in progress. A status that matches no update (a notification for an
update started elsewhere, e.g. by the station's own maintenance tool) is kept as a plain
notification, so nothing a station says is lost.
"""

from __future__ import annotations

from dataclasses import dataclass

import structlog

from csms.connection import StationContext
from csms.events import FirmwareStatusChanged
from csms.frames import Payload
from csms.ocpp.bounds import request_id_of
from csms.ocpp.deps import Deps
from csms.rollout import outcome_of

log = structlog.get_logger()



@dataclass(frozen=True)
class FirmwareStatusNotification:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        now, status = self.deps.clock.now(), str(req["status"])
        request_id = request_id_of(req)
        update = None
        if status != "Idle" and (request_id is not None or "requestId" not in req):
            update = await self.deps.store.firmware.report_status(
                ctx.station_id, request_id, status, outcome_of(status), now)
        if update is None:
            await self.deps.store.notifications.add(
                ctx.station_id, "FirmwareStatusNotification", req, now)
            return {}
        log.info("firmware.status", station_id=ctx.station_id, request_id=update.id,
                 status=status, outcome=update.outcome)
        self.deps.events.publish(FirmwareStatusChanged(
            ctx.station_id, update.id, update.status, update.outcome, now))
        return {}
