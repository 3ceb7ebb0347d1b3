"""Block K as a station's resources: the profiles it reports holding (K09), its composite
schedules (K08), a clear that keeps the scheduler consistent (K10), the limits external
systems put on it (K11-K14) and the schedules ISO 15118 EVs chose (K15-K17)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Query, status
from pydantic import Field

from csms.api import answers
from csms.api.auth import Caller, Permission, require
from csms.api.commands import send
from csms.api.deps import PartsDep, not_found
from csms.api.display import REFUSED, Report
from csms.api.models import Body, Model
from csms.frames import Payload

router = APIRouter(prefix="/api/stations/{station_id}", tags=["smart charging"])

INT32 = 2**31 - 1
Purpose = Literal["ChargingStationMaxProfile", "TxDefaultProfile", "TxProfile",
                  "ChargingStationExternalConstraints"]
Source = Literal["EMS", "Other", "SO", "CSO"]


class ProfileReportRequest(Body):
    evse_id: int | None = Field(None, ge=0, le=INT32, description="0: the station itself")
    purpose: Purpose | None = None
    stack_level: int | None = Field(None, ge=0, le=INT32)
    profile_ids: list[int] | None = Field(None, min_length=1, max_length=100)
    sources: list[Source] | None = Field(None, min_length=1, max_length=4,
                                         description="chargingLimitSource")


class CompositeRequest(Body):
    evse_id: int = Field(ge=0, le=INT32, description="0: the station's grid connection")
    duration_s: int = Field(gt=0, le=7 * 86_400)
    charging_rate_unit: Literal["W", "A"] | None = None


class CompositeSchedule(Model):
    id: int
    evse_id: int
    duration_s: int
    rate_unit: str | None
    status: str
    schedule: dict[str, Any] | None = Field(description="as the station sent it (OCPP)")
    requested_by: str
    requested_at: datetime


class ExternalLimit(Model):
    evse_id: int = Field(description="0: the whole station")
    source: str
    grid_critical: bool | None
    schedules: list[dict[str, Any]] = Field(description="chargingSchedule[] as sent (OCPP)")
    notified_at: datetime


class EvChargingSchedule(Model):
    id: int
    evse_id: int
    transaction_id: str | None
    time_base: datetime
    schedule: dict[str, Any]
    received_at: datetime


class Cleared(Model):
    status: str = Field(description="the station's answer: Accepted, or Unknown (none matched)")


async def _station(parts: Any, station_id: str) -> None:
    if await parts.store.stations.get(station_id) is None:
        raise not_found(f"station {station_id}")


# ----------------------------------------------------------------------- K09

@router.post("/charging-profile-reports", status_code=status.HTTP_202_ACCEPTED,
             responses=REFUSED, dependencies=[require(Permission.COMMANDS)])
async def request_profile_report(station_id: str, body: ProfileReportRequest,
                                 parts: PartsDep) -> Report:
    """K09: ask the station which charging profiles it holds (GetChargingProfiles). Its
    ReportChargingProfiles parts fill the report (read it at .../{request_id}); NoProfiles
    closes it empty."""
    await _station(parts, station_id)
    store = parts.store
    request_id = parts.commands.next_request_id()
    criterion: Payload = {}
    if body.purpose:
        criterion["chargingProfilePurpose"] = body.purpose
    if body.stack_level is not None:
        criterion["stackLevel"] = body.stack_level
    if body.profile_ids:
        criterion["chargingProfileId"] = body.profile_ids
    if body.sources:
        criterion["chargingLimitSource"] = body.sources
    request: Payload = {"requestId": request_id, "chargingProfile": criterion}
    if body.evse_id is not None:
        request["evseId"] = body.evse_id
    await store.station_reports.requested(station_id, "ChargingProfiles", request_id, request,
                                  parts.clock.now())
    reply = (await send(parts, station_id, "GetChargingProfiles", lambda: parts.commands.call(
        station_id, "GetChargingProfiles", request)))
    await answers.charging_profiles_requested(parts, station_id, request, reply)
    found = await store.station_reports.get(station_id, "ChargingProfiles", request_id)
    assert found is not None
    return Report.model_validate(found, from_attributes=True)


@router.get("/charging-profile-reports", dependencies=[require(Permission.READ)])
async def list_profile_reports(station_id: str, parts: PartsDep,
                               limit: int = Query(20, ge=1, le=200)) -> list[Report]:
    return [Report.model_validate(r, from_attributes=True)
            for r in await parts.store.station_reports.list(station_id, "ChargingProfiles", limit)]


@router.get("/charging-profile-reports/{request_id}", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such report"}})
async def get_profile_report(station_id: str, request_id: int, parts: PartsDep) -> Report:
    found = None
    if 0 <= request_id <= INT32:
        found = await parts.store.station_reports.get(station_id, "ChargingProfiles", request_id)
    if found is None:
        raise not_found(f"charging profile report {request_id}")
    return Report.model_validate(found, from_attributes=True)


# ----------------------------------------------------------------------- K08

@router.post("/composite-schedules", status_code=status.HTTP_201_CREATED, responses=REFUSED)
async def request_composite(station_id: str, body: CompositeRequest, parts: PartsDep,
                            who: Annotated[Caller, require(Permission.COMMANDS)]
                            ) -> CompositeSchedule:
    """K08: what the station will let the EVSE draw (GetCompositeSchedule), kept."""
    request: Payload = {"evseId": body.evse_id, "duration": body.duration_s}
    if body.charging_rate_unit:
        request["chargingRateUnit"] = body.charging_rate_unit
    reply = (await send(parts, station_id, "GetCompositeSchedule", lambda: parts.commands.call(
        station_id, "GetCompositeSchedule", request)))
    stored = await parts.store.charging.add_composite(
        station_id, body.evse_id, body.duration_s, body.charging_rate_unit, reply["status"],
        reply.get("schedule"), who.name, parts.clock.now())
    return CompositeSchedule.model_validate(stored)


@router.get("/composite-schedules", dependencies=[require(Permission.READ)])
async def list_composites(station_id: str, parts: PartsDep,
                          evse_id: int | None = Query(None, ge=0, le=INT32),
                          limit: int = Query(20, ge=1, le=200)) -> list[CompositeSchedule]:
    return [CompositeSchedule.model_validate(c)
            for c in await parts.store.charging.composites(station_id, evse_id, limit)]


# ----------------------------------------------------------------------- K10

@router.delete("/charging-profiles", responses=REFUSED,
               dependencies=[require(Permission.COMMANDS)])
async def clear_profiles(
    station_id: str, parts: PartsDep,
    profile_id: int | None = Query(None, ge=0, le=INT32),
    evse_id: int | None = Query(None, ge=0, le=INT32),
    purpose: Purpose | None = None,
    stack_level: int | None = Query(None, ge=0, le=INT32),
) -> Cleared:
    """K10: clear profiles by id or by criteria (none: every profile the CSMS may clear).
    ChargingStationExternalConstraints belong to the external system that set them and
    are not cleared by the CSMS (422). The scheduler forgets what the cleared EVSEs held,
    so it sends their profiles again at once."""
    if purpose == "ChargingStationExternalConstraints":
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["query", "purpose"], "type": "value_error",
            "msg": "external constraints are set and cleared by the external system (K11-K14)",
        }])
    criteria: Payload = {}
    if evse_id is not None:
        criteria["evseId"] = evse_id
    if purpose:
        criteria["chargingProfilePurpose"] = purpose
    if stack_level is not None:
        criteria["stackLevel"] = stack_level
    request: Payload = {}
    if profile_id is not None:
        request["chargingProfileId"] = profile_id
    if criteria:
        request["chargingProfileCriteria"] = criteria
    reply = (await send(parts, station_id, "ClearChargingProfile", lambda: parts.commands.call(
        station_id, "ClearChargingProfile", request)))
    await answers.charging_profiles_cleared(parts, station_id, request, reply)
    return Cleared(status=reply["status"])


# ----------------------------------------------------------------------- K11-K17

@router.get("/external-limits", dependencies=[require(Permission.READ)])
async def external_limits(station_id: str, parts: PartsDep) -> list[ExternalLimit]:
    """K11-K14: the limits in force that external systems put on the station, as it
    reported them (NotifyChargingLimit until ClearedChargingLimit)."""
    await _station(parts, station_id)
    return [ExternalLimit.model_validate(limit)
            for limit in await parts.store.charging.external_limits([station_id])]


@router.get("/ev-charging-schedules", dependencies=[require(Permission.READ)])
async def ev_schedules(station_id: str, parts: PartsDep,
                       limit: int = Query(20, ge=1, le=200)) -> list[EvChargingSchedule]:
    """K15-K17: the schedules ISO 15118 EVs chose (NotifyEVChargingSchedule), newest first."""
    return [EvChargingSchedule.model_validate(s)
            for s in await parts.store.charging.ev_schedules(station_id, limit)]
