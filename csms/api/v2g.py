"""V2G terms over HTTP (issue 15): a vehicle's standing terms (found by the id token its
driver charges with) and one session's own terms, which override the vehicle's field by
field. The car's own V2X limits (OCPP 2.1) are shown beside them; the scheduler plans the
stricter (csms/v2g.py). Every number is bounded: a bad one is a 422."""

from __future__ import annotations

from dataclasses import asdict
from typing import Annotated

import asyncpg
import structlog
from fastapi import APIRouter, HTTPException, Path, status

from csms.api.auth import Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import (
    VEHICLE_ID,
    SessionV2g,
    SessionV2gBody,
    V2gAccount,
    Vehicle,
    VehicleBody,
)
from csms.connection import CallFailed, StationOffline
from csms.events import ChargingNeedsChanged
from csms.store.v2g import Vehicle as VehicleRecord
from csms.v2g import Accounting, Terms, allowed_modes
from csms.v2g_ledger import V2gFacts, v2g_facts

log = structlog.get_logger()

router = APIRouter(tags=["v2g"])

VehicleId = Annotated[str, Path(pattern=VEHICLE_ID, description="the operator's vehicle id")]


def _account(a: Accounting) -> V2gAccount:
    return V2gAccount(discharged_kwh=a.discharged_kwh, cycles=a.cycles,
                      compensation=a.compensation)


@router.get("/api/vehicles", dependencies=[require(Permission.READ)])
async def list_vehicles(parts: PartsDep) -> list[Vehicle]:
    return [Vehicle.model_validate(v) for v in await parts.store.v2g.vehicles()]


@router.get("/api/vehicles/{vehicle_id}", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such vehicle"}})
async def get_vehicle(vehicle_id: VehicleId, parts: PartsDep) -> Vehicle:
    """With its V2G totals over all the transactions of its id token."""
    found = await parts.store.v2g.vehicle(vehicle_id)
    if found is None:
        raise not_found(f"vehicle {vehicle_id}")
    total = Accounting(0.0, None, 0.0)
    if found.id_token:
        txs = await parts.store.transactions.list(id_token=found.id_token, limit=1_000_000)
        for facts in (await v2g_facts(parts.store, txs)).values():
            total = total.plus(facts.account)
    return Vehicle.model_validate(asdict(found) | {"totals": _account(total)})


@router.put("/api/vehicles/{vehicle_id}", dependencies=[require(Permission.SESSIONS)],
            responses={409: {"description": "another vehicle has this id token"}})
async def put_vehicle(vehicle_id: VehicleId, body: VehicleBody, parts: PartsDep) -> Vehicle:
    """Create or replace a vehicle and its V2G terms; its running sessions are re-planned."""
    record = VehicleRecord(id=vehicle_id, updated_at=parts.clock.now(), **body.model_dump())
    try:
        saved = await parts.store.v2g.put_vehicle(record)
    except asyncpg.UniqueViolationError:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"id token {body.id_token} belongs to another vehicle") from None
    log.info("api.vehicle_set", vehicle_id=vehicle_id, opted_in=saved.v2g_opted_in,
             mode=saved.v2g_mode)
    if saved.id_token:
        for tx in await parts.store.transactions.list(active=True, id_token=saved.id_token):
            _replan(parts, tx.station_id, tx.transaction_id, tx.evse_id)
    return Vehicle.model_validate(saved)


@router.delete("/api/vehicles/{vehicle_id}", status_code=204,
               dependencies=[require(Permission.SESSIONS)],
               responses={404: {"description": "no such vehicle"}})
async def delete_vehicle(vehicle_id: VehicleId, parts: PartsDep) -> None:
    if not await parts.store.v2g.remove_vehicle(vehicle_id):
        raise not_found(f"vehicle {vehicle_id}")


