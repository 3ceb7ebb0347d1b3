"""The command table's `after` hooks for blocks B and D: what the CSMS keeps of a command
sent by hand through `.../commands/<action>`."""

from __future__ import annotations

from csms.api.deps import Parts
from csms.frames import Payload


async def record_report(parts: Parts, station_id: str, request: Payload,
                        reply: Payload) -> None:
    """GetBaseReport / GetReport (B07/B08): store the request and the station's answer;
    its NotifyReport parts complete it (read at GET /api/stations/{id}/reports)."""
    kind = "base" if "reportBase" in request else "custom"
    await parts.store.reports.add(station_id, int(request["requestId"]), kind, request,
                                  str(reply.get("status")), parts.clock.now())


async def forget_local_list_version(parts: Parts, station_id: str, request: Payload,
                                    reply: Payload) -> None:
    """SendLocalList by hand (D01): the station's list is no longer the token table's, so
    the next sync (POST /api/local-lists/sync) sends it in full."""
    await parts.store.stations.set_local_list_version(station_id, None, parts.clock.now())
