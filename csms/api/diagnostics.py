"""Diagnostics (block N) for operators: log requests and the upload endpoint stations send
logs to (N01), a station's variable monitors and monitoring reports (N02-N06), alerts from
NotifyEvent (N07/N08), and one customer's data (N09/N10).

The upload endpoint is the one route here without an API token: the station proves itself
with the one-time token in the URL the CSMS gave it in GetLog (a wrong, spent or expired
token is a 401, like a missing API token elsewhere).
"""

from __future__ import annotations

import re
from datetime import datetime
from email.parser import BytesParser
from email.policy import HTTP
from typing import Annotated, Any, Literal

from fastapi import APIRouter, HTTPException, Path, Query, Request, Response, status
from pydantic import AwareDatetime, Field, model_validator

from csms.api.auth import Caller, Permission, require
from csms.api.commands import send
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.models import STATION_ID, Body, Model, TokenType
from csms.diagnostics import UPLOAD_PATH, Diagnostics
from csms.store.diagnostics import LogRequest, Monitor

router = APIRouter(tags=["diagnostics"])

Reader = Annotated[Caller, require(Permission.READ)]
Writer = Annotated[Caller, require(Permission.COMMANDS)]
Privacy = Annotated[Caller, require(Permission.SECURITY)]
RowId = Annotated[int, Path(ge=1, le=2**63 - 1)]
StationPath = Annotated[str, Path(pattern=STATION_ID)]


def _service(parts: Parts) -> Diagnostics:
    assert parts.diagnostics is not None
    return parts.diagnostics


# ------------------------------------------------------------------------------ N01 logs

class LogRequestIn(Body):
    station_id: str = Field(pattern=STATION_ID)
    log_type: Literal["DiagnosticsLog", "SecurityLog"] = "DiagnosticsLog"
    oldest_at: AwareDatetime | None = Field(None, description="oldest entry wanted")
    latest_at: AwareDatetime | None = Field(None, description="newest entry wanted")
    retries: int | None = Field(None, ge=0, le=100)
    retry_interval_s: int | None = Field(None, ge=0, le=86_400)


class LogRequestOut(Model):
    id: int
    station_id: str
    request_id: int = Field(description="the requestId sent in GetLog")
    log_type: str
    oldest_at: datetime | None
    latest_at: datetime | None
    reply_status: str | None = Field(description="the GetLogResponse status")
    reply_reason: str | None
    filename: str | None
    status: str = Field(description="the newest UploadLogStatus the station reported "
                        "(Uploading, Uploaded, UploadFailure, ...), or Requested / Accepted "
                        "/ Rejected / Offline / NoAnswer / CallError")
    history: list[dict[str, Any]]
    content_type: str | None
    size_bytes: int | None
    uploaded_at: datetime | None = Field(description="when the file arrived here")
    created_by: str
    created_at: datetime


class UploadOut(Model):
    id: int
    size_bytes: int


def log_out(found: LogRequest) -> LogRequestOut:
    return LogRequestOut.model_validate(found)


@router.post("/api/log-requests", status_code=status.HTTP_201_CREATED,
             responses={404: {"description": "no such station"},
                        409: {"description": "the station is not connected"}})
async def create_log_request(body: LogRequestIn, parts: PartsDep,
                             who: Writer) -> LogRequestOut:
    """Send the station GetLog with a one-time upload URL on this API; the file, once the
    station uploads it, is at `/api/log-requests/{id}/file`."""
    if await parts.store.stations.get(body.station_id) is None:
        raise not_found(f"station {body.station_id}")
    if not parts.connections.is_connected(body.station_id):
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"station {body.station_id} is not connected")
    found = await _service(parts).request_log(
        body.station_id, body.log_type, oldest=body.oldest_at, latest=body.latest_at,
        retries=body.retries, retry_interval_s=body.retry_interval_s, created_by=who.name)
    return log_out(found)


@router.get("/api/log-requests")
async def list_log_requests(
    parts: PartsDep, _: Reader, station_id: str | None = Query(None, max_length=48),
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[LogRequestOut]:
    """Newest first."""
    return [log_out(r) for r in await parts.store.logs.list(station_id, limit)]


@router.get("/api/log-requests/{log_id}", responses={404: {"description": "no such request"}})
async def get_log_request(log_id: RowId, parts: PartsDep, _: Reader) -> LogRequestOut:
    found = await parts.store.logs.get(log_id)
    if found is None:
        raise not_found(f"log request {log_id}")
    return log_out(found)


@router.get("/api/log-requests/{log_id}/file",
            responses={200: {"content": {"application/octet-stream": {}}},
                       404: {"description": "no such request, or nothing uploaded yet"}})
async def get_log_file(log_id: RowId, parts: PartsDep, _: Writer) -> Response:
    """The uploaded file, as the station sent it (operators and admins: logs may hold
    identifiers)."""
    found = await parts.store.logs.get(log_id)
    content = await parts.store.logs.content(log_id)
    if found is None or content is None:
        raise not_found(f"uploaded log for request {log_id}")
    name = found.filename or f"{found.station_id}-{found.request_id}.log"
    return Response(content[0], media_type="application/octet-stream", headers={
        "Content-Disposition": f'attachment; filename="{_safe_name(name)}"'})


def _safe_name(name: str) -> str:
    """A file name fit for a header: its last path part, plain characters only."""
    base = re.split(r"[/\\]", name)[-1]
    return re.sub(r"[^A-Za-z0-9._-]", "_", base)[:255] or "log"


def _unauthorized() -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED,
                         "unknown, spent or expired upload token")


