"""Block N, diagnostics: what a station reports about logs (N01), monitors (N05), events
(N07/N08) and a customer's data (N09/N10).

Each notification that names a requestId is filed under the CSMS's request with that id
(csms.store.diagnostics, csms.store.customers); one that names none of ours is kept as a
plain notification, so nothing a station says is lost.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import structlog

from csms.clock import parse_ocpp
from csms.connection import StationContext
from csms.events import StationAlert
from csms.frames import Payload
from csms.ocpp.bounds import request_id_of, require_int32
from csms.ocpp.deps import Deps
from csms.store.diagnostics import Monitor

log = structlog.get_logger()

MAX_PARTS = 1000  # parts of one report kept at most (each a frame of max_message_bytes)


@dataclass(frozen=True)
class LogStatusNotification:
    """N01: Uploading, Uploaded, UploadFailure, ... on the GetLog request it names."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        now, status = self.deps.clock.now(), str(req["status"])
        found = None
        request_id = request_id_of(req)
        if status != "Idle" and (request_id is not None or "requestId" not in req):
            found = await self.deps.store.logs.report_status(
                ctx.station_id, request_id, status, now)
        if found is None:
            await self.deps.store.notifications.add(
                ctx.station_id, "LogStatusNotification", req, now)
        else:
            log.info("log.status", station_id=ctx.station_id, request_id=found.id,
                     status=status)
        return {}


def monitors_of(report: list[Payload], source: str) -> list[Monitor]:
    """NotifyMonitoringReport's `monitor` entries, one Monitor per variableMonitoring."""
    found = []
    for item in report:
        component, variable = item["component"], item["variable"]
        evse = component.get("evse") or {}
        for m in item["variableMonitoring"]:
            found.append(Monitor(
                monitor_id=m["id"], component=component["name"], variable=variable["name"],
                type=m["type"], value=float(m["value"]), severity=m["severity"],
                component_instance=component.get("instance", ""),
                evse_id=evse.get("id"), connector_id=evse.get("connectorId"),
                variable_instance=variable.get("instance", ""),
                transaction=bool(m["transaction"]), source=source))
    return found


@dataclass(frozen=True)
class NotifyMonitoringReport:
    """N05: the parts of a monitoring report, assembled under the GetMonitoringReport that
    asked for it. The monitors reported are kept as the station's; a complete report asked
    for without filters is every monitor it has, so it replaces what was known."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        require_int32(req)
        now, repo = self.deps.clock.now(), self.deps.store.monitoring
        request_id = request_id_of(req)
        items: list[Payload] = req.get("monitor", [])
        report = None
        if request_id is not None and 0 <= req["seqNo"] <= MAX_PARTS:
            report = await repo.add_report_part(
                ctx.station_id, request_id, items, bool(req.get("tbc", False)), now)
        if report is None:
            await self.deps.store.notifications.add(
                ctx.station_id, "NotifyMonitoringReport", req, now)
            return {}
        if report.complete and not report.criteria:
            await repo.upsert(ctx.station_id, monitors_of(report.monitors, "report"), now,
                              replace_all=True)
        else:
            await repo.upsert(ctx.station_id, monitors_of(items, "report"), now)
        return {}


@dataclass(frozen=True)
class NotifyEvent:
    """N07/N08: each event becomes an alert, with the severity of the monitor that raised
    it when the CSMS knows that monitor (set through it or reported), and is logged: at
    warning level for severity 0-4 (Danger ... Warning) or unknown, else info."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        require_int32(req)
        now = self.deps.clock.now()
        events: list[Payload] = req["eventData"]
        monitor_ids = [e["variableMonitoringId"] for e in events
                       if e.get("variableMonitoringId") is not None]
        severities = await self.deps.store.monitoring.severities(ctx.station_id, monitor_ids)
        rows: list[dict[str, Any]] = []
        for e in events:
            component, variable = e["component"], e["variable"]
            evse = component.get("evse") or {}
            monitor_id = e.get("variableMonitoringId")
            rows.append({
                "station_id": ctx.station_id, "event_id": e["eventId"],
                "ts": parse_ocpp(e["timestamp"]), "trigger": e["trigger"],
                "cause": e.get("cause"), "actual_value": e["actualValue"],
                "tech_code": e.get("techCode"), "tech_info": e.get("techInfo"),
                "cleared": bool(e.get("cleared", False)),
                "transaction_id": e.get("transactionId"), "component": component["name"],
                "component_instance": component.get("instance"), "evse_id": evse.get("id"),
                "connector_id": evse.get("connectorId"), "variable": variable["name"],
                "variable_instance": variable.get("instance"), "monitor_id": monitor_id,
                "notification_type": e["eventNotificationType"],
                "severity": severities.get(monitor_id) if monitor_id is not None else None,
                "received_at": now,
            })
        for alert in await self.deps.store.alerts.add(rows):
            severe = alert.severity is None or alert.severity <= 4
            (log.warning if severe else log.info)(
                "station.alert", station_id=ctx.station_id, alert_id=alert.id,
                severity=alert.severity, component=alert.component, variable=alert.variable,
                actual_value=alert.actual_value[:100], trigger=alert.trigger,
                cleared=alert.cleared)
            self.deps.events.publish(StationAlert(
                ctx.station_id, alert.id, alert.severity, alert.component, alert.variable,
                alert.actual_value[:200], alert.cleared, now))
        return {}


@dataclass(frozen=True)
class NotifyCustomerInformation:
    """N09/N10: the parts of a station's report on one customer, assembled under the
    CustomerInformation request that asked for it."""

    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        now = self.deps.clock.now()
        request_id = request_id_of(req)
        stored = False
        if request_id is not None and 0 <= req["seqNo"] <= MAX_PARTS:
            stored = await self.deps.store.customers.add_part(
                ctx.station_id, request_id, req["seqNo"], req["data"],
                bool(req.get("tbc", False)), now)
        if not stored:
            await self.deps.store.notifications.add(
                ctx.station_id, "NotifyCustomerInformation", req, now)
        return {}
