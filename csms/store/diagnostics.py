"""Block N records: log requests and their uploads (N01), variable monitors and monitoring
reports (N02-N06), and alerts from NotifyEvent (N07/N08). See
migrations/0009_firmware_diagnostics.sql."""

from __future__ import annotations

import json
from dataclasses import dataclass, fields
from datetime import datetime
from typing import Any

import asyncpg


def _event(status: str, at: datetime, **extra: Any) -> str:
    return json.dumps([{"status": status, "at": at.isoformat(), **extra}])


# ----------------------------------------------------------------------------- logs (N01)

@dataclass(frozen=True)
class LogRequest:
    id: int
    station_id: str
    request_id: int
    log_type: str
    oldest_at: datetime | None
    latest_at: datetime | None
    retries: int | None
    retry_interval_s: int | None
    reply_status: str | None
    reply_reason: str | None
    filename: str | None
    status: str
    history: list[dict[str, Any]]
    content_type: str | None
    size_bytes: int | None
    uploaded_at: datetime | None
    created_by: str
    created_at: datetime
    updated_at: datetime


_LOG = ", ".join(f.name for f in fields(LogRequest))
# An upload's own status wins over a station's later notification: Uploaded stays so.
FINAL_LOG_STATUSES = ("Uploaded", "UploadFailure", "BadMessage", "NotSupportedOperation",
                      "PermissionDenied", "Rejected", "NoAnswer", "Offline", "CallError",
                      "AcceptedCanceled")


def _log(row: asyncpg.Record) -> LogRequest:
    data = dict(row)
    data["history"] = json.loads(data["history"])
    return LogRequest(**data)


class LogRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(
        self, station_id: str, request_id: int, log_type: str, oldest_at: datetime | None,
        latest_at: datetime | None, retries: int | None, retry_interval_s: int | None,
        token_hash: bytes | None, token_expires_at: datetime, created_by: str, now: datetime,
    ) -> LogRequest:
        row = await self.pool.fetchrow(
            "INSERT INTO log_requests (station_id, request_id, log_type, oldest_at, latest_at,"
            " retries, retry_interval_s, token_hash, token_expires_at, status, history,"
            " created_by, created_at, updated_at) VALUES ($1, $12, $2, $3, $4, $5, $6, $7, $8,"
            f" 'Requested', $9::jsonb, $10, $11, $11) RETURNING {_LOG}",
            station_id, log_type, oldest_at, latest_at, retries, retry_interval_s, token_hash,
            token_expires_at, _event("Requested", now), created_by, now, request_id)
        return _log(row)

    async def set_reply(
        self, request_id: int, reply_status: str | None, reason: str | None,
        filename: str | None, status: str, now: datetime, *, revoke: bool = False,
    ) -> LogRequest | None:
        """The GetLog answer (or why there was none); `revoke`: the upload URL dies now."""
        row = await self.pool.fetchrow(
            "UPDATE log_requests SET reply_status = $2, reply_reason = $3, filename = $4,"
            " status = CASE WHEN status = 'Requested' THEN $5 ELSE status END,"
            " token_hash = CASE WHEN $8 THEN NULL ELSE token_hash END,"
            f" history = history || $6::jsonb, updated_at = $7 WHERE id = $1 RETURNING {_LOG}",
            request_id, reply_status, reason, filename, status,
            _event(status, now, reply=reply_status, reason=reason), now, revoke)
        return None if row is None else _log(row)

    async def report_status(
        self, station_id: str, request_id: int | None, status: str, now: datetime
    ) -> LogRequest | None:
        """A LogStatusNotification, on the station's newest request with that requestId
        (without one: its newest request). The file's own arrival decides Uploaded: a
        notification does not undo it."""
        log_id = await self.pool.fetchval(
            "SELECT id FROM log_requests WHERE station_id = $1"
            " AND ($2::int IS NULL OR request_id = $2) ORDER BY id DESC LIMIT 1",
            station_id, request_id)
        if log_id is None:
            return None
        row = await self.pool.fetchrow(
            "UPDATE log_requests SET"
            " status = CASE WHEN uploaded_at IS NULL THEN $3 ELSE status END,"
            " history = history || $4::jsonb, updated_at = $5"
            f" WHERE station_id = $1 AND id = $2 RETURNING {_LOG}",
            station_id, log_id, status, _event(status, now), now)
        return None if row is None else _log(row)

    async def may_upload(self, request_id: int, token_hash: bytes, now: datetime) -> bool:
        """The token is this request's, unused and not expired."""
        found = await self.pool.fetchval(
            "SELECT 1 FROM log_requests WHERE id = $1 AND token_hash = $2"
            " AND token_expires_at > $3", request_id, token_hash, now)
        return found is not None

    async def store_upload(
        self, request_id: int, token_hash: bytes, content: bytes, content_type: str | None,
        filename: str | None, now: datetime,
    ) -> LogRequest | None:
        """Keep the file and spend the token, in one statement (None: the token was not
        valid any more, e.g. a second upload raced this one)."""
        row = await self.pool.fetchrow(
            "UPDATE log_requests SET content = $3, content_type = $4, size_bytes = $5,"
            " filename = COALESCE($6, filename), uploaded_at = $7, token_hash = NULL,"
            " status = 'Uploaded', history = history || $8::jsonb, updated_at = $7"
            " WHERE id = $1 AND token_hash = $2 AND token_expires_at > $7"
            f" RETURNING {_LOG}",
            request_id, token_hash, content, content_type, len(content), filename, now,
            _event("Uploaded", now, bytes=len(content)))
        return None if row is None else _log(row)

    async def get(self, request_id: int) -> LogRequest | None:
        row = await self.pool.fetchrow(
            f"SELECT {_LOG} FROM log_requests WHERE id = $1", request_id)
        return None if row is None else _log(row)

    async def content(self, request_id: int) -> tuple[bytes, str | None] | None:
        row = await self.pool.fetchrow(
            "SELECT content, content_type FROM log_requests WHERE id = $1"
            " AND content IS NOT NULL", request_id)
        return None if row is None else (bytes(row["content"]), row["content_type"])

    async def list(self, station_id: str | None = None, limit: int = 100) -> list[LogRequest]:
        rows = await self.pool.fetch(
            f"SELECT {_LOG} FROM log_requests WHERE ($1::text IS NULL OR station_id = $1)"
            " ORDER BY id DESC LIMIT $2", station_id, limit)
        return [_log(r) for r in rows]