def _multipart_file(content_type: str, body: bytes) -> tuple[bytes, str | None]:
    """The first part of a multipart/form-data body (as `curl -F file=@x` sends it)."""
    message = BytesParser(policy=HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    for part in message.iter_parts():
        payload = part.get_payload(decode=True)
        if isinstance(payload, bytes):
            return payload, part.get_filename()
    raise HTTPException(status.HTTP_400_BAD_REQUEST, "a multipart upload with no file part")


async def _upload(log_id: int, token: str, filename: str | None, request: Request,
                  parts: Parts) -> UploadOut:
    service = _service(parts)
    if not await service.may_upload(log_id, token):  # before reading a byte of the body
        raise _unauthorized()
    limit = service.config.max_upload_bytes
    too_large = HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                              f"a log upload may be at most {limit} bytes")
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise too_large
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large
    content, content_type = bytes(body), request.headers.get("content-type", "")[:200] or None
    if content_type and content_type.lower().startswith("multipart/form-data"):
        content, part_name = _multipart_file(content_type, content)
        filename, content_type = filename or part_name, "application/octet-stream"
    stored = await service.store_upload(log_id, token, content, content_type,
                                        _safe_name(filename) if filename else None)
    if stored is None:
        raise _unauthorized()
    return UploadOut(id=stored.id, size_bytes=len(content))


Token = Annotated[str, Path(min_length=1, max_length=100)]
UPLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"description": "unknown, spent or expired upload token"},
    413: {"description": "larger than [diagnostics] max_upload_bytes"}}


async def upload_log(log_id: RowId, token: Token, request: Request,
                     parts: PartsDep) -> UploadOut:
    """Where a station uploads the log it was asked for (the GetLog `remoteLocation`): the
    raw file (PUT or POST) or a multipart form with the file. Authenticated by the
    one-time token in the URL, not an API token; it is spent by the first upload."""
    return await _upload(log_id, token, None, request, parts)


async def upload_log_named(log_id: RowId, token: Token,
                           filename: Annotated[str, Path(max_length=255)], request: Request,
                           parts: PartsDep) -> UploadOut:
    """The same, for a station that appends its file name to the `remoteLocation`."""
    return await _upload(log_id, token, filename, request, parts)


for _method in ("PUT", "POST"):
    for _suffix, _endpoint in (("", upload_log), ("/{filename}", upload_log_named)):
        router.add_api_route(
            UPLOAD_PATH + "/{log_id}/{token}" + _suffix, _endpoint, methods=[_method],
            status_code=status.HTTP_201_CREATED, tags=["diagnostics uploads"],
            responses=UPLOAD_RESPONSES,
            operation_id=f"{_endpoint.__name__}_{_method.lower()}")


# ------------------------------------------------------------------- N02-N06 monitoring

MonitorType = Literal["UpperThreshold", "LowerThreshold", "Delta", "Periodic",
                      "PeriodicClockAligned"]


class MonitorIn(Body):
    component: str = Field(min_length=1, max_length=50)
    variable: str = Field(min_length=1, max_length=50)
    component_instance: str = Field("", max_length=50)
    variable_instance: str = Field("", max_length=50)
    evse_id: int | None = Field(None, ge=0, le=1000)
    connector_id: int | None = Field(None, ge=1, le=1000)
    type: MonitorType
    value: float = Field(ge=-1e12, le=1e12, allow_inf_nan=False,
                         description="threshold, delta, or period in seconds (Periodic)")
    severity: int = Field(ge=0, le=9, description="0 Danger ... 9 Debug")
    transaction: bool = Field(False, description="only while a transaction runs")
    id: int | None = Field(None, ge=1, le=2**31 - 1,
                           description="an existing monitor's id, to replace it")

    @model_validator(mode="after")
    def connector_needs_evse(self) -> MonitorIn:
        if self.connector_id is not None and self.evse_id is None:
            raise ValueError("connector_id needs evse_id")
        return self


