"""Reservations (block H): what the CSMS asked a station to hold, and what became of it.

An Accepted reservation whose expiry has passed reads as Expired (`status_at`), whether or
not the station has said so yet: the CSMS keeps its own books on the injected clock.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import asyncpg

# Every status a reservation can have (see migrations/0008).
ANSWERS = ("Accepted", "Faulted", "Occupied", "Rejected", "Unavailable")
ENDED = ("Cancelled", "Expired", "Removed", "Used")
STATUSES = ("Requested", *ANSWERS, "Failed", *ENDED)


@dataclass(frozen=True)
class Reservation:
    id: int
    station_id: str
    evse_id: int | None
    connector_type: str | None
    id_token: str
    token_type: str
    group_id_token: str | None
    group_token_type: str | None
    expires_at: datetime
    status: str
    status_reason: str | None
    transaction_id: str | None
    created_by: str
    created_at: datetime
    updated_at: datetime
    ended_at: datetime | None

    def status_at(self, now: datetime) -> str:
        if self.status == "Accepted" and self.expires_at <= now:
            return "Expired"
        return self.status

    def active_at(self, now: datetime) -> bool:
        return self.status_at(now) == "Accepted"


_COLUMNS = ("id, station_id, evse_id, connector_type, id_token, token_type, group_id_token,"
            " group_token_type, expires_at, status, status_reason, transaction_id, created_by,"
            " created_at, updated_at, ended_at")


class ReservationRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def create(self, station_id: str, *, evse_id: int | None, connector_type: str | None,
                     id_token: str, token_type: str, group_id_token: str | None,
                     group_token_type: str | None, expires_at: datetime, created_by: str,
                     now: datetime) -> Reservation:
        """A new reservation, Requested: its id goes in the ReserveNow."""
        row = await self.pool.fetchrow(
            "INSERT INTO reservations (station_id, evse_id, connector_type, id_token,"
            " token_type, group_id_token, group_token_type, expires_at, status, created_by,"
            " created_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, 'Requested',"
            f" $9, $10, $10) RETURNING {_COLUMNS}",
            station_id, evse_id, connector_type, id_token, token_type, group_id_token,
            group_token_type, expires_at, created_by, now,
        )
        return Reservation(**dict(row))

    async def adopt(self, reservation_id: int, station_id: str, *, evse_id: int | None,
                    connector_type: str | None, id_token: str, token_type: str,
                    group_id_token: str | None, group_token_type: str | None,
                    expires_at: datetime, status: str, created_by: str, now: datetime
                    ) -> Reservation | None:
        """A reservation made with a raw ReserveNow (its id chosen by the caller): stored,
        or replacing the one of that id on the same station (as the station does); None
        when the id belongs to another station's reservation. Later ids stay above it."""
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow(
                "INSERT INTO reservations (id, station_id, evse_id, connector_type, id_token,"
                " token_type, group_id_token, group_token_type, expires_at, status,"
                " status_reason, created_by, created_at, updated_at) VALUES ($1, $2, $3, $4,"
                " $5, $6, $7, $8, $9, $10, 'ReserveNow command', $11, $12, $12)"
                " ON CONFLICT (id) DO UPDATE SET evse_id = EXCLUDED.evse_id,"
                " connector_type = EXCLUDED.connector_type, id_token = EXCLUDED.id_token,"
                " token_type = EXCLUDED.token_type, group_id_token = EXCLUDED.group_id_token,"
                " group_token_type = EXCLUDED.group_token_type,"
                " expires_at = EXCLUDED.expires_at, status = EXCLUDED.status,"
                " status_reason = EXCLUDED.status_reason, updated_at = EXCLUDED.updated_at,"
                " ended_at = NULL, transaction_id = NULL"
                " WHERE reservations.station_id = EXCLUDED.station_id"
                f" RETURNING {_COLUMNS}",
                reservation_id, station_id, evse_id, connector_type, id_token, token_type,
                group_id_token, group_token_type, expires_at, status, created_by, now,
            )
            await conn.execute(
                "SELECT setval(pg_get_serial_sequence('reservations', 'id'),"
                " GREATEST($1, (SELECT last_value FROM reservations_id_seq)))",
                reservation_id)
        return Reservation(**dict(row)) if row else None

    async def get(self, reservation_id: int) -> Reservation | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM reservations WHERE id = $1", reservation_id)
        return Reservation(**dict(row)) if row else None

    async def list(self, *, station_id: str | None = None, status: str | None = None,
                   id_token: str | None = None, now: datetime, limit: int = 100
                   ) -> list[Reservation]:
        """Newest first. `status` is the status now (an Accepted one past its expiry is
        Expired)."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM reservations WHERE ($1::text IS NULL OR station_id = $1)"
            " AND ($3::text IS NULL OR id_token = $3) AND ($2::text IS NULL"
            "  OR ($2 = 'Accepted' AND status = 'Accepted' AND expires_at > $4)"
            "  OR ($2 = 'Expired' AND (status = 'Expired'"
            "      OR (status = 'Accepted' AND expires_at <= $4)))"
            "  OR ($2 NOT IN ('Accepted', 'Expired') AND status = $2))"
            " ORDER BY id DESC LIMIT $5",
            station_id, status, id_token, now, limit,
        )
        return [Reservation(**dict(r)) for r in rows]

    async def active(self, station_ids: list[str], now: datetime) -> list[Reservation]:
        """Accepted and not expired, on these stations."""
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM reservations WHERE station_id = ANY($1::text[])"
            " AND status = 'Accepted' AND expires_at > $2 ORDER BY id",
            station_ids, now,
        )
        return [Reservation(**dict(r)) for r in rows]

    async def set_status(self, reservation_id: int, status: str, now: datetime, *,
                         only_from: tuple[str, ...] | None = None, reason: str | None = None,
                         transaction_id: str | None = None,
                         station_id: str | None = None) -> Reservation | None:
        """Move a reservation to `status` (from one of `only_from`, if given); None when
        there is no such reservation (on that station) in such a state."""
        if status not in STATUSES:
            raise ValueError(f"unknown reservation status {status}")
        row = await self.pool.fetchrow(
            "UPDATE reservations SET status = $2, status_reason = COALESCE($4, status_reason),"
            " transaction_id = COALESCE($5, transaction_id), updated_at = $3,"
            " ended_at = CASE WHEN $2 = ANY($7::text[]) THEN $3 ELSE ended_at END"
            " WHERE id = $1 AND ($6::text[] IS NULL OR status = ANY($6::text[]))"
            " AND ($8::text IS NULL OR station_id = $8)"
            f" RETURNING {_COLUMNS}",
            reservation_id, status, now, reason, transaction_id,
            list(only_from) if only_from is not None else None, list(ENDED), station_id,
        )
        return Reservation(**dict(row)) if row else None
