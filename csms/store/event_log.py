"""The event log: what went wrong or happened at the stations, gathered read-only from the
tables that already keep it, in one list by time (the dashboard's errors-and-events page
and `GET /api/event-log`).

Nothing is written here. Each kind is a SELECT over its own table, and the kinds are one
UNION ALL, so filtering, ordering and paging happen in the database:

- `profile` / `call`: a TxProfile the station rejected (with its reasonCode, e.g.
  TxNotFound) or that got no answer (offline, CALLERROR, timeout), per EVSE, from the
  stored plans' schedule entries;
- `non-compliance`: an EVSE that drew clearly more than the TxProfile the CSMS had sent it:
  its Power.Active.Import samples against the setpoints of the newest plan that sent that
  EVSE a profile (it holds until the next one is sent, the transaction ends or the plan's
  horizon ends), ignoring samples in the first `grace_s` after a profile was sent;
- `security` (A04), `alert` (NotifyEvent), `firmware` (failed updates), `fault` (a
  connector Faulted now, since whenever), `boot` and `disconnect` (the newest of each: the stations
  table keeps no history), `plan` (the engine fell back).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

KINDS = ("profile", "call", "non-compliance", "security", "alert", "firmware", "fault",
         "boot", "disconnect", "plan")
# An EVSE is non-compliant when it draws more than limit x FACTOR + margin (the same test
# the scheduler logs live: csms_non_compliance_total).
NON_COMPLIANCE_FACTOR = 1.1
NON_COMPLIANCE_MARGIN_W = 500.0
NON_COMPLIANCE_GRACE_S = 120.0


@dataclass(frozen=True)
class LoggedEvent:
    at: datetime
    kind: str  # one of KINDS
    station_id: str | None
    evse_id: int | None
    reason: str  # the station's or the CSMS's own word: TxNotFound, PowerLoss, ...
    detail: dict[str, Any]  # what else the row says, by kind (numbers for the message)
    site_id: str | None = None


# The site EVSE's station and OCPP EVSE id, from the plan's session summaries.
_SESSION = (
    " LEFT JOIN LATERAL (SELECT x AS s FROM jsonb_array_elements(p.inputs->'sessions') x"
    " WHERE x->>'evse_id' = e.key LIMIT 1) ses ON true")

_PROFILES = f"""
SELECT p.planned_at AS at,
       CASE WHEN e.value->>'profile' = 'failed' THEN 'call' ELSE 'profile' END AS kind,
       ses.s->>'station_id' AS station_id, (ses.s->>'ocpp_evse_id')::int AS evse_id,
       CASE WHEN e.value->>'profile' LIKE 'rejected: %'
            THEN substr(e.value->>'profile', 11) ELSE e.value->>'profile' END AS reason,
       jsonb_build_object('transaction_id', e.value->>'transaction_id', 'plan_id', p.id,
                          'evse', e.key, 'outcome', split_part(e.value->>'profile', ':', 1))
         AS detail,
       p.site_id
FROM plans p CROSS JOIN LATERAL jsonb_each(p.schedule) e {_SESSION}
WHERE (p.profiles_rejected > 0 OR p.profiles_failed > 0)
  AND p.planned_at >= $1 AND p.planned_at < $2
  AND (e.value->>'profile' LIKE 'rejected%' OR e.value->>'profile' IN ('failed', 'unsupported'))
"""

# Each sent TxProfile, in force from when it was sent until the next one sent to that EVSE,
# its transaction's end, or the plan's last slot; the samples drawn meanwhile against the
# setpoint of that time; one row per profile whose EVSE drew too much.
_NON_COMPLIANCE = f"""
SELECT max(v.ts) AS at, 'non-compliance' AS kind, v.station_id, v.evse_id,
       'over limit' AS reason,
       jsonb_build_object(
         'from', min(v.ts), 'samples', count(*), 'transaction_id', v.transaction_id,
         'plan_id', v.plan_id,
         'power_w', (array_agg(v.power_w ORDER BY v.power_w - v.limit_w DESC))[1],
         'limit_w', (array_agg(v.limit_w ORDER BY v.power_w - v.limit_w DESC))[1]) AS detail,
       v.site_id
