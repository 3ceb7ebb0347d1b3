"""Commands to a station through the CSMS: every CSMS-initiated OCPP 2.0.1 action, from one
table. Each answers with the station's reply, or says clearly why there is none: 404 unknown
station, 409 not connected, 504 no answer in time, 502 the station answered with a
CALLERROR (its code in `code`), 422 a request the OCPP schema refuses.

`COMMANDS` is the whole surface: a route per action, `POST .../commands/<kebab-action>`.
The everyday commands take a short snake_case body (their models are in models.py); every
other command takes the OCPP request itself, checked against the official schema (which
the OpenAPI document publishes), with `requestId` filled in when it is left out. A flow
that must react to a command's answer (a stored status, a version) hangs an `after` hook
on its entry.
"""

from __future__ import annotations

import inspect
import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Body, HTTPException, status
from pydantic import BaseModel

from csms import metrics
from csms.api import answers, command_hooks
from csms.api import models as m
from csms.api.auth import Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.commands import Commands
from csms.connection import CallFailed, StationOffline
from csms.diagnostics import Diagnostics
from csms.firmware import FirmwareUpdates
from csms.frames import FrameError, Payload
from csms.ocpp.schemas import request_schema
from csms.reservations import record_cancel_reservation, record_reserve_now

log = structlog.get_logger()


class CommandFailed(Exception):
    """Answered as a CommandError body with `status_code` (see app.py)."""

    def __init__(self, status_code: int, detail: str, code: str | None = None) -> None:
        super().__init__(detail)
        self.status_code = status_code
        self.detail = detail
        self.code = code


# run(commands, station_id, body) -> the station's reply; body: the entry's model, or the
# OCPP request (a dict) for entries without one.
Run = Callable[[Commands, str, Any], Awaitable[Payload]]
# after(parts, station_id, request, reply): a flow's follow-up once the station answered.
After = Callable[[Parts, str, Payload, Payload], Awaitable[None]]


@dataclass(frozen=True)
class Command:
    action: str
    summary: str
    body: type[BaseModel] | None = None  # None: the body is the OCPP request itself
    run: Run | None = None  # None: send the body as the OCPP request
    permission: Permission = Permission.COMMANDS
    blame: str = "body"  # the body field a schema error of the OCPP request is blamed on
    after: After | None = None

    @property
    def path(self) -> str:
        return "/" + re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", self.action).lower()


def _component(v: m.VariableRef) -> Payload:
    component: Payload = {"name": v.component}
    if v.component_instance:
        component["instance"] = v.component_instance
    if v.evse_id is not None:
        component["evse"] = {"id": v.evse_id}
        if v.connector_id is not None:
            component["evse"]["connectorId"] = v.connector_id
    return component


def _variable_data(v: m.VariableRef) -> Payload:
    data: Payload = {"component": _component(v), "variable": {"name": v.variable}}
    if v.variable_instance:
        data["variable"]["instance"] = v.variable_instance
    if v.attribute_type:
        data["attributeType"] = v.attribute_type
    if isinstance(v, m.VariableValue):
        data["attributeValue"] = v.value
    return data


async def _get_variables(c: Commands, sid: str, b: m.GetVariables) -> Payload:
    """Accepted values are also stored in the station's device model."""
    return {"getVariableResult": await c.get_variables(
        sid, [_variable_data(v) for v in b.variables])}


async def _set_variables(c: Commands, sid: str, b: m.SetVariables) -> Payload:
    return {"setVariableResult": await c.set_variables(
        sid, [_variable_data(v) for v in b.variables])}


def _firmware(parts: Parts) -> FirmwareUpdates:
    assert parts.firmware is not None
    return parts.firmware


def _diagnostics(parts: Parts) -> Diagnostics:
    """Diagnostics commands keep the stored state in step (monitors N03/N04/N06, logs N01)."""
    assert parts.diagnostics is not None
    return parts.diagnostics


SECURITY = Permission.SECURITY

