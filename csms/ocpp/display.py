"""Block O, display messages: the station's report of the messages it holds (O03/O04)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from csms.connection import StationContext
from csms.frames import Payload
from csms.ocpp.deps import Deps
from csms.ocpp.fields import bounded_int, optional_timestamp


def check_message_info(info: dict[str, Any], field: str) -> None:
    """What the schema does not check of a MessageInfo, before it is stored."""
    bounded_int(info["id"], f"{field}.id")
    optional_timestamp(info.get("startDateTime"), f"{field}.startDateTime")
    optional_timestamp(info.get("endDateTime"), f"{field}.endDateTime")
    evse = (info.get("display") or {}).get("evse")
    if evse is not None:
        bounded_int(evse["id"], f"{field}.display.evse.id")


@dataclass(frozen=True)
class NotifyDisplayMessages:
    """One part of the answer to a GetDisplayMessages, added to its request's report. When
    the last part of an unfiltered report arrives, the stored messages become exactly those
    the station reported: the station is the truth about what it shows."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        request_id = bounded_int(req["requestId"], "requestId")
        infos = req.get("messageInfo") or []
        for i, info in enumerate(infos):
            check_message_info(info, f"messageInfo[{i}]")
        store, now = self.deps.store, self.deps.clock.now()
        report = await store.station_reports.add_part(
            ctx.station_id, "DisplayMessages", request_id, infos, bool(req.get("tbc", False)),
            now,
        )
        if report.complete and report.requested_at is not None and not report.truncated \
                and is_unfiltered(report.request):
            await store.display.replace_all(ctx.station_id, report.items, now)
        return {}


def is_unfiltered(request: dict[str, Any]) -> bool:
    """A GetDisplayMessages for every message the station holds (no id, priority, state)."""
    return not any(request.get(k) for k in ("id", "priority", "state"))
