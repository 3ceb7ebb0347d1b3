"""Diagnostics flows (block N) on top of single commands: log requests with an upload URL
the CSMS serves itself (N01), the station's variable monitors kept in step with what it
accepted (N02-N06), and a customer's data asked of stations and exported or erased in the
CSMS's own database (N09/N10).

A log's upload URL carries a one-time token: 32 random bytes, only its SHA-256 stored,
spent by the first upload and dead after `upload_window_s` (see
docs/decisions/0018-log-uploads.md).
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import socket
from dataclasses import replace
from datetime import datetime, timedelta

import structlog

from csms.clock import Clock, to_ocpp
from csms.commands import Commands
from csms.config import DiagnosticsConfig
from csms.connection import CallFailed, StationOffline
from csms.frames import Payload
from csms.ocpp.bounds import INT32_MAX
from csms.store import Store
from csms.store.customers import CustomerRequest
from csms.store.diagnostics import LogRequest, Monitor, MonitoringReport

log = structlog.get_logger()

UPLOAD_PATH = "/api/log-uploads"


def token_hash(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _failure(exc: Exception) -> tuple[str, str]:
    """(status, reason) of a request the station did not take."""
    if isinstance(exc, StationOffline):
        return "Offline", "station not connected"
    if isinstance(exc, TimeoutError):
        return "NoAnswer", "no answer in time"
    return "CallError", f"CALLERROR {getattr(exc, 'code', '')}"[:200]


def monitor_request(m: Monitor) -> Payload:
    """A Monitor as SetVariableMonitoring's SetMonitoringDataType."""
    component: Payload = {"name": m.component}
    if m.component_instance:
        component["instance"] = m.component_instance
    if m.evse_id is not None:
        component["evse"] = {"id": m.evse_id}
        if m.connector_id is not None:
            component["evse"]["connectorId"] = m.connector_id
    variable: Payload = {"name": m.variable}
    if m.variable_instance:
        variable["instance"] = m.variable_instance
    data: Payload = {"value": m.value, "type": m.type, "severity": m.severity,
                     "component": component, "variable": variable,
                     "transaction": m.transaction}
    if m.monitor_id:
        data["id"] = m.monitor_id
    return data