COMMANDS: tuple[Command, ...] = (
    # F remote control
    Command("RequestStartTransaction", "start a transaction (F01/F02; K05 with a profile)",
            m.RequestStart, lambda c, sid, b: c.request_start_transaction(
                sid, b.id_token, b.token_type, evse_id=b.evse_id,
                remote_start_id=b.remote_start_id, charging_profile=b.charging_profile),
            blame="charging_profile"),
    Command("RequestStopTransaction", "stop a transaction (F03)", m.RequestStop,
            lambda c, sid, b: c.request_stop_transaction(sid, b.transaction_id)),
    Command("UnlockConnector", "unlock a connector (F05)", m.UnlockConnector,
            lambda c, sid, b: c.unlock_connector(sid, b.evse_id, b.connector_id)),
    Command("TriggerMessage", "ask the station to send a message (F06)", m.TriggerMessage,
            lambda c, sid, b: c.trigger_message(
                sid, b.requested_message, b.evse_id, b.connector_id)),
    Command("GetTransactionStatus", "ask whether messages of a transaction are queued (E14)"),
    # B provisioning
    Command("Reset", "reset the station or one EVSE (B11/B12)", m.Reset,
            lambda c, sid, b: c.reset(sid, b.type, b.evse_id)),
    Command("GetVariables", "read variables of the device model (B06)", m.GetVariables,
            _get_variables),
    Command("SetVariables", "write variables of the device model (B05)", m.SetVariables,
            _set_variables),
    Command("GetBaseReport", "ask for a base report of the device model (B07)",
            after=command_hooks.record_report),
    Command("GetReport", "ask for a custom report of the device model (B08)",
            after=command_hooks.record_report),
    Command("SetNetworkProfile", "store a network connection profile (B09)",
            permission=SECURITY),
    # G availability
    Command("ChangeAvailability", "make the station, an EVSE or a connector (in)operative "
            "(G03/G04)", m.ChangeAvailability, lambda c, sid, b: c.change_availability(
                sid, b.operational, b.evse_id, b.connector_id)),
    # C / D authorization
    Command("ClearCache", "clear the station's authorization cache (C11)"),
    Command("SendLocalList", "send a local authorization list by hand (D01; "
            "POST /api/local-lists/sync keeps it in step with the token table)",
            after=command_hooks.forget_local_list_version),
    Command("GetLocalListVersion", "read the local authorization list version (D02)"),
    # K smart charging
    Command("SetChargingProfile", "install a charging profile (K01)", m.SetChargingProfile,
            lambda c, sid, b: c.set_charging_profile(sid, b.evse_id, b.charging_profile),
            blame="charging_profile"),
    Command("ClearChargingProfile", "clear charging profiles (K10)", m.ClearChargingProfile,
            lambda c, sid, b: c.clear_charging_profile(
                sid, b.charging_profile_id, evse_id=b.evse_id, purpose=b.purpose,
                stack_level=b.stack_level), after=answers.charging_profiles_cleared),
    Command("GetCompositeSchedule", "read the composite schedule of an EVSE (K08)",
            m.GetCompositeSchedule, lambda c, sid, b: c.get_composite_schedule(
                sid, b.evse_id, b.duration_s, b.charging_rate_unit)),
    Command("GetChargingProfiles", "ask for a report of installed charging profiles (K09)",
            after=answers.charging_profiles_requested),
    # H reservation
    Command("ReserveNow", "reserve an EVSE or any EVSE for an id token (H01; the "
            "reservation is stored as with POST /api/reservations)",
            after=lambda p, sid, req, rep: record_reserve_now(
                p.store, p.clock, p.events, sid, req, rep)),
    Command("CancelReservation", "cancel a reservation (H02; the stored one ends too)",
            after=lambda p, sid, req, rep: record_cancel_reservation(
                p.store, p.clock, p.events, sid, req, rep)),
    # I tariff and cost
    Command("CostUpdated", "tell the station a transaction's running cost (I04)"),
    # L firmware
    Command("UpdateFirmware", "update the firmware (L01/L02); tracked as a firmware update "
            "(/api/firmware-updates)",
            after=lambda parts, sid, req, reply: _firmware(parts).track(sid, req, reply)),
    Command("PublishFirmware", "publish firmware on a local controller (L03)"),
    Command("UnpublishFirmware", "stop publishing firmware (L04)"),
    # N diagnostics
    Command("GetLog", "have the station upload a log to a location of yours (N01; "
            "/api/log-requests uploads it to the CSMS)",
            after=lambda parts, sid, req, reply: _diagnostics(parts).track_log(
                sid, req, reply)),
    Command("GetMonitoringReport", "ask for a report of variable monitors (N02)"),
    Command("SetMonitoringBase", "set the monitoring base (N03)",
            after=lambda parts, sid, req, reply: _diagnostics(parts).base_set(
                sid, req, reply)),
    Command("SetMonitoringLevel", "set the monitoring severity level (N05)"),
    Command("SetVariableMonitoring", "set variable monitors (N04)",
            after=lambda parts, sid, req, reply: _diagnostics(parts).keep_accepted(
                sid, req["setMonitoringData"], reply["setMonitoringResult"])),
    Command("ClearVariableMonitoring", "clear variable monitors (N06)",
            after=lambda parts, sid, req, reply: _diagnostics(parts).forget_cleared(
                sid, reply)),
    Command("CustomerInformation", "report or clear one customer's data at the station "
            "(N09/N10)", permission=SECURITY),
    # O display messages
    Command("SetDisplayMessage", "show a message to drivers (O01/O02)",
            after=answers.display_message_set),
    Command("GetDisplayMessages", "ask for the display messages (O03/O04)",
            after=answers.display_messages_requested),
    Command("ClearDisplayMessage", "remove a display message (O05)",
            after=answers.display_message_cleared),
    # A security, M ISO 15118 certificates
    Command("CertificateSigned", "send a signed certificate chain (A02/A03)",
            permission=SECURITY),
    Command("InstallCertificate", "install a root certificate (M05)", permission=SECURITY),
    Command("GetInstalledCertificateIds", "list installed certificates (M03)",
            permission=SECURITY, after=answers.installed_certificate_ids),
    Command("DeleteCertificate", "delete an installed certificate (M04)",
            permission=SECURITY, after=answers.certificate_deleted),
    # P data transfer
    Command("DataTransfer", "a vendor-specific message (P01)"),
)


