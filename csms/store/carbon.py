"""Emission factors, revenue shares and the revenue-split ledger (migrations/0016)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

import asyncpg


@dataclass(frozen=True)
class FactorInterval:
    start: datetime
    end: datetime
    kg_per_kwh: float


@dataclass(frozen=True)
class SessionRecord:
    """A transaction at a site's stations, as the ledger and carbon figures need it."""

    station_id: str
    transaction_id: str
    evse_id: int | None
    id_token: str | None
    started_at: datetime | None
    ended_at: datetime | None
    charge_now: bool


@dataclass(frozen=True)
class LedgerEntry:
    id: int
    portfolio_id: str
    programme: str
    site_id: str
    event_id: int | None  # the site event settled, or
    dispatch_id: int | None  # the portfolio dispatch settled
    settlement_seq: int
    party: str
    payee: str
    contribution_kwh: float | None
    amount: Decimal
    currency: str
    audit_seq: int
    recorded_at: datetime


class CarbonRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ------------------------------------------------------------ emission factors

    async def set_factors(self, site_id: str, intervals: list[FactorInterval], set_by: str,
                          now: datetime) -> None:
        """Replace what is stored over the span the intervals cover with them."""
        start, end = min(i.start for i in intervals), max(i.end for i in intervals)
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM emission_factors WHERE site_id = $1"
                               " AND starts_at < $3 AND ends_at > $2", site_id, start, end)
            await conn.executemany(
                "INSERT INTO emission_factors (site_id, starts_at, ends_at, kg_per_kwh,"
                " set_by, set_at) VALUES ($1, $2, $3, $4, $5, $6)",
                [(site_id, i.start, i.end, i.kg_per_kwh, set_by, now) for i in intervals])

    async def factors(self, site_id: str, since: datetime,
                      until: datetime) -> list[FactorInterval]:
        rows = await self.pool.fetch(
            "SELECT starts_at, ends_at, kg_per_kwh FROM emission_factors WHERE site_id = $1"
            " AND ends_at > $2 AND starts_at < $3 ORDER BY starts_at", site_id, since, until)
        return [FactorInterval(r["starts_at"], r["ends_at"], r["kg_per_kwh"]) for r in rows]

    # ------------------------------------------------------------ sessions

    async def sessions(self, station_ids: list[str], since: datetime,
                       until: datetime) -> list[SessionRecord]:
        """Transactions at these stations running at some time in [since, until)."""
        rows = await self.pool.fetch(
            "SELECT station_id, transaction_id, evse_id, id_token, started_at, ended_at,"
            " charge_now FROM transactions WHERE station_id = ANY($1)"
            " AND (started_at IS NULL OR started_at < $3)"
            " AND (ended_at IS NULL OR ended_at > $2) ORDER BY station_id, transaction_id",
            station_ids, since, until)
        return [SessionRecord(**dict(r)) for r in rows]

    async def session(self, station_id: str, transaction_id: str) -> SessionRecord | None:
        row = await self.pool.fetchrow(
            "SELECT station_id, transaction_id, evse_id, id_token, started_at, ended_at,"
            " charge_now FROM transactions WHERE station_id = $1 AND transaction_id = $2",
            station_id, transaction_id)
        return None if row is None else SessionRecord(**dict(row))

    async def session_samples(self, station_id: str, transaction_id: str,
                              until: datetime) -> list[tuple[datetime, float]]:
        """A transaction's Power.Active.Import samples (all phases), W, up to `until`."""
        rows = await self.pool.fetch(
            "SELECT ts, value FROM meter_values WHERE station_id = $1 AND transaction_id = $2"
            " AND measurand = 'Power.Active.Import' AND phase = '' AND ts < $3 ORDER BY ts",
            station_id, transaction_id, until)
        return [(r["ts"], float(r["value"])) for r in rows]

    # ------------------------------------------------------------ revenue shares

    async def set_shares(self, portfolio_id: str, programme: str, aggregator: float,
                         site_operator: float, drivers: float, set_by: str, now: datetime,
                         conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO revenue_shares (portfolio_id, programme, aggregator, site_operator,"
            " drivers, set_by, set_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (portfolio_id, programme) DO UPDATE SET aggregator = $3,"
            " site_operator = $4, drivers = $5, set_by = $6, set_at = $7",
            portfolio_id, programme, aggregator, site_operator, drivers, set_by, now)

    async def shares(self, portfolio_id: str,
                     programme: str) -> tuple[float, float, float] | None:
        """(aggregator, site operator, drivers) for the programme, else the portfolio's
        default (programme ''), else None."""
        row = await self.pool.fetchrow(
            "SELECT aggregator, site_operator, drivers FROM revenue_shares"
            " WHERE portfolio_id = $1 AND programme IN ($2, '')"
            " ORDER BY programme = $2 DESC LIMIT 1", portfolio_id, programme)
        return None if row is None else (row[0], row[1], row[2])

    # ------------------------------------------------------------ ledger

    async def has_ledger(self, portfolio_id: str, site_id: str, event_id: int) -> bool:
        return bool(await self.pool.fetchval(
            "SELECT 1 FROM ledger_entries WHERE portfolio_id = $1 AND site_id = $2"
            " AND event_id = $3 LIMIT 1", portfolio_id, site_id, event_id))

    async def add_entry(self, e: LedgerEntry, conn: asyncpg.Connection) -> int:
        return int(await conn.fetchval(
            "INSERT INTO ledger_entries (portfolio_id, programme, site_id, event_id,"
            " dispatch_id, settlement_seq, party, payee, contribution_kwh, amount, currency,"
            " audit_seq, recorded_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11,"
            " $12, $13) RETURNING id", e.portfolio_id, e.programme, e.site_id, e.event_id,
            e.dispatch_id, e.settlement_seq, e.party, e.payee, e.contribution_kwh, e.amount,
            e.currency, e.audit_seq, e.recorded_at))

    async def has_dispatch_ledger(self, portfolio_id: str, dispatch_id: int) -> bool:
        return await self.pool.fetchval(
            "SELECT 1 FROM ledger_entries WHERE portfolio_id = $1 AND dispatch_id = $2"
            " LIMIT 1", portfolio_id, dispatch_id) is not None

    async def ledger(self, portfolio_id: str, event_id: int | None = None,
                     dispatch_id: int | None = None, limit: int = 10_000
                     ) -> list[LedgerEntry]:
        rows = await self.pool.fetch(
            "SELECT * FROM ledger_entries WHERE portfolio_id = $1"
            " AND ($2::bigint IS NULL OR event_id = $2)"
            " AND ($3::bigint IS NULL OR dispatch_id = $3) ORDER BY id LIMIT $4",
            portfolio_id, event_id, dispatch_id, limit)
        return [LedgerEntry(**dict(r)) for r in rows]