FROM (
  SELECT sent.*, m.ts, m.value AS power_w,
         (SELECT (sp->>2)::float8 FROM jsonb_array_elements(sent.setpoints) sp
          WHERE sent.t0 + make_interval(secs => (sp->>0)::float8) <= m.ts
          ORDER BY (sp->>0)::float8 DESC LIMIT 1) AS limit_w
  FROM (
    SELECT p.id AS plan_id, p.site_id, p.planned_at, e.key AS evse,
           ses.s->>'station_id' AS station_id, (ses.s->>'ocpp_evse_id')::int AS evse_id,
           e.value->>'transaction_id' AS transaction_id, e.value->'setpoints' AS setpoints,
           (p.inputs->>'now')::timestamptz AS t0,
           (p.inputs->'slot_starts'->>-1)::timestamptz AS horizon_end,
           lead(p.planned_at) OVER (PARTITION BY p.site_id, e.key
                                    ORDER BY p.planned_at, p.id) AS next_at
    FROM plans p CROSS JOIN LATERAL jsonb_each(p.schedule) e {_SESSION}
    WHERE p.profiles_sent > 0 AND e.value->>'profile' = 'sent' AND p.planned_at < $2
      AND p.planned_at >= $1 - interval '2 days'
  ) sent
  LEFT JOIN transactions t
    ON t.station_id = sent.station_id AND t.transaction_id = sent.transaction_id
  JOIN meter_values m
    ON m.station_id = sent.station_id AND m.evse_id = sent.evse_id
   AND m.measurand = 'Power.Active.Import' AND m.phase = ''
   AND m.ts >= greatest(sent.planned_at + make_interval(secs => $6), $1)
   AND m.ts < least(coalesce(sent.next_at, 'infinity'), coalesce(t.ended_at, 'infinity'),
                    sent.horizon_end, $2)
) v
WHERE v.limit_w IS NOT NULL AND v.power_w > v.limit_w * $7 + $5
GROUP BY v.plan_id, v.site_id, v.station_id, v.evse_id, v.transaction_id
"""

_OTHERS = """
SELECT occurred_at AS at, 'security' AS kind, station_id, NULL::int AS evse_id,
       type AS reason, jsonb_build_object('tech_info', tech_info, 'critical', critical) AS detail,
       NULL::text AS site_id
FROM security_events WHERE occurred_at >= $1 AND occurred_at < $2
UNION ALL
SELECT ts, 'alert', station_id, evse_id, component || '.' || variable,
       jsonb_build_object('value', actual_value, 'trigger', trigger, 'tech_code', tech_code,
                          'tech_info', tech_info, 'cleared', cleared, 'severity', severity),
       NULL
FROM alerts WHERE ts >= $1 AND ts < $2
UNION ALL
SELECT updated_at, 'firmware', station_id, NULL, status,
       jsonb_build_object('reply_reason', reply_reason, 'location', location), NULL
FROM firmware_updates WHERE outcome = 'failed' AND updated_at >= $1 AND updated_at < $2
UNION ALL
SELECT updated_at, 'fault', station_id, evse_id, status,
       jsonb_build_object('connector', connector_id), NULL
FROM connectors WHERE status = 'Faulted' AND updated_at < $2  -- faulted now, however long
UNION ALL
SELECT last_boot_at, 'boot', id, NULL, coalesce(boot_reason, 'Unknown'),
       jsonb_build_object('status', boot_status), NULL
FROM stations WHERE last_boot_at >= $1 AND last_boot_at < $2
UNION ALL
SELECT disconnected_at, 'disconnect', id, NULL, 'disconnected', '{}'::jsonb, NULL
FROM stations WHERE disconnected_at >= $1 AND disconnected_at < $2
UNION ALL
SELECT planned_at, 'plan', NULL, NULL, coalesce(fallback_reason, 'fallback'),
       jsonb_build_object('plan_id', id), site_id
FROM plans WHERE fallback_used AND planned_at >= $1 AND planned_at < $2
"""

_ALL = f"({_PROFILES}) UNION ALL ({_NON_COMPLIANCE}) UNION ALL {_OTHERS}"
# $3: station id or null, $4: kinds or null
_WHERE = " WHERE ($3::text IS NULL OR station_id = $3) AND ($4::text[] IS NULL OR kind = ANY($4))"


class EventLogRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def list(self, since: datetime, until: datetime, *, station_id: str | None = None,
                   kinds: list[str] | None = None, limit: int = 50, offset: int = 0,
                   margin_w: float = NON_COMPLIANCE_MARGIN_W,
                   grace_s: float = NON_COMPLIANCE_GRACE_S,
                   count: bool = True) -> tuple[list[LoggedEvent], int | None]:
        """Events in [since, until), newest first, and how many match in all (None
        without `count`: a second pass over the same rows that a short list skips)."""
        args = (since, until, station_id, kinds or None, margin_w, grace_s,
                NON_COMPLIANCE_FACTOR)
        async with self.pool.acquire() as conn, conn.transaction(readonly=True):
            rows = await conn.fetch(
                f"SELECT * FROM ({_ALL}) ev {_WHERE}"
                " ORDER BY at DESC, kind, station_id, evse_id LIMIT $8 OFFSET $9",
                *args, limit, offset)
            total = await conn.fetchval(f"SELECT count(*) FROM ({_ALL}) ev {_WHERE}", *args) \
                if count else None
        return [LoggedEvent(r["at"], r["kind"], r["station_id"], r["evse_id"], r["reason"],
                            json.loads(r["detail"]), r["site_id"]) for r in rows], \
            None if total is None else int(total)