# ------------------------------------------------------------------- monitoring (N02-N06)

@dataclass(frozen=True)
class Monitor:
    monitor_id: int
    component: str
    variable: str
    type: str
    value: float
    severity: int
    component_instance: str = ""
    evse_id: int | None = None
    connector_id: int | None = None
    variable_instance: str = ""
    transaction: bool = False
    source: str = "set"
    updated_at: datetime | None = None


_MONITOR = ", ".join(f.name for f in fields(Monitor))


@dataclass(frozen=True)
class MonitoringReport:
    id: int
    station_id: str
    request_id: int
    criteria: dict[str, Any]
    reply_status: str | None
    parts: int
    monitors: list[dict[str, Any]]
    complete: bool
    created_at: datetime
    completed_at: datetime | None


def _report(row: asyncpg.Record) -> MonitoringReport:
    data = dict(row)
    data["criteria"] = json.loads(data["criteria"])
    data["monitors"] = json.loads(data["monitors"])
    return MonitoringReport(**data)


class MonitoringRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def upsert(self, station_id: str, monitors: list[Monitor], now: datetime,
                     *, replace_all: bool = False) -> None:
        """Keep these monitors (a monitor id is the station's: the same id replaces it);
        `replace_all`: they are every monitor the station has (a full report)."""
        async with self.pool.acquire() as conn, conn.transaction():
            if replace_all:
                await conn.execute(
                    "DELETE FROM variable_monitors WHERE station_id = $1", station_id)
            await conn.executemany(
                f"INSERT INTO variable_monitors (station_id, {_MONITOR}) VALUES"
                " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)"
                " ON CONFLICT (station_id, monitor_id) DO UPDATE SET"
                " component = $3, variable = $4, type = $5, value = $6, severity = $7,"
                " component_instance = $8, evse_id = $9, connector_id = $10,"
                " variable_instance = $11, transaction = $12, source = $13, updated_at = $14",
                [(station_id, m.monitor_id, m.component, m.variable, m.type, m.value,
                  m.severity, m.component_instance, m.evse_id, m.connector_id,
                  m.variable_instance, m.transaction, m.source, now) for m in monitors])

    async def list(self, station_id: str) -> list[Monitor]:
        rows = await self.pool.fetch(
            f"SELECT {_MONITOR} FROM variable_monitors WHERE station_id = $1"
            " ORDER BY monitor_id", station_id)
        return [Monitor(**dict(r)) for r in rows]

    async def delete(self, station_id: str, monitor_ids: list[int]) -> int:
        result = await self.pool.execute(
            "DELETE FROM variable_monitors WHERE station_id = $1 AND monitor_id = ANY($2)",
            station_id, monitor_ids)
        return int(result.split()[-1])

    async def delete_custom(self, station_id: str) -> int:
        """Forget the monitors the CSMS set (a monitoring base other than All drops them)."""
        result = await self.pool.execute(
            "DELETE FROM variable_monitors WHERE station_id = $1 AND source = 'set'",
            station_id)
        return int(result.split()[-1])

    async def severities(self, station_id: str, monitor_ids: list[int]) -> dict[int, int]:
        rows = await self.pool.fetch(
            "SELECT monitor_id, severity FROM variable_monitors WHERE station_id = $1"
            " AND monitor_id = ANY($2)", station_id, monitor_ids)
        return {r["monitor_id"]: r["severity"] for r in rows}

    async def add_report(self, station_id: str, request_id: int, criteria: dict[str, Any],
                         now: datetime) -> MonitoringReport:
        row = await self.pool.fetchrow(
            "INSERT INTO monitoring_reports (station_id, request_id, criteria, created_at)"
            " VALUES ($1, $2, $3::jsonb, $4) RETURNING *",
            station_id, request_id, json.dumps(criteria), now)
        return _report(row)

    async def set_report_reply(self, report_id: int, status: str,
                               now: datetime) -> MonitoringReport | None:
        """The GetMonitoringReport answer; anything but Accepted means no parts will come."""
        row = await self.pool.fetchrow(
            "UPDATE monitoring_reports SET reply_status = $2,"
            " complete = complete OR $2 <> 'Accepted',"
            " completed_at = CASE WHEN $2 <> 'Accepted' THEN $3::timestamptz"
            " ELSE completed_at END"
            " WHERE id = $1 RETURNING *", report_id, status, now)
        return None if row is None else _report(row)

    async def add_report_part(
        self, station_id: str, request_id: int, monitors: list[dict[str, Any]], tbc: bool,
        now: datetime,
    ) -> MonitoringReport | None:
        row = await self.pool.fetchrow(
            "UPDATE monitoring_reports SET parts = parts + 1,"
            " monitors = monitors || $3::jsonb, complete = NOT $4,"
            " completed_at = CASE WHEN $4 THEN NULL ELSE $5::timestamptz END"
            " WHERE id = (SELECT id FROM monitoring_reports WHERE station_id = $1"
            " AND request_id = $2 ORDER BY id DESC LIMIT 1) RETURNING *",
            station_id, request_id, json.dumps(monitors), tbc, now)
        return None if row is None else _report(row)

    async def report(self, station_id: str, report_id: int) -> MonitoringReport | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM monitoring_reports WHERE station_id = $1 AND id = $2",
            station_id, report_id)
        return None if row is None else _report(row)


