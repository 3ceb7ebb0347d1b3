"""Stored plans: one row per scheduler run of a site (see migrations/0002_plans.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class PlanRecord:
    """A plan as stored. `inputs` and `schedule` are JSON objects (see csms/scheduling/site.py)."""

    site_id: str
    planned_at: datetime
    trigger: str
    sessions: int
    inputs: dict[str, Any]
    schedule: dict[str, Any]
    status: str
    iterations: int = 0
    fallback_used: bool = False
    fallback_reason: str | None = None
    solve_seconds: float = 0.0
    build_seconds: float = 0.0
    profiles_sent: int = 0
    profiles_rejected: int = 0
    profiles_failed: int = 0
    id: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class PlanTotals:
    """A site's plans counted, without loading their inputs and schedules."""

    plans: int = 0
    fallbacks: int = 0
    profiles_sent: int = 0
    profiles_rejected: int = 0
    profiles_failed: int = 0


_COLUMNS = (
    "site_id, planned_at, trigger, sessions, inputs, schedule, status, iterations,"
    " fallback_used, fallback_reason, solve_seconds, build_seconds, profiles_sent,"
    " profiles_rejected, profiles_failed"
)

# the columns with empty JSON in place of the inputs and schedule
_SUMMARY = _COLUMNS.replace("inputs, schedule", "'{}' AS inputs, '{}' AS schedule")


def _record(row: asyncpg.Record) -> PlanRecord:
    d = dict(row)
    d["inputs"] = json.loads(d["inputs"])
    d["schedule"] = json.loads(d["schedule"])
    return PlanRecord(**d)


class PlanRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def add(self, plan: PlanRecord) -> int:
        plan_id = await self.pool.fetchval(
            f"INSERT INTO plans ({_COLUMNS}) VALUES ($1, $2, $3, $4, $5::jsonb, $6::jsonb, $7,"
            " $8, $9, $10, $11, $12, $13, $14, $15) RETURNING id",
            plan.site_id, plan.planned_at, plan.trigger, plan.sessions,
            json.dumps(plan.inputs), json.dumps(plan.schedule), plan.status, plan.iterations,
            plan.fallback_used, plan.fallback_reason, plan.solve_seconds, plan.build_seconds,
            plan.profiles_sent, plan.profiles_rejected, plan.profiles_failed,
        )
        return int(plan_id)

    async def latest(self, site_id: str) -> PlanRecord | None:
        row = await self.pool.fetchrow(
            f"SELECT id, {_COLUMNS} FROM plans WHERE site_id = $1"
            " ORDER BY planned_at DESC, id DESC LIMIT 1",
            site_id,
        )
        return _record(row) if row else None

    async def list(self, site_id: str, since: datetime | None = None,
                   limit: int = 100) -> list[PlanRecord]:
        """Newest first."""
        rows = await self.pool.fetch(
            f"SELECT id, {_COLUMNS} FROM plans WHERE site_id = $1"
            " AND ($2::timestamptz IS NULL OR planned_at >= $2)"
            " ORDER BY planned_at DESC, id DESC LIMIT $3",
            site_id, since, limit,
        )
        return [_record(r) for r in rows]

    async def totals(self, site_id: str, since: datetime | None = None) -> PlanTotals:
        row = await self.pool.fetchrow(
            "SELECT count(*) AS plans, count(*) FILTER (WHERE fallback_used) AS fallbacks,"
            " coalesce(sum(profiles_sent), 0) AS profiles_sent,"
            " coalesce(sum(profiles_rejected), 0) AS profiles_rejected,"
            " coalesce(sum(profiles_failed), 0) AS profiles_failed"
            " FROM plans WHERE site_id = $1 AND ($2::timestamptz IS NULL OR planned_at >= $2)",
            site_id, since,
        )
        assert row is not None
        return PlanTotals(**{k: int(v) for k, v in dict(row).items()})

    async def troubled(self, site_id: str, limit: int = 20) -> list[PlanRecord]:
        """The newest plans that fell back or whose profiles did not all land, newest
        first, without their inputs and schedules (an overview lists them often)."""
        rows = await self.pool.fetch(
            f"SELECT id, {_SUMMARY} FROM plans WHERE site_id = $1"
            " AND (fallback_used OR profiles_rejected > 0 OR profiles_failed > 0)"
            " ORDER BY planned_at DESC, id DESC LIMIT $2",
            site_id, limit,
        )
        return [_record(r) for r in rows]

    async def prune(self, before: datetime) -> int:
        """Delete plans made before `before` (every site); returns how many went."""
        status = await self.pool.execute("DELETE FROM plans WHERE planned_at < $1", before)
        return int(status.split()[-1])
