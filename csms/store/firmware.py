"""Firmware updates and rollouts (block L; see migrations/0009_firmware_diagnostics.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from csms.rollout import Outcome, Phase, RolloutPolicy, Target


@dataclass(frozen=True)
class Firmware:
    """What UpdateFirmware's `firmware` carries (L01: signature and certificate, both or
    neither)."""

    location: str
    retrieve_at: datetime
    install_at: datetime | None = None
    signature: str | None = None
    signing_certificate: str | None = None

    def as_json(self) -> dict[str, Any]:
        return {
            "location": self.location, "retrieve_at": self.retrieve_at.isoformat(),
            "install_at": self.install_at.isoformat() if self.install_at else None,
            "signature": self.signature, "signing_certificate": self.signing_certificate,
        }

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Firmware:
        install = data.get("install_at")
        return cls(data["location"], datetime.fromisoformat(data["retrieve_at"]),
                   datetime.fromisoformat(install) if install else None,
                   data.get("signature"), data.get("signing_certificate"))


@dataclass(frozen=True)
class FirmwareUpdate:
    id: int
    station_id: str
    request_id: int
    rollout_id: int | None
    location: str
    retrieve_at: datetime
    install_at: datetime | None
    retries: int | None
    retry_interval_s: int | None
    signed: bool
    reply_status: str | None
    reply_reason: str | None
    status: str
    outcome: Outcome
    history: list[dict[str, Any]]
    created_by: str
    created_at: datetime
    updated_at: datetime


@dataclass(frozen=True)
class Rollout:
    id: int
    firmware: Firmware
    retries: int | None
    retry_interval_s: int | None
    policy: RolloutPolicy
    status: str
    created_by: str
    created_at: datetime
    finished_at: datetime | None


@dataclass(frozen=True)
class RolloutStation:
    station_id: str
    position: int
    attempts: int
    update_id: int | None
    status: str | None  # the newest update's status
    outcome: Outcome | None
    updated_at: datetime | None

    @property
    def target(self) -> Target:
        phase: Phase = {
            None: "waiting", "in_progress": "updating", "installed": "installed",
        }.get(self.outcome, "failed")  # type: ignore[assignment]
        return Target(self.station_id, self.position, self.attempts, phase, self.updated_at)


_UPDATE = ("id, station_id, request_id, rollout_id, location, retrieve_at, install_at, retries,"
           " retry_interval_s, signature IS NOT NULL AS signed, reply_status, reply_reason,"
           " status, outcome, history, created_by, created_at, updated_at")


def _update(row: asyncpg.Record) -> FirmwareUpdate:
    data = dict(row)
    data["history"] = json.loads(data["history"])
    return FirmwareUpdate(**data)


def _rollout(row: asyncpg.Record) -> Rollout:
    return Rollout(
        id=row["id"], firmware=Firmware.from_json(json.loads(row["firmware"])),
        retries=row["retries"], retry_interval_s=row["retry_interval_s"],
        policy=RolloutPolicy(row["max_concurrent"], row["max_attempts"],
                             row["retry_after_s"], row["stall_timeout_s"]),
        status=row["status"], created_by=row["created_by"], created_at=row["created_at"],
        finished_at=row["finished_at"])


def _event(status: str, at: datetime, **extra: Any) -> str:
    return json.dumps([{"status": status, "at": at.isoformat(), **extra}])


class FirmwareRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ----------------------------------------------------------------- updates

    async def add_update(
        self, station_id: str, request_id: int, firmware: Firmware, retries: int | None,
        retry_interval_s: int | None, created_by: str, now: datetime,
        rollout_id: int | None = None,
    ) -> FirmwareUpdate:
        """A new update in status Requested (before UpdateFirmware is sent); in a rollout,
        also counted as the station's next attempt."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO firmware_updates (station_id, request_id, rollout_id, location,"
                " retrieve_at, install_at, retries, retry_interval_s, signature,"
                " signing_certificate, status, outcome, history, created_by, created_at,"
                " updated_at) VALUES ($1, $13, $2, $3, $4, $5, $6, $7, $8, $9, 'Requested',"
                f" 'in_progress', $10::jsonb, $11, $12, $12) RETURNING {_UPDATE}",
                station_id, rollout_id, firmware.location, firmware.retrieve_at,
                firmware.install_at, retries, retry_interval_s, firmware.signature,
                firmware.signing_certificate, _event("Requested", now), created_by, now,
                request_id)
            if rollout_id is not None:
                await conn.execute(
                    "UPDATE firmware_rollout_stations SET attempts = attempts + 1,"
                    " update_id = $3 WHERE rollout_id = $1 AND station_id = $2",
                    rollout_id, station_id, row["id"])
        return _update(row)

    async def set_reply(
        self, update_id: int, reply_status: str | None, reason: str | None, status: str,
        outcome: Outcome, now: datetime,
    ) -> FirmwareUpdate | None:
        """Record the station's answer to UpdateFirmware (or why there was none). A status
        the station already reported (its notification can overtake its answer) stays."""
        row = await self.pool.fetchrow(
            "UPDATE firmware_updates SET reply_status = $2, reply_reason = $3,"
            " status = CASE WHEN status = 'Requested' THEN $4 ELSE status END,"
            " outcome = CASE WHEN outcome = 'in_progress' THEN $5 ELSE outcome END,"
            " history = history || $6::jsonb, updated_at = $7"
            f" WHERE id = $1 RETURNING {_UPDATE}",
            update_id, reply_status, reason, status, outcome,
            _event(status, now, reply=reply_status, reason=reason), now)
        return None if row is None else _update(row)

    async def cancel_others(self, station_id: str, keep_id: int, now: datetime) -> int:
        """AcceptedCanceled: the station dropped its earlier update for this one."""
        result = await self.pool.execute(
            "UPDATE firmware_updates SET outcome = 'cancelled', status = 'Cancelled',"
            " history = history || $3::jsonb, updated_at = $4"
            " WHERE station_id = $1 AND id <> $2 AND outcome = 'in_progress'",
            station_id, keep_id, _event("Cancelled", now, by=keep_id), now)
        return int(result.split()[-1])

    async def report_status(
        self, station_id: str, request_id: int | None, status: str, outcome: Outcome,
        now: datetime,
    ) -> FirmwareUpdate | None:
        """A FirmwareStatusNotification: applied to the station's newest update with that
        requestId (or, without one, its newest update in progress). Only an update in
        progress changes: a late notification does not reopen a finished one. None: no
        such update."""
        update_id = await self.pool.fetchval(
            "SELECT id FROM firmware_updates WHERE station_id = $1"
            " AND ($2::int IS NULL AND outcome = 'in_progress' OR request_id = $2)"
            " ORDER BY id DESC LIMIT 1", station_id, request_id)
        if update_id is None:
            return None
        row = await self.pool.fetchrow(
            "UPDATE firmware_updates SET"
            " status = CASE WHEN outcome = 'in_progress' THEN $3 ELSE status END,"
            " outcome = CASE WHEN outcome = 'in_progress' THEN $4 ELSE outcome END,"
            " history = history || $5::jsonb, updated_at = $6"
            f" WHERE station_id = $1 AND id = $2 RETURNING {_UPDATE}",
            station_id, update_id, status, outcome, _event(status, now), now)
        return None if row is None else _update(row)

    async def fail_stalled(self, update_id: int, now: datetime) -> None:
        await self.pool.execute(
            "UPDATE firmware_updates SET outcome = 'failed', status = 'Stalled',"
            " history = history || $2::jsonb, updated_at = $3"
            " WHERE id = $1 AND outcome = 'in_progress'",
            update_id, _event("Stalled", now), now)

    async def get_update(self, update_id: int) -> FirmwareUpdate | None:
        row = await self.pool.fetchrow(
            f"SELECT {_UPDATE} FROM firmware_updates WHERE id = $1", update_id)
        return None if row is None else _update(row)

    async def updates(
        self, station_id: str | None = None, outcome: str | None = None,
        rollout_id: int | None = None, limit: int = 100,
    ) -> list[FirmwareUpdate]:
        rows = await self.pool.fetch(
            f"SELECT {_UPDATE} FROM firmware_updates"
            " WHERE ($1::text IS NULL OR station_id = $1) AND ($2::text IS NULL OR outcome = $2)"
            " AND ($3::bigint IS NULL OR rollout_id = $3) ORDER BY id DESC LIMIT $4",
            station_id, outcome, rollout_id, limit)
        return [_update(r) for r in rows]

    # ----------------------------------------------------------------- rollouts

    async def add_rollout(
        self, station_ids: list[str], firmware: Firmware, retries: int | None,
        retry_interval_s: int | None, policy: RolloutPolicy, created_by: str, now: datetime,
    ) -> Rollout:
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO firmware_rollouts (firmware, retries, retry_interval_s,"
                " max_concurrent, max_attempts, retry_after_s, stall_timeout_s, status,"
                " created_by, created_at) VALUES ($1::jsonb, $2, $3, $4, $5, $6, $7,"
                " 'running', $8, $9) RETURNING *",
                json.dumps(firmware.as_json()), retries, retry_interval_s,
                policy.max_concurrent, policy.max_attempts, policy.retry_after_s,
                policy.stall_timeout_s, created_by, now)
            await conn.executemany(
                "INSERT INTO firmware_rollout_stations (rollout_id, station_id, position)"
                " VALUES ($1, $2, $3)",
                [(row["id"], sid, i) for i, sid in enumerate(station_ids)])
        return _rollout(row)

    async def rollout(self, rollout_id: int) -> Rollout | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM firmware_rollouts WHERE id = $1", rollout_id)
        return None if row is None else _rollout(row)

    async def rollouts(self, status: str | None = None, limit: int = 100) -> list[Rollout]:
        rows = await self.pool.fetch(
            "SELECT * FROM firmware_rollouts WHERE ($1::text IS NULL OR status = $1)"
            " ORDER BY id DESC LIMIT $2", status, limit)
        return [_rollout(r) for r in rows]

    async def rollout_stations(self, rollout_id: int) -> list[RolloutStation]:
        rows = await self.pool.fetch(
            "SELECT s.station_id, s.position, s.attempts, s.update_id, u.status, u.outcome,"
            " u.updated_at FROM firmware_rollout_stations s"
            " LEFT JOIN firmware_updates u ON u.id = s.update_id"
            " WHERE s.rollout_id = $1 ORDER BY s.position", rollout_id)
        return [RolloutStation(**dict(r)) for r in rows]

    async def finish_rollout(self, rollout_id: int, status: str, now: datetime) -> bool:
        """Mark a running rollout completed or cancelled (False: it was not running)."""
        result = await self.pool.execute(
            "UPDATE firmware_rollouts SET status = $2, finished_at = $3"
            " WHERE id = $1 AND status = 'running'", rollout_id, status, now)
        return bool(result.endswith(" 1"))
