"""B09/B10: network connection profiles an operator keeps and sends to stations.

A profile holds where and how a station connects (CSMS URL, security profile...), so
only the `security` permission (admin) reads or changes one."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Path, Response, status

from csms.api.auth import Permission, require
from csms.api.commands import send
from csms.api.deps import PartsDep, not_found
from csms.api.models import CommandError
from csms.api.provisioning_models import (
    NetworkProfileBody,
    NetworkProfileOut,
    NetworkProfileSend,
    NetworkProfileSent,
    StationNetworkProfile,
)
from csms.frames import FrameError, Payload
from csms.ocpp.schemas import validate_request

router = APIRouter(tags=["network profiles"], dependencies=[require(Permission.SECURITY)])

Name = Annotated[str, Path(pattern=r"^[A-Za-z0-9._-]{1,64}$")]


@router.put("/api/network-profiles/{name}",
            responses={201: {"model": NetworkProfileOut, "description": "created"}})
async def put_network_profile(name: Name, body: NetworkProfileBody, parts: PartsDep,
                              response: Response) -> NetworkProfileOut:
    try:  # checked as the station will get it
        validate_request("SetNetworkProfile", {"configurationSlot": 1,
                                               "connectionData": body.connection_data})
    except FrameError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "connection_data"], "type": "ocpp_schema",
            "msg": f"not a valid NetworkConnectionProfile: {exc.description}"}]) from None
    if await parts.store.network_profiles.put(name, body.connection_data, parts.clock.now()):
        response.status_code = status.HTTP_201_CREATED
    profile = await parts.store.network_profiles.get(name)
    return NetworkProfileOut.model_validate(profile)


@router.get("/api/network-profiles")
async def list_network_profiles(parts: PartsDep) -> list[NetworkProfileOut]:
    return [NetworkProfileOut.model_validate(p)
            for p in await parts.store.network_profiles.list()]


@router.get("/api/network-profiles/{name}", responses={404: {"description": "no such profile"}})
async def get_network_profile(name: Name, parts: PartsDep) -> NetworkProfileOut:
    profile = await parts.store.network_profiles.get(name)
    if profile is None:
        raise not_found(f"network profile {name}")
    return NetworkProfileOut.model_validate(profile)


@router.delete("/api/network-profiles/{name}", status_code=status.HTTP_204_NO_CONTENT,
               responses={404: {"description": "no such profile"}})
async def delete_network_profile(name: Name, parts: PartsDep) -> None:
    if not await parts.store.network_profiles.remove(name):
        raise not_found(f"network profile {name}")


@router.post("/api/stations/{station_id}/network-profiles",
             responses={404: {"model": CommandError, "description": "no such station/profile"},
                        409: {"model": CommandError, "description": "not connected"},
                        502: {"model": CommandError, "description": "a CALLERROR"},
                        504: {"model": CommandError, "description": "no answer in time"}})
async def send_network_profile(station_id: str, body: NetworkProfileSend,
                               parts: PartsDep) -> NetworkProfileSent:
    """SetNetworkProfile with the stored profile; if Accepted, SetVariables
    OCPPCommCtrlr.NetworkConfigurationPriority with the slot first (or last); with
    `reset`, then Reset OnIdle so the station reconnects by the new priority (B10)."""
    profile = await parts.store.network_profiles.get(body.profile)
    if profile is None:
        raise not_found(f"network profile {body.profile}")

    async def run() -> Payload:
        outcome = await parts.commands.set_network_profile(
            station_id, body.slot, profile.connection_data, first=body.first, reset=body.reset)
        await parts.store.network_profiles.record_sent(
            station_id, body.slot, body.profile, outcome.status, outcome.priority,
            parts.clock.now())
        return {"status": outcome.status, "priority": outcome.priority,
                "priority_status": outcome.priority_status,
                "reset_status": outcome.reset_status}

    reply = await send(parts, station_id, "SetNetworkProfile", run)
    return NetworkProfileSent(station_id=station_id, slot=body.slot, profile=body.profile,
                              **reply)


@router.get("/api/stations/{station_id}/network-profiles")
async def station_network_profiles(station_id: str,
                                   parts: PartsDep) -> list[StationNetworkProfile]:
    """What the CSMS sent to the station's slots, and the answers."""
    return [StationNetworkProfile.model_validate(r)
            for r in await parts.store.network_profiles.of_station(station_id)]
