"""D01/D02: local authorization lists kept in step with the token table, one station or
all connected ones at a time (csms/local_lists.py does the work)."""

from __future__ import annotations

from fastapi import APIRouter

from csms.api.auth import Permission, require
from csms.api.commands import send
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import CommandError
from csms.api.provisioning_models import LocalListState, LocalListSync, LocalListSyncResult
from csms.frames import Payload
from csms.local_lists import LocalLists

router = APIRouter(tags=["local lists"])


def _lists(parts: Parts) -> LocalLists:
    return LocalLists(parts.commands, parts.store, parts.clock)


@router.post("/api/local-lists/sync", dependencies=[require(Permission.COMMANDS)],
             responses={404: {"model": CommandError, "description": "no such station"},
                        409: {"model": CommandError, "description": "not connected"},
                        502: {"model": CommandError, "description": "a CALLERROR"},
                        504: {"model": CommandError, "description": "no answer in time"}})
async def sync_local_lists(body: LocalListSync, parts: PartsDep) -> list[LocalListSyncResult]:
    """Send each station what changed in the token table since the version it holds
    (Differential), or everything (Full) when its version is not the one the CSMS last
    sent it. Without `station_id`, every connected station (failures are reported per
    station)."""
    lists = _lists(parts)
    if body.station_id is None:
        results = await lists.sync_all(sorted(parts.connections.ids()), full=body.full)
        return [LocalListSyncResult.model_validate(r) for r in results]
    station_id = body.station_id

    async def run() -> Payload:
        result = await lists.sync(station_id, full=body.full)
        return LocalListSyncResult.model_validate(result).model_dump()

    reply = await send(parts, station_id, "SendLocalList", run)
    return [LocalListSyncResult.model_validate(reply)]


@router.get("/api/stations/{station_id}/local-list", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such station"}})
async def get_local_list(station_id: str, parts: PartsDep) -> LocalListState:
    """The list version the station holds, as the CSMS last set it, against the token
    table's newest change."""
    station = await parts.store.stations.get(station_id)
    if station is None:
        raise not_found(f"station {station_id}")
    newest = await parts.store.tokens.version()
    version = station.local_list_version
    return LocalListState(station_id=station_id, version=version,
                          synced_at=station.local_list_synced_at, token_table_version=newest,
                          up_to_date=version is not None and version >= newest)
