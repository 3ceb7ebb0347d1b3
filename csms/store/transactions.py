"""Transactions and their events.

An event is applied once: (station, transactionId, seqNo) is its key. Totals use the lowest
and highest energy register readings seen, so late, out-of-order or replayed events all
converge to the same numbers.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from csms.store.batch import GroupCommit
from csms.store.meter import MeterRow, insert_rows


@dataclass(frozen=True)
class TransactionEventRecord:
    transaction_id: str
    seq_no: int
    event_type: str  # Started | Updated | Ended
    trigger_reason: str
    timestamp: datetime
    offline: bool
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    token_type: str | None
    charging_state: str | None
    stopped_reason: str | None
    energy_min_wh: float | None
    energy_max_wh: float | None
    payload: dict[str, Any]


@dataclass(frozen=True)
class Transaction:
    station_id: str
    transaction_id: str
    evse_id: int | None
    connector_id: int | None
    id_token: str | None
    token_type: str | None
    started_at: datetime | None
    ended_at: datetime | None
    charging_state: str | None
    stopped_reason: str | None
    meter_start_wh: float | None
    meter_stop_wh: float | None
    energy_wh: float | None
    max_seq_no: int
    event_count: int
    offline_events: int
    departure_time: datetime | None
    energy_wanted_wh: float | None
    charge_now: bool = False  # the driver opted out of ordered charging
    needs_source: str | None = None  # "ev" (ISO 15118) or "api" (driver, app)
    needs_updated_at: datetime | None = None


@dataclass(frozen=True)
class MeterValue:
    ts: datetime
    evse_id: int
    measurand: str
    phase: str
    location: str
    context: str | None
    value: float
    unit: str | None


_COLUMNS = (
    "station_id, transaction_id, evse_id, connector_id, id_token, token_type, started_at,"
    " ended_at, charging_state, stopped_reason, meter_start_wh, meter_stop_wh, energy_wh,"
    " max_seq_no, event_count, offline_events, departure_time, energy_wanted_wh, charge_now,"
    " needs_source, needs_updated_at"
)

_UPSERT = """
INSERT INTO transactions (station_id, transaction_id, evse_id, connector_id, id_token,
    token_type, started_at, ended_at, charging_state, stopped_reason, meter_start_wh,
    meter_stop_wh, max_seq_no, event_count, offline_events, updated_at)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, 1, $14, $15)
ON CONFLICT (station_id, transaction_id) DO UPDATE SET
    evse_id = COALESCE(transactions.evse_id, EXCLUDED.evse_id),
    connector_id = COALESCE(transactions.connector_id, EXCLUDED.connector_id),
    id_token = COALESCE(EXCLUDED.id_token, transactions.id_token),
    token_type = COALESCE(EXCLUDED.token_type, transactions.token_type),
    started_at = LEAST(transactions.started_at, EXCLUDED.started_at),
    ended_at = COALESCE(transactions.ended_at, EXCLUDED.ended_at),
    charging_state = CASE WHEN EXCLUDED.max_seq_no >= transactions.max_seq_no
        THEN COALESCE(EXCLUDED.charging_state, transactions.charging_state)
        ELSE COALESCE(transactions.charging_state, EXCLUDED.charging_state) END,
    stopped_reason = COALESCE(transactions.stopped_reason, EXCLUDED.stopped_reason),
    meter_start_wh = LEAST(transactions.meter_start_wh, EXCLUDED.meter_start_wh),
    meter_stop_wh = GREATEST(transactions.meter_stop_wh, EXCLUDED.meter_stop_wh),
    max_seq_no = GREATEST(transactions.max_seq_no, EXCLUDED.max_seq_no),
    event_count = transactions.event_count + 1,
    offline_events = transactions.offline_events + EXCLUDED.offline_events,
    updated_at = EXCLUDED.updated_at
"""


_INSERT_EVENTS = """
INSERT INTO transaction_events (station_id, transaction_id, seq_no, event_type,
    trigger_reason, ts, offline, received_at, payload)
SELECT s, t, q, e, r, ts, o, at, p::jsonb FROM unnest($1::text[], $2::text[], $3::int[],
    $4::text[], $5::text[], $6::timestamptz[], $7::bool[], $8::timestamptz[], $9::text[])
    AS u(s, t, q, e, r, ts, o, at, p)
ON CONFLICT DO NOTHING RETURNING station_id, transaction_id, seq_no
"""


@dataclass
class _Pending:
    """One handler's event, waiting for its batch; `applied` once the batch committed."""

    station_id: str
    event: TransactionEventRecord
    now: datetime
    rows: list[MeterRow]
    applied: bool = False

    @property
    def key(self) -> tuple[str, str, int]:
        return self.station_id, self.event.transaction_id, self.event.seq_no


class TransactionRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        # a TransactionEvent is the most frequent message: one database transaction and
        # commit per batch, not per event (about 5 round trips and a WAL flush each)
        self._events: GroupCommit[_Pending] = GroupCommit(
            self._write_events, "transaction-events", max_batch=2_000)

    async def close(self) -> None:
        await self._events.close()

    async def record_event(
        self, station_id: str, event: TransactionEventRecord, now: datetime,
        meter_rows: list[MeterRow] | None = None,
    ) -> bool:
        """Apply one TransactionEvent and its meter values in one database transaction, so
        it is stored whole or not at all. False when it was already applied: a replayed
        seqNo changes nothing, its meter values included. The events of other stations
        that arrive meanwhile share the transaction (group commit, csms/store/batch.py):
        one whose data PostgreSQL refuses is retried apart and fails alone."""
        pending = _Pending(station_id, event, now, meter_rows or [])
        await self._events.write([pending])
        return pending.applied

    async def _write_events(self, batch: list[_Pending]) -> None:
        applied: list[_Pending] = []
        async with self.pool.acquire() as conn, conn.transaction():
            for part in _rounds(batch):
                applied += await _apply(conn, part)
        for pending in applied:  # only now: a batch that failed is retried in parts
            pending.applied = True

    async def past_stays(self, station_ids: list[str], since: datetime,
                         limit: int = 10_000) -> list[tuple[datetime, datetime, datetime]]:
        """(started, departure the driver gave, ended) of these stations' transactions
        that ended since `since` with a departure given, newest first: how drivers really
        leave (csms/scheduling/departures.py)."""
        rows = await self.pool.fetch(
            "SELECT started_at, departure_time, ended_at FROM transactions"
            " WHERE station_id = ANY($1) AND ended_at >= $2 AND started_at IS NOT NULL"
            " AND departure_time IS NOT NULL ORDER BY ended_at DESC LIMIT $3",
            station_ids, since, limit)
        return [(r["started_at"], r["departure_time"], r["ended_at"]) for r in rows]

    async def past_stays_of(self, station_ids: list[str], since: datetime, tokens: list[str],
                            limit: int = 10_000
                            ) -> list[tuple[str, datetime, datetime, datetime]]:
        """As `past_stays`, only those of these id tokens, each with its token: how each of
        these drivers really leaves."""
        rows = await self.pool.fetch(
            "SELECT id_token, started_at, departure_time, ended_at FROM transactions"
            " WHERE station_id = ANY($1) AND ended_at >= $2 AND started_at IS NOT NULL"
            " AND departure_time IS NOT NULL AND id_token = ANY($3)"
            " ORDER BY ended_at DESC LIMIT $4", station_ids, since, tokens, limit)
        return [(r["id_token"], r["started_at"], r["departure_time"], r["ended_at"])
                for r in rows]

    async def get(self, station_id: str, transaction_id: str) -> Transaction | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM transactions WHERE station_id = $1 AND transaction_id = $2",
            station_id, transaction_id,
        )
        return Transaction(**dict(row)) if row else None

    async def active_on_evse(self, station_id: str, evse_id: int) -> Transaction | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM transactions WHERE station_id = $1 AND evse_id = $2"
            " AND ended_at IS NULL ORDER BY started_at DESC NULLS LAST LIMIT 1",
            station_id, evse_id,
        )
        return Transaction(**dict(row)) if row else None

    async def list(
        self, station_id: str | None = None, active: bool | None = None, limit: int = 100,
        *, id_token: str | None = None, since: datetime | None = None,
        until: datetime | None = None,
    ) -> list[Transaction]:
        """Newest first. since/until select transactions that overlap that time range."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM transactions WHERE ($1::text IS NULL OR station_id = $1)"
            " AND ($2::bool IS NULL OR (ended_at IS NULL) = $2)"
            " AND ($4::text IS NULL OR id_token = $4)"
            " AND ($5::timestamptz IS NULL OR ended_at IS NULL OR ended_at >= $5)"
            " AND ($6::timestamptz IS NULL OR started_at < $6)"
            " ORDER BY started_at DESC NULLS LAST LIMIT $3",
            station_id, active, limit, id_token, since, until,
        )
        return [Transaction(**dict(r)) for r in rows]

    async def meter_values(
        self, station_id: str, transaction_id: str, limit: int = 10_000
    ) -> list[MeterValue]:
        rows = await self.pool.fetch(
            "SELECT ts, evse_id, measurand, phase, location, context, value, unit"
            " FROM meter_values WHERE station_id = $1 AND transaction_id = $2"
            " ORDER BY ts, measurand, phase, location LIMIT $3",
            station_id, transaction_id, limit,
        )
        return [MeterValue(**dict(r)) for r in rows]

    async def set_driver_needs(
        self, station_id: str, transaction_id: str, *, departure_time: datetime | None,
        energy_wanted_wh: float | None, charge_now: bool, now: datetime,
    ) -> Transaction | None:
        """Needs a driver or an app states for a running transaction; None when it is not
        running. A field left out keeps its value, so a driver may change one at a time."""
        row = await self.pool.fetchrow(
            "UPDATE transactions SET departure_time = COALESCE($3, departure_time),"
            " energy_wanted_wh = COALESCE($4, energy_wanted_wh), charge_now = $5,"
            " needs_source = 'api', needs_updated_at = $6, updated_at = $6"
            " WHERE station_id = $1 AND transaction_id = $2 AND ended_at IS NULL"
            f" RETURNING {_COLUMNS}",
            station_id, transaction_id, departure_time, energy_wanted_wh, charge_now, now,
        )
        return Transaction(**dict(row)) if row else None

    async def set_needs(
        self,
        station_id: str,
        evse_id: int,
        *,
        departure_time: datetime | None,
        energy_amount_wh: float | None,
        transfer_mode: str | None,
        payload: dict[str, Any],
        now: datetime,
    ) -> str | None:
        """Store charging needs and attach them to the EVSE's running transaction, if any."""
        async with self.pool.acquire() as conn, conn.transaction():
            transaction_id = await conn.fetchval(
                "UPDATE transactions SET departure_time = COALESCE($3, departure_time),"
                " energy_wanted_wh = COALESCE($4, energy_wanted_wh), needs_source = 'ev',"
                " needs_updated_at = $5, updated_at = $5"
                " WHERE station_id = $1 AND evse_id = $2 AND ended_at IS NULL"
                " RETURNING transaction_id",
                station_id, evse_id, departure_time, energy_amount_wh, now,
            )
            await conn.execute(
                "INSERT INTO ev_charging_needs (station_id, evse_id, transaction_id,"
                " received_at, departure_time, energy_amount_wh, transfer_mode, payload)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8::jsonb)",
                station_id, evse_id, transaction_id, now, departure_time, energy_amount_wh,
                transfer_mode, json.dumps(payload),
            )
            return transaction_id


