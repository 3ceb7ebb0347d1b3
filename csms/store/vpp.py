"""Invitations, offers and dispatches of the VPP (see migrations/0015_vpp.sql)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg


@dataclass(frozen=True)
class StoredInvitation:
    id: int
    portfolio_id: str
    programme: str
    direction: str
    start: datetime
    end: datetime
    requested_kw: float
    price_per_kwh: float
    answer_by: datetime
    reference: str | None
    offer: dict[str, Any]
    created_by: str
    created_at: datetime
    dispatch_id: int | None = None


@dataclass(frozen=True)
class StoredDispatch:
    id: int
    invitation_id: int
    portfolio_id: str
    direction: str
    start: datetime
    end: datetime
    committed_kw: float
    first_shares: dict[str, float]
    shares: dict[str, float]
    accepted_by: str
    accepted_at: datetime


_INV = ("i.id, i.portfolio_id, i.programme, i.direction, i.starts_at AS start,"
        " i.ends_at AS \"end\", i.requested_kw, i.price_per_kwh, i.answer_by, i.reference,"
        " i.offer, i.created_by, i.created_at, d.id AS dispatch_id")
_DIS = ("id, invitation_id, portfolio_id, direction, starts_at AS start, ends_at AS \"end\","
        " committed_kw, first_shares, shares, accepted_by, accepted_at")


def _invitation(row: asyncpg.Record) -> StoredInvitation:
    return StoredInvitation(**{**dict(row), "offer": json.loads(row["offer"])})


def _dispatch(row: asyncpg.Record) -> StoredDispatch:
    return StoredDispatch(**{**dict(row), "shares": json.loads(row["shares"]),
                             "first_shares": json.loads(row["first_shares"])})


class VppRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def past_sessions(self, station_ids: list[str], since: datetime,
                            until: datetime) -> list[asyncpg.Record]:
        """Finished transactions of these stations that started in [since, until): start,
        end, energy and whether the driver opted out; no driver data."""
        return list(await self.pool.fetch(
            "SELECT started_at, ended_at, energy_wh, charge_now FROM transactions"
            " WHERE station_id = ANY($1) AND started_at >= $2 AND started_at < $3"
            " AND ended_at IS NOT NULL AND ended_at > started_at", station_ids, since, until))

    async def add_invitation(self, portfolio_id: str, programme: str, direction: str,
                             start: datetime, end: datetime, requested_kw: float,
                             price_per_kwh: float, answer_by: datetime, reference: str | None,
                             offer: dict[str, Any], created_by: str,
                             now: datetime) -> StoredInvitation:
        row = await self.pool.fetchrow(
            "INSERT INTO vpp_invitations (portfolio_id, programme, direction, starts_at,"
            " ends_at, requested_kw, price_per_kwh, answer_by, reference, offer, created_by,"
            " created_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10::jsonb, $11, $12)"
            " RETURNING id", portfolio_id, programme, direction, start, end, requested_kw,
            price_per_kwh, answer_by, reference, json.dumps(offer), created_by, now)
        found = await self.invitation(portfolio_id, int(row["id"]))
        assert found is not None
        return found

    async def invitation(self, portfolio_id: str, invitation_id: int,
                         conn: asyncpg.Connection | None = None) -> StoredInvitation | None:
        row = await (conn or self.pool).fetchrow(
            f"SELECT {_INV} FROM vpp_invitations i LEFT JOIN vpp_dispatches d"
            " ON d.invitation_id = i.id WHERE i.portfolio_id = $1 AND i.id = $2",
            portfolio_id, invitation_id)
        return _invitation(row) if row else None

    async def invitations(self, portfolio_id: str, limit: int = 100) -> list[StoredInvitation]:
        rows = await self.pool.fetch(
            f"SELECT {_INV} FROM vpp_invitations i LEFT JOIN vpp_dispatches d"
            " ON d.invitation_id = i.id WHERE i.portfolio_id = $1"
            " ORDER BY i.starts_at DESC, i.id DESC LIMIT $2", portfolio_id, limit)
        return [_invitation(r) for r in rows]

    async def add_dispatch(self, inv: StoredInvitation, committed_kw: float,
                           shares: dict[str, float], accepted_by: str, now: datetime,
                           conn: asyncpg.Connection) -> StoredDispatch | None:
        """None when the invitation was accepted already (one dispatch per invitation)."""
        row = await conn.fetchrow(
            "INSERT INTO vpp_dispatches (invitation_id, portfolio_id, direction, starts_at,"
            " ends_at, committed_kw, first_shares, shares, accepted_by, accepted_at)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $7::jsonb, $8, $9)"
            f" ON CONFLICT (invitation_id) DO NOTHING RETURNING {_DIS}",
            inv.id, inv.portfolio_id, inv.direction, inv.start, inv.end, committed_kw,
            json.dumps(shares), accepted_by, now)
        return _dispatch(row) if row else None

    async def link_event(self, dispatch_id: int, member: str, event_id: int,
                         conn: asyncpg.Connection) -> None:
        await conn.execute("INSERT INTO vpp_dispatch_events (dispatch_id, member, event_id)"
                           " VALUES ($1, $2, $3)", dispatch_id, member, event_id)

    async def dispatch(self, portfolio_id: str, dispatch_id: int) -> StoredDispatch | None:
        row = await self.pool.fetchrow(
            f"SELECT {_DIS} FROM vpp_dispatches WHERE portfolio_id = $1 AND id = $2",
            portfolio_id, dispatch_id)
        return _dispatch(row) if row else None

    async def dispatches(self, portfolio_id: str | None = None, running_at: datetime | None = None,
                         limit: int = 100) -> list[StoredDispatch]:
        """Newest first; `running_at`: those whose window holds that time."""
        rows = await self.pool.fetch(
            f"SELECT {_DIS} FROM vpp_dispatches WHERE ($1::text IS NULL OR portfolio_id = $1)"
            " AND ($2::timestamptz IS NULL OR (starts_at <= $2 AND ends_at > $2))"
            " ORDER BY starts_at DESC, id DESC LIMIT $3", portfolio_id, running_at, limit)
        return [_dispatch(r) for r in rows]

    async def event_ids(self, dispatch_id: int) -> list[tuple[str, int]]:
        """(member, grid event id) of every event the dispatch made, oldest first."""
        rows = await self.pool.fetch(
            "SELECT member, event_id FROM vpp_dispatch_events WHERE dispatch_id = $1"
            " ORDER BY event_id", dispatch_id)
        return [(r["member"], int(r["event_id"])) for r in rows]

    async def lock(self, dispatch_id: int, conn: asyncpg.Connection) -> StoredDispatch | None:
        """The dispatch, locked for the caller's transaction (one re-split at a time)."""
        row = await conn.fetchrow(f"SELECT {_DIS} FROM vpp_dispatches WHERE id = $1"
                                  " FOR UPDATE", dispatch_id)
        return _dispatch(row) if row else None

    async def resplit(self, dispatch_id: int, at: datetime, short: list[str],
                      before: dict[str, float], after: dict[str, float],
                      conn: asyncpg.Connection) -> None:
        await conn.execute(
            "INSERT INTO vpp_resplits (dispatch_id, at, short_sites, before, after)"
            " VALUES ($1, $2, $3, $4::jsonb, $5::jsonb)", dispatch_id, at, short,
            json.dumps(before), json.dumps(after))
        await conn.execute("UPDATE vpp_dispatches SET shares = $2::jsonb WHERE id = $1",
                           dispatch_id, json.dumps(after))

    async def resplits(self, dispatch_id: int) -> list[dict[str, Any]]:
        rows = await self.pool.fetch(
            "SELECT at, short_sites, before, after FROM vpp_resplits WHERE dispatch_id = $1"
            " ORDER BY at", dispatch_id)
        return [{"at": r["at"], "short_sites": list(r["short_sites"]),
                 "before": json.loads(r["before"]), "after": json.loads(r["after"])}
                for r in rows]