class MonitorsIn(Body):
    monitors: list[MonitorIn] = Field(min_length=1, max_length=1000)


class MonitorOut(Model):
    monitor_id: int
    component: str
    component_instance: str
    evse_id: int | None
    connector_id: int | None
    variable: str
    variable_instance: str
    type: str
    value: float
    severity: int
    transaction: bool
    source: str = Field(description="set (through the CSMS) or report (the station's)")
    updated_at: datetime | None


class MonitorResults(Model):
    station_id: str
    results: list[dict[str, Any]] = Field(description="the station's results, as sent")


class MonitoringReportIn(Body):
    criteria: list[Literal["ThresholdMonitoring", "DeltaMonitoring", "PeriodicMonitoring"]] \
        | None = Field(None, min_length=1, max_length=3)
    components: list[MonitorTarget] | None = Field(None, min_length=1, max_length=100)


class MonitorTarget(Body):
    component: str = Field(min_length=1, max_length=50)
    variable: str | None = Field(None, min_length=1, max_length=50)
    evse_id: int | None = Field(None, ge=0, le=1000)


class MonitoringReportOut(Model):
    id: int
    station_id: str
    request_id: int
    criteria: dict[str, Any]
    reply_status: str | None
    parts: int
    complete: bool
    monitors: list[dict[str, Any]] = Field(description="NotifyMonitoringReport's `monitor` "
                                           "entries of every part, as sent")
    created_at: datetime
    completed_at: datetime | None


MonitoringReportIn.model_rebuild()


@router.get("/api/stations/{station_id}/monitors")
async def list_monitors(station_id: StationPath, parts: PartsDep,
                        _: Reader) -> list[MonitorOut]:
    """The station's monitors as the CSMS knows them: those it set and the station
    accepted, and those a monitoring report listed."""
    return [MonitorOut.model_validate(m) for m in await parts.store.monitoring.list(station_id)]


@router.post("/api/stations/{station_id}/monitors")
async def set_monitors(station_id: StationPath, body: MonitorsIn, parts: PartsDep,
                       _: Writer) -> MonitorResults:
    """SetVariableMonitoring (N04), split to the station's ItemsPerMessage; the accepted
    monitors are kept."""
    monitors = [Monitor(
        monitor_id=m.id or 0, component=m.component, variable=m.variable, type=m.type,
        value=m.value, severity=m.severity, component_instance=m.component_instance,
        evse_id=m.evse_id, connector_id=m.connector_id, variable_instance=m.variable_instance,
        transaction=m.transaction) for m in body.monitors]
    results = await send(parts, station_id, "SetVariableMonitoring",
                         lambda: _service(parts).set_monitors(station_id, monitors))
    return MonitorResults(station_id=station_id, results=results)  # type: ignore[arg-type]


@router.delete("/api/stations/{station_id}/monitors/{monitor_id}")
async def clear_monitor(
    station_id: StationPath, monitor_id: Annotated[int, Path(ge=0, le=2**31 - 1)],
    parts: PartsDep, _: Writer,
) -> MonitorResults:
    """ClearVariableMonitoring (N06); forgotten here once the station cleared it (or does
    not know it)."""
    results = await send(parts, station_id, "ClearVariableMonitoring",
                         lambda: _service(parts).clear_monitors(station_id, [monitor_id]))
    return MonitorResults(station_id=station_id, results=results)  # type: ignore[arg-type]


@router.post("/api/stations/{station_id}/monitoring-reports",
             status_code=status.HTTP_201_CREATED)
async def request_monitoring_report(
    station_id: StationPath, body: MonitoringReportIn, parts: PartsDep, _: Writer,
) -> MonitoringReportOut:
    """GetMonitoringReport (N02); the NotifyMonitoringReport parts are assembled under the
    report, and a full report (no filters) replaces the station's known monitors."""
    if await parts.store.stations.get(station_id) is None:
        raise not_found(f"station {station_id}")
    targets = None
    if body.components:
        targets = []
        for t in body.components:
            item: dict[str, Any] = {"component": {"name": t.component}}
            if t.evse_id is not None:
                item["component"]["evse"] = {"id": t.evse_id}
            if t.variable is not None:
                item["variable"] = {"name": t.variable}
            targets.append(item)
    report = await _service(parts).request_monitoring_report(
        station_id, list(body.criteria) if body.criteria else None, targets)
    return MonitoringReportOut.model_validate(report)


@router.get("/api/stations/{station_id}/monitoring-reports/{report_id}",
            responses={404: {"description": "no such report"}})
async def get_monitoring_report(station_id: StationPath, report_id: RowId, parts: PartsDep,
                                _: Reader) -> MonitoringReportOut:
    report = await parts.store.monitoring.report(station_id, report_id)
    if report is None:
        raise not_found(f"monitoring report {report_id} of station {station_id}")
    return MonitoringReportOut.model_validate(report)