class Diagnostics:
    def __init__(self, store: Store, commands: Commands, clock: Clock,
                 config: DiagnosticsConfig) -> None:
        self.store = store
        self.commands = commands
        self.clock = clock
        self.config = config
        self.upload_base_url = config.upload_base_url.rstrip("/")

    def serve_uploads_at(self, host: str, port: int) -> None:
        """The API's address, once bound: the upload base unless one is configured."""
        if not self.upload_base_url:
            if host in ("0.0.0.0", "::", ""):
                host = socket.gethostname()
            self.upload_base_url = f"http://{host}:{port}"

    # ----------------------------------------------------------------- N01 logs

    async def request_log(
        self, station_id: str, log_type: str, *, oldest: datetime | None = None,
        latest: datetime | None = None, retries: int | None = None,
        retry_interval_s: int | None = None, created_by: str,
    ) -> LogRequest:
        """Store the request, send GetLog with a one-time upload URL, record the answer."""
        now = self.clock.now()
        token = secrets.token_urlsafe(32)
        made = await self.store.logs.add(
            station_id, self.commands.next_request_id(), log_type, oldest, latest, retries,
            retry_interval_s, token_hash(token),
            now + timedelta(seconds=self.config.upload_window_s), created_by, now)
        params: Payload = {"remoteLocation":
                           f"{self.upload_base_url}{UPLOAD_PATH}/{made.id}/{token}"}
        if oldest is not None:
            params["oldestTimestamp"] = to_ocpp(oldest)
        if latest is not None:
            params["latestTimestamp"] = to_ocpp(latest)
        request: Payload = {"logType": log_type, "requestId": made.request_id, "log": params}
        if retries is not None:
            request["retries"] = retries
        if retry_interval_s is not None:
            request["retryInterval"] = retry_interval_s
        try:
            reply = await self.commands.call(station_id, "GetLog", request)
        except (StationOffline, TimeoutError, CallFailed) as exc:
            status, reason = _failure(exc)
            found = await self.store.logs.set_reply(made.id, None, reason, None, status,
                                                    self.clock.now(), revoke=True)
        else:
            status = str(reply["status"])
            found = await self.store.logs.set_reply(
                made.id, status, (reply.get("statusInfo") or {}).get("reasonCode"),
                reply.get("filename"), "Accepted" if status != "Rejected" else "Rejected",
                self.clock.now(), revoke=status == "Rejected")
        assert found is not None
        log.info("log.requested", station_id=station_id, request_id=made.request_id,
                 status=found.status)
        return found

    async def may_upload(self, log_id: int, token: str) -> bool:
        return await self.store.logs.may_upload(log_id, token_hash(token), self.clock.now())

    async def store_upload(self, log_id: int, token: str, content: bytes,
                           content_type: str | None, filename: str | None) -> LogRequest | None:
        found = await self.store.logs.store_upload(
            log_id, token_hash(token), content, content_type, filename, self.clock.now())
        if found is not None:
            log.info("log.uploaded", station_id=found.station_id, request_id=found.request_id,
                     bytes=len(content))
        return found

    # ----------------------------------------------------------------- N02-N06 monitors

    async def set_monitors(self, station_id: str, monitors: list[Monitor]) -> list[Payload]:
        """SetVariableMonitoring (split to the station's ItemsPerMessage by Commands.call);
        every monitor the station accepted is kept under the id it gave."""
        requested = [monitor_request(m) for m in monitors]
        reply = await self.commands.call(station_id, "SetVariableMonitoring",
                                         {"setMonitoringData": requested})
        results: list[Payload] = reply["setMonitoringResult"]
        await self.keep_accepted(station_id, requested, results)
        return results

    async def keep_accepted(self, station_id: str, requested: list[Payload],
                            results: list[Payload]) -> None:
        """Store the monitors a SetVariableMonitoring answer accepted. A result names the
        component, variable, type and severity but not the value: each is matched to the
        first request item with the same key."""
        def key(item: Payload) -> tuple[object, ...]:
            c, v = item["component"], item["variable"]
            evse = c.get("evse") or {}
            return (c["name"], c.get("instance", ""), evse.get("id"), evse.get("connectorId"),
                    v["name"], v.get("instance", ""), item["type"], item["severity"])

        pending = list(requested)
        accepted = []
        for r in results:
            match = next((i for i, item in enumerate(pending) if key(item) == key(r)), None)
            if match is None:
                continue
            item = pending.pop(match)
            if r["status"] != "Accepted" or not isinstance(r.get("id"), int):
                continue
            c, v = item["component"], item["variable"]
            evse = c.get("evse") or {}
            accepted.append(Monitor(
                monitor_id=r["id"], component=c["name"], variable=v["name"], type=item["type"],
                value=float(item["value"]), severity=item["severity"],
                component_instance=c.get("instance", ""), evse_id=evse.get("id"),
                connector_id=evse.get("connectorId"), variable_instance=v.get("instance", ""),
                transaction=bool(item.get("transaction", False)), source="set"))
        if accepted:
            await self.store.monitoring.upsert(station_id, accepted, self.clock.now())

    async def clear_monitors(self, station_id: str, monitor_ids: list[int]) -> list[Payload]:
        """ClearVariableMonitoring; a monitor cleared (or unknown to the station) is
        forgotten."""
        reply = await self.commands.call(station_id, "ClearVariableMonitoring",
                                         {"id": monitor_ids})
        await self.forget_cleared(station_id, reply)
        return list(reply["clearMonitoringResult"])

    async def forget_cleared(self, station_id: str, reply: Payload) -> None:
        gone = [r["id"] for r in reply["clearMonitoringResult"]
                if r["status"] in ("Accepted", "NotFound")]
        if gone:
            await self.store.monitoring.delete(station_id, gone)

    async def base_set(self, station_id: str, request: Payload, reply: Payload) -> None:
        """SetMonitoringBase accepted (N03): FactoryDefault and HardWiredOnly remove the
        custom monitors, so the ones the CSMS set are forgotten (a monitoring report tells
        what remains)."""
        if reply["status"] == "Accepted" and request["monitoringBase"] != "All":
            await self.store.monitoring.delete_custom(station_id)

    async def track_log(self, station_id: str, request: Payload, reply: Payload) -> None:
        """A GetLog sent through the command route (to a location of the operator's): its
        LogStatusNotifications are kept on a log request like ours, with no upload URL."""
        request_id = request["requestId"]
        if not isinstance(request_id, int) or not 0 <= request_id <= INT32_MAX:
            return
        now = self.clock.now()
        made = await self.store.logs.add(
            station_id, request_id, request["logType"], None, None, None, None, None, now,
            "command", now)
        status = str(reply["status"])
        await self.store.logs.set_reply(
            made.id, status, (reply.get("statusInfo") or {}).get("reasonCode"),
            reply.get("filename"), "Rejected" if status == "Rejected" else "Accepted", now)

    async def request_monitoring_report(
        self, station_id: str, criteria: list[str] | None,
        component_variables: list[Payload] | None,
    ) -> MonitoringReport:
        filters: Payload = {}
        if criteria:
            filters["monitoringCriteria"] = criteria
        if component_variables:
            filters["componentVariable"] = component_variables
        request_id = self.commands.next_request_id()
        report = await self.store.monitoring.add_report(
            station_id, request_id, filters, self.clock.now())
        try:
            reply = await self.commands.call(
                station_id, "GetMonitoringReport", {"requestId": request_id, **filters})
            status = str(reply["status"])
        except (StationOffline, TimeoutError, CallFailed) as exc:
            status = _failure(exc)[0]
        found = await self.store.monitoring.set_report_reply(report.id, status,
                                                             self.clock.now())
        assert found is not None
        return found

    # ----------------------------------------------------------------- N09/N10 customers

    async def customer_information(
        self, *, id_token: str | None, token_type: str | None,
        customer_identifier: str | None, report: bool, clear: bool,
        station_ids: list[str], created_by: str,
    ) -> CustomerRequest:
        """Ask each station (report and/or clear) and do the same in the CSMS's own
        database: export what names the token, erase it (see csms.store.customers)."""
        customers, now = self.store.customers, self.clock.now()
        export = cleared = None
        if id_token is not None and token_type is not None:
            if report:
                export = await customers.export(id_token, token_type)
            if clear:
                cleared = await customers.erase(id_token, token_type)
        request_id = self.commands.next_request_id()
        row_id = await customers.add(
            request_id=request_id, id_token=id_token, token_type=token_type,
            customer_identifier=customer_identifier, report=report, clear=clear,
            csms_export=None if clear else export, csms_cleared=cleared, station_ids=station_ids,
            created_by=created_by, now=now)
        request: Payload = {"requestId": request_id, "report": report, "clear": clear}
        if id_token is not None and token_type is not None:
            request["idToken"] = {"idToken": id_token, "type": token_type}
        if customer_identifier is not None:
            request["customerIdentifier"] = customer_identifier
        gate = asyncio.Semaphore(50)  # stations asked at once

        async def ask(station_id: str) -> None:
            async with gate:
                try:
                    reply = await self.commands.call(station_id, "CustomerInformation", request)
                except (StationOffline, TimeoutError, CallFailed) as exc:
                    status, reason = _failure(exc)
                else:
                    status = str(reply["status"])
                    reason = (reply.get("statusInfo") or {}).get("reasonCode")
                await customers.set_reply(row_id, station_id, status, reason, self.clock.now())

        await asyncio.gather(*(ask(sid) for sid in station_ids))
        log.info("customer.information", request_id=request_id, report=report, clear=clear,
                 stations=len(station_ids), csms_cleared=cleared)
        found = await customers.get(row_id)
        assert found is not None
        return replace(found, csms_export=export)  # once, even when it is not kept
