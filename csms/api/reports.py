"""B02/B03 boot holds and B07/B08 device model reports.

Reports are asked for with the command routes (`.../commands/get-base-report`,
`.../commands/get-report`); their `after` hook (command_hooks.record_report) stores each
request with the station's answer, and the NotifyReport parts complete it. Here they are
read back.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from csms.api.auth import Permission, require
from csms.api.deps import PartsDep, not_found
from csms.api.provisioning_models import BootHold, BootHoldState, Report

router = APIRouter(prefix="/api/stations/{station_id}", tags=["provisioning"])

RequestId = Annotated[int, Path(ge=-(2**63), le=2**63 - 1)]


@router.get("/reports", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such station"}})
async def list_reports(station_id: str, parts: PartsDep) -> list[Report]:
    """The station's newest report requests first (at most 100)."""
    if await parts.store.stations.get(station_id) is None:
        raise not_found(f"station {station_id}")
    return [Report.model_validate(r) for r in await parts.store.reports.list(station_id)]


@router.get("/reports/{request_id}", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such report request"}})
async def get_report(station_id: str, request_id: RequestId, parts: PartsDep) -> Report:
    report = await parts.store.reports.get(station_id, request_id)
    if report is None:
        raise not_found(f"report {request_id} of station {station_id}")
    return Report.model_validate(report)


@router.put("/boot-hold", dependencies=[require(Permission.STATIONS)],
            responses={404: {"description": "no such station"}})
async def put_boot_hold(station_id: str, body: BootHold, parts: PartsDep) -> BootHoldState:
    """Answer the station's next boots Pending (provisioning) or Rejected; `null` lifts the
    hold. It takes effect at the station's next BootNotification (send a Reset to force
    one)."""
    if not await parts.store.stations.set_boot_hold(station_id, body.hold):
        raise not_found(f"station {station_id}")
    station = await parts.store.stations.get(station_id)
    return BootHoldState(station_id=station_id, hold=body.hold,
                         boot_status=station.boot_status if station else None)