def _session_out(station_id: str, transaction_id: str, facts: V2gFacts) -> SessionV2g:
    return SessionV2g(
        station_id=station_id, transaction_id=transaction_id,
        vehicle_id=facts.vehicle.id if facts.vehicle else None,
        session_terms=asdict(facts.session_terms), terms=asdict(facts.terms),
        ev=asdict(facts.ev) | {"metered_soc": facts.metered_soc},
        account=_account(facts.account))


@router.get("/api/sessions/{station_id}/{transaction_id}/v2g",
            dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such transaction"}})
async def get_session_v2g(station_id: str, transaction_id: str, parts: PartsDep
                          ) -> SessionV2g:
    """The terms in force for this session, what the car reported and its V2G account."""
    tx = await parts.store.transactions.get(station_id, transaction_id)
    if tx is None:
        raise not_found(f"transaction {transaction_id} on station {station_id}")
    facts = (await v2g_facts(parts.store, [tx]))[(station_id, transaction_id)]
    return _session_out(station_id, transaction_id, facts)


@router.put("/api/sessions/{station_id}/{transaction_id}/v2g",
            dependencies=[require(Permission.SESSIONS)],
            responses={404: {"description": "no such transaction"},
                       409: {"description": "the transaction has ended"}})
async def set_session_v2g(station_id: str, transaction_id: str, body: SessionV2gBody,
                          parts: PartsDep) -> SessionV2g:
    """Set this session's V2G terms (replacing what was set for it before); the site is
    re-planned. An opt-out takes effect at the next plan, which sends no discharge."""
    tx = await parts.store.transactions.get(station_id, transaction_id)
    if tx is None:
        raise not_found(f"transaction {transaction_id} on station {station_id}")
    if tx.ended_at is not None:
        raise HTTPException(status.HTTP_409_CONFLICT, f"transaction {transaction_id} has ended")
    await parts.store.v2g.set_session_terms(
        station_id, transaction_id, opted_in=body.opted_in, mode=body.mode,
        min_soc=body.min_soc, compensation_per_kwh=body.compensation_per_kwh,
        now=parts.clock.now())
    log.info("api.session_v2g_set", station_id=station_id, transaction_id=transaction_id,
             opted_in=body.opted_in, mode=body.mode)
    _replan(parts, station_id, transaction_id, tx.evse_id)
    facts = (await v2g_facts(parts.store, [tx]))[(station_id, transaction_id)]
    out = _session_out(station_id, transaction_id, facts)
    out.station_told = await _tell_station(parts, station_id, transaction_id, facts.terms)
    return out


async def _tell_station(parts: Parts, station_id: str, transaction_id: str,
                        terms: Terms) -> str | None:
    """Q01 on a connected 2.1 station: the modes the car may use under the new terms (a
    car that may no longer discharge loses its BPT modes at once, before any re-plan)."""
    station = await parts.store.stations.get(station_id)
    if station is None or station.ocpp_version != "2.1" or not (
            parts.connections.is_connected(station_id)):
        return None
    modes = allowed_modes(await parts.store.v2g.ev_modes(station_id, transaction_id), terms)
    if not modes:
        return "not told: the car offered no mode these terms allow"
    try:
        reply = await parts.commands.notify_allowed_energy_transfer(
            station_id, transaction_id, modes)
    except (StationOffline, CallFailed, TimeoutError) as exc:
        log.warning("api.allowed_energy_transfer_failed", station_id=station_id,
                    transaction_id=transaction_id, error=str(exc) or type(exc).__name__)
        return f"not delivered: {str(exc) or type(exc).__name__}"
    return str(reply.get("status"))


def _replan(parts: PartsDep, station_id: str, transaction_id: str,
            evse_id: int | None) -> None:
    """The scheduler re-plans a site on ChargingNeedsChanged, as for any change of needs."""
    if evse_id is not None:
        parts.events.publish(ChargingNeedsChanged(station_id, evse_id, transaction_id,
                                                  None, None))
