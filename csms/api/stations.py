"""Stations: list with online state, detail with EVSEs and device model, provisioning."""

from __future__ import annotations

import asyncio
from collections import defaultdict

import structlog
from fastapi import APIRouter, HTTPException, Response, status

from csms.api.auth import Permission, require
from csms.api.deps import PartsDep, not_found
from csms.api.models import (
    Connector,
    Evse,
    Station,
    StationCreate,
    StationCreated,
    StationDetail,
    Variable,
)
from csms.passwords import generate_password, hash_password

log = structlog.get_logger()
router = APIRouter(prefix="/api/stations", tags=["stations"])


@router.get("", dependencies=[require(Permission.READ)])
async def list_stations(parts: PartsDep) -> list[Station]:
    return [Station.model_validate(s) for s in await parts.store.stations.list()]


@router.get("/{station_id}", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such station"}})
async def get_station(station_id: str, parts: PartsDep) -> StationDetail:
    station = await parts.store.stations.get(station_id)
    if station is None:
        raise not_found(f"station {station_id}")
    by_evse: dict[int, list[Connector]] = defaultdict(list)
    for c in await parts.store.devices.connectors(station_id):
        by_evse[c.evse_id].append(Connector(id=c.connector_id, status=c.status,
                                            updated_at=c.updated_at))
    variables = await parts.store.devices.variables(station_id)
    return StationDetail.model_validate({
        **Station.model_validate(station).model_dump(),
        "evses": [Evse(id=e, connectors=cs) for e, cs in sorted(by_evse.items())],
        "variables": [Variable.model_validate(v) for v in variables],
    })


@router.post("", status_code=status.HTTP_201_CREATED, dependencies=[require(Permission.STATIONS)],
             responses={200: {"model": StationCreated,
                              "description": "the station existed: its password was set"}})
async def provision_station(
    body: StationCreate, parts: PartsDep, response: Response
) -> StationCreated:
    """Add a station (201), or set the password of an existing one (200). Without a
    password one is generated and returned, this once."""
    if body.no_password and body.password:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "no_password"], "type": "value_error",
            "msg": "give a password or no_password, not both",
        }])
    generated, hashed = None, None
    if body.password:
        hashed = await asyncio.to_thread(hash_password, body.password)
    elif not body.no_password:
        generated, hashed = generate_password()
    created = await parts.store.stations.add(body.id, hashed, parts.clock.now())
    if not created:
        response.status_code = status.HTTP_200_OK
    log.info("api.station_provisioned", station_id=body.id, created=created)
    return StationCreated(id=body.id, created=created, password=generated)


@router.delete("/{station_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require(Permission.STATIONS)],
               responses={404: {"description": "no such station"}})
async def remove_station(station_id: str, parts: PartsDep) -> None:
    """Remove a station and its data; a connected station is disconnected."""
    if not await parts.store.stations.remove(station_id):
        raise not_found(f"station {station_id}")
    if parts.connections.is_connected(station_id):
        await parts.connections.get(station_id).close(1008, "station removed")
    log.info("api.station_removed", station_id=station_id)
