"""One customer's data (N09/N10 and the privacy duty behind them): what the CSMS holds about
an id token, exported or erased, and the CustomerInformation requests sent to stations.

Erasing keeps what billing and grid records need and drops what names the customer: each
of the customer's transactions keeps its station, EVSE, times, energy and meter values but
loses its id token (set to null), the stored TransactionEvent payloads lose their `idToken`,
and the token itself is deleted from `id_tokens` (it can no longer charge). Earlier
customer-information requests about the same token, and the exports they hold, are deleted
too; a vehicle with V2G terms loses its link to the token; the clearing request itself
keeps only the token's SHA-256. See
docs/decisions/0016-customer-data.md.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


def subject_hash(id_token: str | None, token_type: str | None,
                 customer_identifier: str | None) -> str:
    """A stable name for the customer that does not reveal the token."""
    text = f"{token_type or ''}:{id_token or ''}:{customer_identifier or ''}"
    return hashlib.sha256(text.encode()).hexdigest()


@dataclass(frozen=True)
class StationPart:
    station_id: str
    reply_status: str | None
    reply_reason: str | None
    data: str  # the NotifyCustomerInformation parts joined in seqNo order
    complete: bool
    updated_at: datetime


@dataclass(frozen=True)
class CustomerRequest:
    id: int
    request_id: int
    subject_hash: str
    id_token: str | None
    token_type: str | None
    customer_identifier: str | None
    report: bool
    clear: bool
    csms_export: dict[str, Any] | None
    csms_cleared: dict[str, int] | None
    created_by: str
    created_at: datetime
    stations: list[StationPart]


def _joined(chunks: dict[str, str]) -> str:
    return "".join(chunks[k] for k in sorted(chunks, key=int))


class CustomerRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def export(self, id_token: str, token_type: str) -> dict[str, Any]:
        """Everything the CSMS holds that names this token."""
        token = await self.pool.fetchrow(
            "SELECT id_token, type, status, group_id, expires_at, created_at FROM id_tokens"
            " WHERE id_token = $1 AND type = $2", id_token, token_type)
        rows = await self.pool.fetch(
            "SELECT station_id, transaction_id, evse_id, started_at, ended_at, energy_wh,"
            " stopped_reason FROM transactions WHERE id_token = $1 AND token_type = $2"
            " ORDER BY started_at NULLS LAST", id_token, token_type)

        def plain(record: asyncpg.Record) -> dict[str, Any]:
            return {k: v.isoformat() if isinstance(v, datetime) else v
                    for k, v in dict(record).items()}

        vehicles = await self.pool.fetch(  # V2G terms (issue 15); the token names it
            "SELECT id, battery_kwh, v2g_opted_in, v2g_mode, min_soc, compensation_per_kwh,"
            " updated_at FROM vehicles WHERE id_token = $1", id_token)
        return {"id_token": None if token is None else plain(token),
                "transactions": [plain(r) for r in rows],
                "vehicles": [plain(r) for r in vehicles]}

    async def erase(self, id_token: str, token_type: str) -> dict[str, int]:
        """Anonymise this token's data in one transaction; counts of what changed."""
        async with self.pool.acquire() as conn, conn.transaction():
            events = await conn.execute(
                "UPDATE transaction_events SET payload = payload - 'idToken'"
                " WHERE payload->'idToken'->>'idToken' = $1"
                " AND payload->'idToken'->>'type' = $2", id_token, token_type)
            transactions = await conn.execute(
                "UPDATE transactions SET id_token = NULL, token_type = NULL"
                " WHERE id_token = $1 AND token_type = $2", id_token, token_type)
            tokens = await conn.execute(
                "DELETE FROM id_tokens WHERE id_token = $1 AND type = $2", id_token, token_type)
            requests = await conn.execute(
                "DELETE FROM customer_requests WHERE id_token = $1 AND token_type = $2",
                id_token, token_type)
            reservations = await conn.execute(
                "DELETE FROM reservations WHERE id_token = $1 AND token_type = $2",
                id_token, token_type)
            vehicles = await conn.execute(  # the vehicle stays, no longer the customer's
                "UPDATE vehicles SET id_token = NULL WHERE id_token = $1", id_token)
            await conn.execute(  # others' reservations keep their own token only
                "UPDATE reservations SET group_id_token = NULL, group_token_type = NULL"
                " WHERE group_id_token = $1 AND group_token_type = $2", id_token, token_type)
        return {"transactions_anonymised": _count(transactions),
                "transaction_events_anonymised": _count(events),
                "id_tokens_deleted": _count(tokens),
                "earlier_requests_deleted": _count(requests),
                "reservations_deleted": _count(reservations),
                "vehicles_unlinked": _count(vehicles)}

    async def add(
        self, *, request_id: int, id_token: str | None, token_type: str | None,
        customer_identifier: str | None, report: bool, clear: bool,
        csms_export: dict[str, Any] | None, csms_cleared: dict[str, int] | None,
        station_ids: list[str], created_by: str, now: datetime,
    ) -> int:
        keep = not clear  # a clearing request keeps no copy of who it was about
        async with self.pool.acquire() as conn, conn.transaction():
            row_id: int = await conn.fetchval(
                "INSERT INTO customer_requests (subject_hash, id_token, token_type,"
                " customer_identifier, report, clear, csms_export, csms_cleared, created_by,"
                " created_at, request_id) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8::jsonb,"
                " $9, $10, $11) RETURNING id",
                subject_hash(id_token, token_type, customer_identifier),
                id_token if keep else None, token_type if keep else None,
                customer_identifier if keep else None, report, clear,
                None if csms_export is None else json.dumps(csms_export),
                None if csms_cleared is None else json.dumps(csms_cleared),
                created_by, now, request_id)
            await conn.executemany(
                "INSERT INTO customer_request_stations (customer_request_id, station_id,"
                " updated_at) VALUES ($1, $2, $3)", [(row_id, sid, now) for sid in station_ids])
        return row_id

    async def set_reply(self, customer_request_id: int, station_id: str, status: str | None,
                        reason: str | None, now: datetime) -> None:
        """The station's CustomerInformation answer; only Accepted is followed by data."""
        await self.pool.execute(
            "UPDATE customer_request_stations SET reply_status = $3, reply_reason = $4,"
            " complete = complete OR $3 IS DISTINCT FROM 'Accepted', updated_at = $5"
            " WHERE customer_request_id = $1 AND station_id = $2",
            customer_request_id, station_id, status, reason, now)

    async def add_part(self, station_id: str, request_id: int, seq_no: int, data: str,
                       tbc: bool, now: datetime) -> bool:
        """A NotifyCustomerInformation part, filed under the newest request to this station
        with that requestId (a repeated seqNo replaces its text)."""
        result = await self.pool.execute(
            "UPDATE customer_request_stations SET"
            " chunks = chunks || jsonb_build_object($3::text, $4::text),"
            " complete = NOT $5, updated_at = $6 WHERE station_id = $1"
            " AND customer_request_id = (SELECT s.customer_request_id"
            " FROM customer_request_stations s JOIN customer_requests r"
            " ON r.id = s.customer_request_id WHERE s.station_id = $1 AND r.request_id = $2"
            " ORDER BY r.id DESC LIMIT 1)",
            station_id, request_id, str(seq_no), data, tbc, now)
        return _count(result) == 1

    async def get(self, request_id: int) -> CustomerRequest | None:
        row = await self.pool.fetchrow(
            "SELECT * FROM customer_requests WHERE id = $1", request_id)
        if row is None:
            return None
        parts = await self.pool.fetch(
            "SELECT station_id, reply_status, reply_reason, chunks, complete, updated_at"
            " FROM customer_request_stations WHERE customer_request_id = $1"
            " ORDER BY station_id",
            request_id)
        data = dict(row)
        for name in ("csms_export", "csms_cleared"):
            data[name] = None if data[name] is None else json.loads(data[name])
        stations = [StationPart(p["station_id"], p["reply_status"], p["reply_reason"],
                                _joined(json.loads(p["chunks"])), p["complete"],
                                p["updated_at"]) for p in parts]
        return CustomerRequest(**data, stations=stations)

    async def delete(self, request_id: int) -> bool:
        result = await self.pool.execute(
            "DELETE FROM customer_requests WHERE id = $1", request_id)
        return _count(result) == 1


def _count(status: str) -> int:
    return int(status.split()[-1])