# ------------------------------------------------------------------------ alerts (N07/N08)

@dataclass(frozen=True)
class Alert:
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
    severity: int | None
    received_at: datetime


_ALERT = [f.name for f in fields(Alert)]


class AlertRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, alerts: list[dict[str, Any]]) -> list[Alert]:
        """Rows with every Alert field but `id`."""
        names = _ALERT[1:]
        values = ", ".join(f"${i}" for i in range(1, len(names) + 1))
        sql = (f"INSERT INTO alerts ({', '.join(names)}) VALUES ({values})"
               f" RETURNING {', '.join(_ALERT)}")
        async with self.pool.acquire() as conn, conn.transaction():
            return [Alert(**dict(await conn.fetchrow(sql, *(a[n] for n in names))))
                    for a in alerts]

    async def list(
        self, station_id: str | None = None, max_severity: int | None = None,
        since: datetime | None = None, limit: int = 100,
    ) -> list[Alert]:
        """Newest first; `max_severity`: only alerts at least this severe (0 is the most)."""
        rows = await self.pool.fetch(
            f"SELECT {', '.join(_ALERT)} FROM alerts"
            " WHERE ($1::text IS NULL OR station_id = $1)"
            " AND ($2::int IS NULL OR severity <= $2)"
            " AND ($3::timestamptz IS NULL OR received_at >= $3)"
            " ORDER BY received_at DESC, id DESC LIMIT $4",
            station_id, max_severity, since, limit)
        return [Alert(**dict(r)) for r in rows]