def _rounds(batch: list[_Pending]) -> list[list[_Pending]]:
    """The batch in rounds with one event per transaction each, in arrival order: a
    statement may not update one transactions row twice, and an event must see the one
    before it applied (a station that sends without waiting for answers)."""
    rounds: list[list[_Pending]] = []
    seen: dict[tuple[str, str], int] = {}
    for pending in batch:
        key = (pending.station_id, pending.event.transaction_id)
        depth = seen.get(key, 0)
        seen[key] = depth + 1
        if depth == len(rounds):
            rounds.append([])
        rounds[depth].append(pending)
    return rounds


async def _apply(conn: asyncpg.Connection, part: list[_Pending]) -> list[_Pending]:
    """One round: its events, and for those not seen before (returned) their meter
    values and transactions (in key order: two writers lock rows in the same order)."""
    inserted = await conn.fetch(
        _INSERT_EVENTS, [p.station_id for p in part],
        [p.event.transaction_id for p in part], [p.event.seq_no for p in part],
        [p.event.event_type for p in part], [p.event.trigger_reason for p in part],
        [p.event.timestamp for p in part], [p.event.offline for p in part],
        [p.now for p in part], [json.dumps(p.event.payload) for p in part])
    keys = {(r["station_id"], r["transaction_id"], r["seq_no"]) for r in inserted}
    fresh = sorted((p for p in part if p.key in keys), key=lambda p: p.key)
    if fresh:
        await insert_rows(conn, [row for p in fresh for row in p.rows])
        await conn.executemany(_UPSERT, [_upsert_args(p) for p in fresh])
    return fresh


def _upsert_args(p: _Pending) -> tuple[Any, ...]:
    e = p.event
    ended = e.event_type == "Ended"
    return (p.station_id, e.transaction_id, e.evse_id, e.connector_id, e.id_token,
            e.token_type, e.timestamp, e.timestamp if ended else None, e.charging_state,
            (e.stopped_reason or "Local") if ended else None, e.energy_min_wh,
            e.energy_max_wh, e.seq_no, 1 if e.offline else 0, p.now)
