"""Block N, diagnostics, as a station performs it: GetLog with an HTTP upload (N01),
variable monitors (N02-N06) that raise NotifyEvent when a reported value crosses them
(N07), and CustomerInformation (N09/N10).

GetLog: the station answers Accepted with its file name, then reports Uploading, PUTs a
small log (its recent CSMS calls) to `remoteLocation` and reports Uploaded, or, after
`retries` more attempts, UploadFailure. Only http(s) locations are supported (Rejected
otherwise). A new GetLog while an upload runs cancels it: AcceptedCanceled.

Monitors live in the station: SetVariableMonitoring checks each item against the device
model (UnknownComponent, UnknownVariable), refuses a negative Delta or a non-positive
period (Rejected), an id it does not have (Rejected) and an exact copy of a monitor it has
(Duplicate). More items than MonitoringCtrlr.ItemsPerMessageSetVariableMonitoring is a
CALLERROR OccurrenceConstraintViolation, as for GetVariables (B06.FR.05).
`station.report_value(component, variable, value)` evaluates the threshold monitors on that
variable and sends NotifyEvent for each one crossed at or above the monitoring level.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from simulators.clock import to_ocpp
from simulators.device_model import Variable
from simulators.station.link import CallFailed, NotConnected
from simulators.station.replies import ErrorReply, Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station

log = logging.getLogger("simulators.station")

ITEMS_PER_SET = 10
ITEMS_PER_CLEAR = 10
ITEMS_PER_REPORT = 4  # monitors per NotifyMonitoringReport part


@dataclass
class StationMonitor:
    id: int
    component: dict
    variable: dict
    type: str
    value: float
    severity: int
    transaction: bool = False
    hard_wired: bool = False


@dataclass
class DiagnosticsState:
    monitors: dict[int, StationMonitor] = field(default_factory=dict)
    next_monitor_id: int = 1
    monitoring_level: int = 9  # report events of every severity (0 ... 9)
    monitoring_base: str = "All"
    upload_fails: bool = False
    uploads: list[tuple[str, bytes]] = field(default_factory=list)  # (url, body) sent
    log_statuses: list[tuple[int | None, str]] = field(default_factory=list)
    log_task: asyncio.Task | None = None
    next_event_id: int = 1
    cleared_customers: set[tuple[str, str]] = field(default_factory=set)


def install(station: Station) -> None:
    """The MonitoringCtrlr variables a station with block N reports."""
    dm = station.device_model
    for name, value in (("ItemsPerMessageSetVariableMonitoring", ITEMS_PER_SET),
                        ("ItemsPerMessageClearVariableMonitoring", ITEMS_PER_CLEAR)):
        dm.add(Variable("MonitoringCtrlr", name, str(value), "integer"))
    dm.add(Variable("MonitoringCtrlr", "Enabled", "true", "boolean"))


async def _call(station: Station, action: str, payload: dict) -> None:
    with contextlib.suppress(NotConnected, CallFailed, TimeoutError):
        await station.call(action, payload)


# ------------------------------------------------------------------------------ N01 logs

def _put(url: str, body: bytes) -> int:
    request = urllib.request.Request(url, data=body, method="PUT",
                                     headers={"Content-Type": "text/plain"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return int(exc.code)
    except OSError:
        return 0


def log_text(station: Station, log_type: str) -> bytes:
    lines = [f"{to_ocpp(station.clock.now())} {station.station_id} {log_type}",
             f"firmware {station.spec.firmware_version}"]
    lines += [f"received {action}" for action in station.received_calls]
    return ("\n".join(lines) + "\n").encode()


async def _upload(station: Station, req: dict) -> None:
    state, request_id = station.diagnostics, req["requestId"]

    async def status(value: str) -> None:
        state.log_statuses.append((request_id, value))
        await _call(station, "LogStatusNotification", {"status": value, "requestId": request_id})

    url, body = req["log"]["remoteLocation"], log_text(station, req["logType"])
    attempts = 1 + max(0, req.get("retries", 0))
    for attempt in range(attempts):
        await status("Uploading")
        code = 0 if state.upload_fails else await asyncio.to_thread(_put, url, body)
        state.uploads.append((url, body))
        if 200 <= code < 300:
            await status("Uploaded")
            return
        if attempt + 1 < attempts:
            await station.clock.sleep(max(0, req.get("retryInterval", 0)))
    await status("UploadFailure")


async def get_log(station: Station, req: dict) -> Reply:
    location = req["log"]["remoteLocation"]
    if not location.startswith(("http://", "https://")):
        return rejected("UnsupportedProto", "only http(s) uploads"), None
    state = station.diagnostics
    running = state.log_task is not None and not state.log_task.done()
    if running:
        assert state.log_task is not None
        state.log_task.cancel()
    filename = f"{station.station_id}-{req['logType']}-{req['requestId']}.log"

    async def start() -> None:
        state.log_task = station._spawn(_upload(station, req))

    return {"status": "AcceptedCanceled" if running else "Accepted",
            "filename": filename}, start


# ------------------------------------------------------------------- N02-N06 monitoring

def _same_target(m: StationMonitor, item: dict) -> bool:
    return m.component == item["component"] and m.variable == item["variable"]


def _set_one(station: Station, item: dict) -> dict:
    state = station.diagnostics
    result = {"type": item["type"], "severity": item["severity"],
              "component": item["component"], "variable": item["variable"]}
    comp, var = item["component"], item["variable"]
    found, problem = station.device_model._lookup(item)
    if found is None:
        return {**result, "status": problem}
    value, kind = float(item["value"]), item["type"]
    if (kind == "Delta" and value < 0) or (kind.startswith("Periodic") and value <= 0) or \
            not 0 <= item["severity"] <= 9:
        return {**result, "status": "Rejected",
                "statusInfo": {"reasonCode": "InvalidValue"}}
    wanted_id = item.get("id")
    if wanted_id is not None and wanted_id not in state.monitors:
        return {**result, "status": "Rejected",
                "statusInfo": {"reasonCode": "UnknownId"}}
    for m in state.monitors.values():
        if (m.id != wanted_id and _same_target(m, item) and m.type == kind
                and m.value == value and m.severity == item["severity"]):
            return {**result, "status": "Duplicate", "id": m.id}
    if wanted_id is None:
        wanted_id = state.next_monitor_id
        state.next_monitor_id += 1
    state.monitors[wanted_id] = StationMonitor(
        wanted_id, comp, var, kind, value, item["severity"], item.get("transaction", False))
    return {**result, "status": "Accepted", "id": wanted_id}


async def set_variable_monitoring(station: Station, req: dict) -> Reply:
    items = req["setMonitoringData"]
    limit = int(station.device_model.number(
        "MonitoringCtrlr", "ItemsPerMessageSetVariableMonitoring"))
    if len(items) > limit:
        raise ErrorReply("OccurrenceConstraintViolation",
                         f"{len(items)} items; ItemsPerMessage is {limit}")
    return {"setMonitoringResult": [_set_one(station, i) for i in items]}, None


async def clear_variable_monitoring(station: Station, req: dict) -> Reply:
    state, results = station.diagnostics, []
    limit = int(station.device_model.number(
        "MonitoringCtrlr", "ItemsPerMessageClearVariableMonitoring"))
    if len(req["id"]) > limit:
        raise ErrorReply("OccurrenceConstraintViolation",
                         f"{len(req['id'])} ids; ItemsPerMessage is {limit}")
    for monitor_id in req["id"]:
        m = state.monitors.get(monitor_id)
        if m is None:
            results.append({"id": monitor_id, "status": "NotFound"})
        elif m.hard_wired:
            results.append({"id": monitor_id, "status": "Rejected"})
        else:
            del state.monitors[monitor_id]
            results.append({"id": monitor_id, "status": "Accepted"})
    return {"clearMonitoringResult": results}, None


_CRITERIA = {"ThresholdMonitoring": ("UpperThreshold", "LowerThreshold"),
             "DeltaMonitoring": ("Delta",),
             "PeriodicMonitoring": ("Periodic", "PeriodicClockAligned")}


async def get_monitoring_report(station: Station, req: dict) -> Reply:
    selected = list(station.diagnostics.monitors.values())
    if criteria := req.get("monitoringCriteria"):
        types = {t for c in criteria for t in _CRITERIA[c]}
        selected = [m for m in selected if m.type in types]
    if targets := req.get("componentVariable"):
        def wanted(m: StationMonitor) -> bool:
            return any(t["component"]["name"] == m.component["name"]
                       and ("variable" not in t or t["variable"]["name"] == m.variable["name"])
                       for t in targets)
        selected = [m for m in selected if wanted(m)]
    if not selected:
        return {"status": "EmptyResultSet"}, None
    request_id = req["requestId"]

    async def send_report() -> None:
        generated = to_ocpp(station.clock.now())
        chunks = [selected[i:i + ITEMS_PER_REPORT]
                  for i in range(0, len(selected), ITEMS_PER_REPORT)]
        for seq, chunk in enumerate(chunks):
            await _call(station, "NotifyMonitoringReport", {
                "requestId": request_id, "seqNo": seq, "generatedAt": generated,
                "tbc": seq < len(chunks) - 1,
                "monitor": [{"component": m.component, "variable": m.variable,
                             "variableMonitoring": [{
                                 "id": m.id, "transaction": m.transaction, "value": m.value,
                                 "type": m.type, "severity": m.severity}]}
                            for m in chunk]})

    return {"status": "Accepted"}, send_report


async def set_monitoring_base(station: Station, req: dict) -> Reply:
    """N03: FactoryDefault and HardWiredOnly drop the monitors the CSMS set."""
    state = station.diagnostics
    state.monitoring_base = req["monitoringBase"]
    if state.monitoring_base != "All":
        state.monitors = {i: m for i, m in state.monitors.items() if m.hard_wired}
    return {"status": "Accepted"}, None


async def set_monitoring_level(station: Station, req: dict) -> Reply:
    if not 0 <= req["severity"] <= 9:
        return rejected("InvalidValue", "severity is 0 to 9"), None
    station.diagnostics.monitoring_level = req["severity"]
    return {"status": "Accepted"}, None


def crossed(m: StationMonitor, value: float) -> bool:
    if m.type == "UpperThreshold":
        return value > m.value
    if m.type == "LowerThreshold":
        return value < m.value
    return False


async def report_value(station: Station, component: str, variable: str, value: float) -> int:
    """A measured value: NotifyEvent for every threshold monitor on it that it crosses
    (at or above the monitoring level's severity). Returns the events sent."""
    state = station.diagnostics
    events = []
    for m in state.monitors.values():
        if (m.component["name"] == component and m.variable["name"] == variable
                and m.severity <= state.monitoring_level and crossed(m, value)):
            events.append({
                "eventId": state.next_event_id, "timestamp": to_ocpp(station.clock.now()),
                "trigger": "Alerting", "actualValue": str(value)[:2500],
                "component": m.component, "variable": m.variable,
                "variableMonitoringId": m.id, "eventNotificationType": "CustomMonitor",
                "cleared": False})
            state.next_event_id += 1
    if events:
        await _call(station, "NotifyEvent", {
            "generatedAt": to_ocpp(station.clock.now()), "seqNo": 0, "eventData": events})
    return len(events)


# -------------------------------------------------------------- N09/N10 customer data

async def customer_information(station: Station, req: dict) -> Reply:
    """What this station holds about an id token: the transactions running with it. Clear
    drops the token from them (they run on; their events no longer carry it)."""
    token = req.get("idToken")
    if token is None and "customerIdentifier" not in req and "customerCertificate" not in req:
        return rejected("MissingParam", "no customer named", status="Invalid"), None
    holding = [e for e in station.evses.values()
               if token is not None and e.tx is not None and e.tx.id_token is not None
               and e.tx.id_token.get("idToken") == token["idToken"]
               and e.tx.id_token.get("type") == token["type"]]
    lines = [f"transaction {e.tx.transaction_id} on EVSE {e.spec.evse_id}"
             for e in holding if e.tx is not None]
    if req["clear"]:
        for e in holding:
            assert e.tx is not None
            e.tx.id_token = None
        if token is not None:
            station.diagnostics.cleared_customers.add((token["idToken"], token["type"]))
    request_id = req["requestId"]

    async def send_report() -> None:
        text = "\n".join(lines) if lines else "no data held for this customer"
        if req["clear"]:
            text = (text + "\ncleared")[:512 * 20]
        parts = [text[i:i + 512] for i in range(0, len(text), 512)] or [""]
        generated = to_ocpp(station.clock.now())
        for seq, part in enumerate(parts):
            await _call(station, "NotifyCustomerInformation", {
                "data": part, "seqNo": seq, "generatedAt": generated,
                "requestId": request_id, "tbc": seq < len(parts) - 1})

    return {"status": "Accepted"}, send_report
