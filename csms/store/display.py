"""Block O: the display messages a station holds, as far as the CSMS knows."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import asyncpg

from csms.clock import parse_ocpp


@dataclass(frozen=True)
class DisplayMessage:
    station_id: str
    message_id: int
    priority: str
    state: str | None
    starts_at: datetime | None
    ends_at: datetime | None
    transaction_id: str | None
    evse_id: int | None
    format: str
    language: str | None
    content: str
    source: str  # "set" (accepted by the station) or "reported" (in its report)
    message: dict[str, Any]  # the MessageInfo as sent or reported
    updated_at: datetime


_COLUMNS = ("station_id, message_id, priority, state, starts_at, ends_at, transaction_id,"
            " evse_id, format, language, content, source, message, updated_at")


def _row(station_id: str, info: dict[str, Any], source: str, now: datetime) -> tuple[Any, ...]:
    content = info["message"]
    start, end = info.get("startDateTime"), info.get("endDateTime")
    evse = (info.get("display") or {}).get("evse") or {}
    return (station_id, info["id"], info["priority"], info.get("state"),
            parse_ocpp(start) if start else None, parse_ocpp(end) if end else None,
            info.get("transactionId"), evse.get("id"), content["format"],
            content.get("language"), content["content"], source, json.dumps(info), now)


def _message(row: asyncpg.Record) -> DisplayMessage:
    values = dict(row)
    values["message"] = json.loads(values["message"])
    return DisplayMessage(**values)


_UPSERT = (
    f"INSERT INTO display_messages ({_COLUMNS}) VALUES"
    " ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13::jsonb, $14)"
    " ON CONFLICT (station_id, message_id) DO UPDATE SET"
    " priority = EXCLUDED.priority, state = EXCLUDED.state, starts_at = EXCLUDED.starts_at,"
    " ends_at = EXCLUDED.ends_at, transaction_id = EXCLUDED.transaction_id,"
    " evse_id = EXCLUDED.evse_id, format = EXCLUDED.format, language = EXCLUDED.language,"
    " content = EXCLUDED.content, source = EXCLUDED.source, message = EXCLUDED.message,"
    " updated_at = EXCLUDED.updated_at"
)


class DisplayMessageRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def put(self, station_id: str, info: dict[str, Any], now: datetime) -> None:
        """The station accepted `info` (O01/O02; the same id replaces the old one: O06)."""
        await self.pool.execute(_UPSERT, *_row(station_id, info, "set", now))

    async def replace_all(self, station_id: str, infos: list[dict[str, Any]],
                          now: datetime) -> None:
        """A complete, unfiltered report (O04): the station holds exactly these."""
        async with self.pool.acquire() as conn, conn.transaction():
            await conn.execute("DELETE FROM display_messages WHERE station_id = $1",
                               station_id)
            await conn.executemany(_UPSERT, [_row(station_id, i, "reported", now)
                                             for i in infos])

    async def remove(self, station_id: str, message_id: int) -> bool:
        result = await self.pool.execute(
            "DELETE FROM display_messages WHERE station_id = $1 AND message_id = $2",
            station_id, message_id,
        )
        return bool(result.endswith(" 1"))

    async def get(self, station_id: str, message_id: int) -> DisplayMessage | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM display_messages WHERE station_id = $1"
            " AND message_id = $2", station_id, message_id,
        )
        return _message(row) if row else None

    async def list(self, station_id: str) -> list[DisplayMessage]:
        rows = await self.pool.fetch(
            f"SELECT {_COLUMNS} FROM display_messages WHERE station_id = $1"
            " ORDER BY message_id", station_id,
        )
        return [_message(r) for r in rows]

    async def next_id(self, station_id: str) -> int:
        """A message id not in use on the station (as far as the CSMS knows)."""
        value: int = await self.pool.fetchval(
            "SELECT COALESCE(MAX(message_id), 0) + 1 FROM display_messages"
            " WHERE station_id = $1", station_id,
        )
        return value