# ---------------------------------------------------------------------- N07/N08 alerts

class AlertOut(Model):
    id: int
    station_id: str
    event_id: int
    ts: datetime
    trigger: str
    cause: int | None
    actual_value: str
    tech_code: str | None
    tech_info: str | None
    cleared: bool
    transaction_id: str | None
    component: str
    component_instance: str | None
    evse_id: int | None
    connector_id: int | None
    variable: str
    variable_instance: str | None
    monitor_id: int | None
    notification_type: str
    severity: int | None = Field(description="the monitor's severity, 0 Danger ... 9 Debug; "
                                 "null when the CSMS does not know the monitor")
    received_at: datetime


@router.get("/api/alerts")
async def list_alerts(
    parts: PartsDep, _: Reader, station_id: str | None = Query(None, max_length=48),
    max_severity: int | None = Query(None, ge=0, le=9,
                                     description="only this severe or more (0 is the most)"),
    since: AwareDatetime | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> list[AlertOut]:
    """Events stations reported (NotifyEvent), newest first."""
    found = await parts.store.alerts.list(station_id, max_severity, since, limit)
    return [AlertOut.model_validate(a) for a in found]


# --------------------------------------------------------------- N09/N10 customer data

class CustomerIn(Body):
    id_token: str | None = Field(None, min_length=1, max_length=36)
    token_type: TokenType | None = None
    customer_identifier: str | None = Field(None, min_length=1, max_length=64)
    report: bool = Field(True, description="export the customer's data")
    clear: bool = Field(False, description="erase it (stations, and the CSMS's own records)")
    station_ids: list[Annotated[str, Field(pattern=STATION_ID)]] | None = Field(
        None, max_length=10_000, description="stations to ask; default every connected one")

    @model_validator(mode="after")
    def one_customer(self) -> CustomerIn:
        if (self.id_token is None) != (self.token_type is None):
            raise ValueError("id_token and token_type go together")
        if self.id_token is None and self.customer_identifier is None:
            raise ValueError("name the customer: id_token and token_type, or "
                             "customer_identifier")
        if not self.report and not self.clear:
            raise ValueError("report, clear, or both")
        return self


class CustomerStationOut(Model):
    station_id: str
    reply_status: str | None
    reply_reason: str | None
    data: str = Field(description="the station's NotifyCustomerInformation parts, joined")
    complete: bool
    updated_at: datetime


class CustomerOut(Model):
    id: int
    request_id: int
    subject_hash: str = Field(description="SHA-256 of type:token:identifier")
    id_token: str | None = Field(description="null on a request that cleared the data")
    token_type: str | None
    customer_identifier: str | None
    report: bool
    clear: bool
    csms_export: dict[str, Any] | None = Field(
        description="what the CSMS held about the token (report); on a request that also "
        "cleared, only in the answer to the POST, never stored")
    csms_cleared: dict[str, int] | None = Field(description="what the CSMS erased (clear)")
    created_by: str
    created_at: datetime
    stations: list[CustomerStationOut]


@router.post("/api/customer-information", status_code=status.HTTP_201_CREATED)
async def customer_information(body: CustomerIn, parts: PartsDep,
                               who: Privacy) -> CustomerOut:
    """Export and/or erase one customer's data (N09/N10): CustomerInformation to each
    station, and the same in the CSMS's own records (transactions keep station, times
    and energy for billing; the token is removed: docs/decisions/0016-customer-data.md)."""
    station_ids = body.station_ids
    if station_ids is None:
        station_ids = sorted(parts.connections.ids())
    found = await _service(parts).customer_information(
        id_token=body.id_token, token_type=body.token_type,
        customer_identifier=body.customer_identifier, report=body.report, clear=body.clear,
        station_ids=list(dict.fromkeys(station_ids)), created_by=who.name)
    return CustomerOut.model_validate(found)


@router.get("/api/customer-information/{request_id}",
            responses={404: {"description": "no such request"}})
async def get_customer_information(request_id: RowId, parts: PartsDep,
                                   _: Privacy) -> CustomerOut:
    found = await parts.store.customers.get(request_id)
    if found is None:
        raise not_found(f"customer information request {request_id}")
    return CustomerOut.model_validate(found)


@router.delete("/api/customer-information/{request_id}", status_code=204,
               responses={404: {"description": "no such request"}})
async def delete_customer_information(request_id: RowId, parts: PartsDep,
                                      _: Privacy) -> None:
    """Delete the request and the customer data it collected."""
    if not await parts.store.customers.delete(request_id):
        raise not_found(f"customer information request {request_id}")
