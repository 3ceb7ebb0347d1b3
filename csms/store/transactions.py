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


class TransactionRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def record_event(
        self, station_id: str, event: TransactionEventRecord, now: datetime,
        meter_rows: list[MeterRow] | None = None,
    ) -> bool:
        """Apply one TransactionEvent and its meter values in one database transaction, so
        it is stored whole or not at all. False when it was already applied: a replayed
        seqNo changes nothing, its meter values included."""
        async with self.pool.acquire() as conn, conn.transaction():
            inserted = await conn.fetchval(
                "INSERT INTO transaction_events (station_id, transaction_id, seq_no, event_type,"
                " trigger_reason, ts, offline, received_at, payload)"
                " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9::jsonb)"
                " ON CONFLICT DO NOTHING RETURNING 1",
                station_id, event.transaction_id, event.seq_no, event.event_type,
                event.trigger_reason, event.timestamp, event.offline, now,
                json.dumps(event.payload),
            )
            if not inserted:
                return False
            await insert_rows(conn, meter_rows or [])
            await conn.execute(
                _UPSERT,
                station_id, event.transaction_id, event.evse_id, event.connector_id,
                event.id_token, event.token_type, event.timestamp,
                event.timestamp if event.event_type == "Ended" else None,
                event.charging_state,
                (event.stopped_reason or "Local") if event.event_type == "Ended" else None,
                event.energy_min_wh, event.energy_max_wh, event.seq_no,
                1 if event.offline else 0, now,
            )
            return True

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
