"""Commands to a station through the CSMS. Each answers with the station's reply, or says
clearly why there is none: 404 unknown station, 409 not connected, 504 no answer in time,
502 the station answered with a CALLERROR (its code in `code`)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

import structlog
from fastapi import APIRouter, HTTPException, status

from csms.api.auth import Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import (
    ChangeAvailability,
    ClearChargingProfile,
    CommandError,
    CommandReply,
    GetCompositeSchedule,
    GetVariables,
    RequestStart,
    RequestStop,
    Reset,
    SetChargingProfile,
    SetVariables,
    TriggerMessage,
    UnlockConnector,
    VariableRef,
    VariableValue,
)
from csms.connection import CallFailed, StationOffline
from csms.frames import FrameError, Payload

log = structlog.get_logger()


class CommandFailed(Exception):
    """Answered as a CommandError body with `status_code` (see app.py)."""

    def __init__(self, status_code: int, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.code = code


router = APIRouter(
    prefix="/api/stations/{station_id}/commands", tags=["commands"],
    dependencies=[require(Permission.COMMANDS)],
    responses={
        404: {"model": CommandError, "description": "no such station"},
        409: {"model": CommandError, "description": "the station is not connected"},
        502: {"model": CommandError, "description": "the station answered with a CALLERROR"},
        504: {"model": CommandError, "description": "the station did not answer in time"},
    },
)


async def send(
    parts: Parts, station_id: str, action: str, call: Callable[[], Awaitable[Any]],
    field: str = "body",
) -> CommandReply:
    """Run `call` and map its failures to HTTP answers. `field`: the body field a schema
    error of the OCPP request is blamed on (a charging profile is checked only there)."""
    if not parts.connections.is_connected(station_id) and (
        await parts.store.stations.get(station_id) is None
    ):
        raise not_found(f"station {station_id}")
    try:
        reply = await call()
    except StationOffline:
        raise CommandFailed(status.HTTP_409_CONFLICT,
                            f"station {station_id} is not connected") from None
    except TimeoutError:
        raise CommandFailed(status.HTTP_504_GATEWAY_TIMEOUT,
                            f"station {station_id} did not answer {action} in time") from None
    except CallFailed as exc:
        raise CommandFailed(
            status.HTTP_502_BAD_GATEWAY,
            f"station {station_id} answered {action} with {exc.code}: {exc.description}",
            exc.code,
        ) from None
    except FrameError as exc:  # our request, refused by the OCPP schema before sending
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", field], "type": "ocpp_schema",
            "msg": f"not a valid {action}: {exc.description}",
        }]) from None
    log.info("api.command", station_id=station_id, action=action)
    return CommandReply(station_id=station_id, action=action, reply=reply)


def _component(v: VariableRef) -> Payload:
    component: Payload = {"name": v.component}
    if v.component_instance:
        component["instance"] = v.component_instance
    if v.evse_id is not None:
        component["evse"] = {"id": v.evse_id}
        if v.connector_id is not None:
            component["evse"]["connectorId"] = v.connector_id
    return component


def _variable_data(v: VariableRef) -> Payload:
    data: Payload = {"component": _component(v), "variable": {"name": v.variable}}
    if v.variable_instance:
        data["variable"]["instance"] = v.variable_instance
    if v.attribute_type:
        data["attributeType"] = v.attribute_type
    if isinstance(v, VariableValue):
        data["attributeValue"] = v.value
    return data


@router.post("/request-start-transaction")
async def request_start_transaction(
    station_id: str, body: RequestStart, parts: PartsDep
) -> CommandReply:
    return await send(parts, station_id, "RequestStartTransaction",
                      lambda: parts.commands.request_start_transaction(
                          station_id, body.id_token, body.token_type, evse_id=body.evse_id,
                          remote_start_id=body.remote_start_id,
                          charging_profile=body.charging_profile),
                      "charging_profile")


@router.post("/request-stop-transaction")
async def request_stop_transaction(
    station_id: str, body: RequestStop, parts: PartsDep
) -> CommandReply:
    return await send(parts, station_id, "RequestStopTransaction",
                      lambda: parts.commands.request_stop_transaction(
                          station_id, body.transaction_id))


@router.post("/reset")
async def reset(station_id: str, body: Reset, parts: PartsDep) -> CommandReply:
    return await send(parts, station_id, "Reset",
                      lambda: parts.commands.reset(station_id, body.type, body.evse_id))


@router.post("/unlock-connector")
async def unlock_connector(
    station_id: str, body: UnlockConnector, parts: PartsDep
) -> CommandReply:
    return await send(parts, station_id, "UnlockConnector",
                      lambda: parts.commands.unlock_connector(
                          station_id, body.evse_id, body.connector_id))


@router.post("/change-availability")
async def change_availability(
    station_id: str, body: ChangeAvailability, parts: PartsDep
) -> CommandReply:
    return await send(parts, station_id, "ChangeAvailability",
                      lambda: parts.commands.change_availability(
                          station_id, body.operational, body.evse_id, body.connector_id))


@router.post("/get-variables")
async def get_variables(
    station_id: str, body: GetVariables, parts: PartsDep
) -> CommandReply:
    """Accepted values are also stored in the station's device model."""

    async def call() -> Payload:
        results = await parts.commands.get_variables(
            station_id, [_variable_data(v) for v in body.variables])
        return {"getVariableResult": results}

    return await send(parts, station_id, "GetVariables", call)


@router.post("/set-variables")
async def set_variables(
    station_id: str, body: SetVariables, parts: PartsDep
) -> CommandReply:
    async def call() -> Payload:
        results = await parts.commands.set_variables(
            station_id, [_variable_data(v) for v in body.variables])
        return {"setVariableResult": results}

    return await send(parts, station_id, "SetVariables", call)


@router.post("/trigger-message")
async def trigger_message(
    station_id: str, body: TriggerMessage, parts: PartsDep
) -> CommandReply:
    return await send(parts, station_id, "TriggerMessage",
                      lambda: parts.commands.trigger_message(
                          station_id, body.requested_message, body.evse_id, body.connector_id))


@router.post("/set-charging-profile")
async def set_charging_profile(
    station_id: str, body: SetChargingProfile, parts: PartsDep
) -> CommandReply:
    return await send(parts, station_id, "SetChargingProfile",
                      lambda: parts.commands.set_charging_profile(
                          station_id, body.evse_id, body.charging_profile),
                      "charging_profile")


@router.post("/clear-charging-profile")
async def clear_charging_profile(
    station_id: str, body: ClearChargingProfile, parts: PartsDep
) -> CommandReply:
    return await send(parts, station_id, "ClearChargingProfile",
                      lambda: parts.commands.clear_charging_profile(
                          station_id, body.charging_profile_id, evse_id=body.evse_id,
                          purpose=body.purpose, stack_level=body.stack_level))


@router.post("/get-composite-schedule")
async def get_composite_schedule(
    station_id: str, body: GetCompositeSchedule, parts: PartsDep
) -> CommandReply:
    return await send(parts, station_id, "GetCompositeSchedule",
                      lambda: parts.commands.get_composite_schedule(
                          station_id, body.evse_id, body.duration_s, body.charging_rate_unit))