router = APIRouter(
    prefix="/api/stations/{station_id}/commands", tags=["commands"],
    responses={
        404: {"model": m.CommandError, "description": "no such station"},
        409: {"model": m.CommandError, "description": "the station is not connected"},
        502: {"model": m.CommandError, "description": "the station answered with a CALLERROR"},
        504: {"model": m.CommandError, "description": "the station did not answer in time"},
    },
)


async def send(
    parts: Parts, station_id: str, action: str, call: Callable[[], Awaitable[Payload]],
    field: str = "body",
) -> Payload:
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
    return reply


def _ocpp_request(command: Command, parts: Parts, body: Payload) -> Payload:
    """The body as the OCPP request, with a fresh `requestId` where the schema wants one."""
    request = dict(body)
    if "requestId" in request_schema(command.action).get("required", ()) and (
        "requestId" not in request
    ):
        request["requestId"] = parts.commands.next_request_id()
    return request


def negative_limits(profile: Payload | None) -> bool:
    """Whether a charging profile asks for discharge by negative limits."""
    return any(isinstance(p.get("limit"), int | float) and p["limit"] < 0
               for schedule in (profile or {}).get("chargingSchedule") or []
               for p in schedule.get("chargingSchedulePeriod") or [])


async def _no_discharge_on_201(parts: Parts, station_id: str, command: Command,
                               request: Payload) -> None:
    """OCPP 2.0.1 has no standard discharge: a negative limit to a 2.0.1 station is a 422
    (logged, counted), never sent. Its schema allows the number; the CSMS does not."""
    profile = request.get("chargingProfile", request.get("charging_profile"))
    if not negative_limits(profile):
        return
    station = await parts.store.stations.get(station_id)
    if station is not None and station.ocpp_version == "2.1":
        return
    route = f"/api/stations/{{station_id}}/commands{command.path}"
    metrics.api_refused.labels(route).inc()
    log.info("api.refused", route=route, station_id=station_id,
             reason="negative limit to an OCPP 2.0.1 station")
    raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
        "loc": ["body", command.blame], "type": "value_error",
        "msg": "a negative limit (discharge) cannot be sent to an OCPP 2.0.1 station",
    }])


def _endpoint(command: Command) -> Callable[..., Awaitable[m.CommandReply]]:
    async def endpoint(station_id: str, body: Any, parts: Parts) -> m.CommandReply:
        if command.action in ("SetChargingProfile", "RequestStartTransaction"):
            await _no_discharge_on_201(parts, station_id, command,
                                       body if isinstance(body, dict)
                                       else body.model_dump(mode="json"))
        if command.body is None:
            request: Payload = _ocpp_request(command, parts, body)

            async def run() -> Payload:
                return await parts.commands.call(station_id, command.action, request)
        else:
            request = body.model_dump(mode="json")

            async def run() -> Payload:
                assert command.run is not None
                return await command.run(parts.commands, station_id, body)

        reply = await send(parts, station_id, command.action, run, command.blame)
        if command.after is not None:
            await command.after(parts, station_id, request, reply)
        return m.CommandReply(station_id=station_id, action=command.action, request=request,
                              reply=reply)

    body_type: Any = command.body or Annotated[dict[str, Any], Body()]
    endpoint.__signature__ = inspect.Signature([  # type: ignore[attr-defined]
        inspect.Parameter("station_id", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=str),
        inspect.Parameter("body", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=body_type),
        inspect.Parameter("parts", inspect.Parameter.POSITIONAL_OR_KEYWORD,
                          annotation=PartsDep),
    ], return_annotation=m.CommandReply)
    endpoint.__name__ = re.sub(r"(?<!^)(?=[A-Z])", "_", command.action).lower()
    return endpoint


def _openapi_body(command: Command) -> dict[str, Any] | None:
    if command.body is not None:
        return None
    schema = {**request_schema(command.action), "title": f"{command.action}Request"}
    if "requestId" in schema.get("required", ()):
        schema["required"] = [f for f in schema["required"] if f != "requestId"]
    return {"requestBody": {"required": True, "content": {"application/json": {
        "schema": schema}}}}


for _command in COMMANDS:
    router.add_api_route(
        _command.path, _endpoint(_command), methods=["POST"],
        summary=f"{_command.action}: {_command.summary}",
        description=(f"Sends OCPP {_command.action}" + (
            "; the body is the OCPP request (a left-out `requestId` is filled in)."
            if _command.body is None else ".")),
        dependencies=[require(_command.permission)],
        openapi_extra=_openapi_body(_command),
    )
