"""Driver tariffs (block I) and the cost of each transaction under its tariff."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime, time, timedelta
from decimal import Decimal
from typing import Any

import asyncpg

from csms.billing import Cost, DriverTariff, PriceBand

_COLUMNS = ("id, group_id, currency, price_per_kwh, bands, utc_offset_minutes,"
            " price_per_hour_charging, price_per_hour_parked, parking_grace_minutes,"
            " session_fee, description")


def tariff_to_json(t: DriverTariff) -> dict[str, Any]:
    """A tariff as stored with a transaction (and read back by `tariff_from_json`)."""
    return {
        "id": t.id, "group_id": t.group_id, "currency": t.currency,
        "price_per_kwh": str(t.price_per_kwh),
        "bands": [{"name": b.name, "start": b.start.strftime("%H:%M"),
                   "end": b.end.strftime("%H:%M"), "price_per_kwh": str(b.price_per_kwh)}
                  for b in t.bands],
        "utc_offset_minutes": int(t.utc_offset.total_seconds() // 60),
        "price_per_hour_charging": str(t.price_per_hour_charging),
        "price_per_hour_parked": str(t.price_per_hour_parked),
        "parking_grace_minutes": int(t.parking_grace.total_seconds() // 60),
        "session_fee": str(t.session_fee), "description": t.description,
    }


def tariff_from_json(d: dict[str, Any]) -> DriverTariff:
    return DriverTariff(
        id=d["id"], currency=d["currency"], group_id=d.get("group_id"),
        price_per_kwh=Decimal(d["price_per_kwh"]),
        bands=tuple(PriceBand(time.fromisoformat(b["start"]), time.fromisoformat(b["end"]),
                              Decimal(b["price_per_kwh"]), b.get("name", ""))
                    for b in d.get("bands", [])),
        utc_offset=timedelta(minutes=d.get("utc_offset_minutes", 0)),
        price_per_hour_charging=Decimal(d.get("price_per_hour_charging", "0")),
        price_per_hour_parked=Decimal(d.get("price_per_hour_parked", "0")),
        parking_grace=timedelta(minutes=d.get("parking_grace_minutes", 0)),
        session_fee=Decimal(d.get("session_fee", "0")), description=d.get("description"),
    )


def _from_row(row: asyncpg.Record) -> DriverTariff:
    d = dict(row)
    d["bands"] = json.loads(d["bands"])
    for key in ("price_per_kwh", "price_per_hour_charging", "price_per_hour_parked",
                "session_fee"):
        d[key] = str(d[key])
    return tariff_from_json(d)


@dataclass(frozen=True)
class TransactionCost:
    station_id: str
    transaction_id: str
    tariff_id: str
    currency: str
    cost: Decimal
    breakdown: dict[str, str]
    final: bool
    computed_at: datetime


class DriverTariffRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self._any: bool | None = None  # cached: is there any tariff at all?

    async def any(self) -> bool:
        """Whether any tariff exists: without one, no cost is computed (cheap to ask)."""
        if self._any is None:
            self._any = bool(await self.pool.fetchval("SELECT 1 FROM driver_tariffs LIMIT 1"))
        return self._any

    async def put(self, tariff: DriverTariff, by: str, now: datetime) -> bool:
        """Create or replace; True when created. A group taken by another tariff (or a
        second default) raises asyncpg.UniqueViolationError."""
        d = tariff_to_json(tariff)
        created = await self.pool.fetchval(
            "INSERT INTO driver_tariffs (id, group_id, currency, price_per_kwh, bands,"
            " utc_offset_minutes, price_per_hour_charging, price_per_hour_parked,"
            " parking_grace_minutes, session_fee, description, updated_by, updated_at)"
            " VALUES ($1, $2, $3, $4::numeric, $5::jsonb, $6, $7::numeric, $8::numeric, $9,"
            " $10::numeric, $11, $12, $13)"
            " ON CONFLICT (id) DO UPDATE SET group_id = EXCLUDED.group_id,"
            " currency = EXCLUDED.currency, price_per_kwh = EXCLUDED.price_per_kwh,"
            " bands = EXCLUDED.bands, utc_offset_minutes = EXCLUDED.utc_offset_minutes,"
            " price_per_hour_charging = EXCLUDED.price_per_hour_charging,"
            " price_per_hour_parked = EXCLUDED.price_per_hour_parked,"
            " parking_grace_minutes = EXCLUDED.parking_grace_minutes,"
            " session_fee = EXCLUDED.session_fee, description = EXCLUDED.description,"
            " updated_by = EXCLUDED.updated_by, updated_at = EXCLUDED.updated_at"
            " RETURNING (xmax = 0)",
            d["id"], d["group_id"], d["currency"], d["price_per_kwh"], json.dumps(d["bands"]),
            d["utc_offset_minutes"], d["price_per_hour_charging"], d["price_per_hour_parked"],
            d["parking_grace_minutes"], d["session_fee"], d["description"], by, now,
        )
        self._any = True
        return bool(created)

    async def get(self, tariff_id: str) -> DriverTariff | None:
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM driver_tariffs WHERE id = $1", tariff_id)
        return _from_row(row) if row else None

    async def list(self) -> list[DriverTariff]:
        rows = await self.pool.fetch(f"SELECT {_COLUMNS} FROM driver_tariffs ORDER BY id")
        return [_from_row(r) for r in rows]

    async def remove(self, tariff_id: str) -> bool:
        gone = await self.pool.execute("DELETE FROM driver_tariffs WHERE id = $1", tariff_id)
        self._any = None
        return gone.split()[-1] != "0"

    async def for_group(self, group_id: str | None) -> DriverTariff | None:
        """The group's tariff, else the default one (None if neither exists)."""
        if not await self.any():
            return None
        row = await self.pool.fetchrow(
            f"SELECT {_COLUMNS} FROM driver_tariffs WHERE group_id = $1 OR group_id IS NULL"
            " ORDER BY group_id IS NULL LIMIT 1", group_id)
        return _from_row(row) if row else None

    # ------------------------------------------------------------ transaction costs

    async def fixed_tariff(self, station_id: str, transaction_id: str) -> DriverTariff | None:
        """The tariff a transaction's price was fixed with, if it has been."""
        raw = await self.pool.fetchval(
            "SELECT tariff FROM transaction_costs WHERE station_id = $1 AND transaction_id = $2"
            " AND tariff_fixed", station_id, transaction_id)
        return tariff_from_json(json.loads(raw)) if raw else None

    async def record_cost(self, station_id: str, transaction_id: str, tariff: DriverTariff,
                          cost: Cost, *, final: bool, fix_tariff: bool, now: datetime) -> None:
        """Store the newest cost; a final cost is never replaced by a running one, and a
        fixed tariff stays."""
        await self.pool.execute(
            "INSERT INTO transaction_costs (station_id, transaction_id, tariff_id, tariff,"
            " tariff_fixed, currency, cost, breakdown, final, computed_at)"
            " VALUES ($1, $2, $3, $4::jsonb, $5, $6, $7::numeric, $8::jsonb, $9, $10)"
            " ON CONFLICT (station_id, transaction_id) DO UPDATE SET cost = EXCLUDED.cost,"
            " breakdown = EXCLUDED.breakdown, final = EXCLUDED.final,"
            " computed_at = EXCLUDED.computed_at, currency = EXCLUDED.currency,"
            " tariff_id = EXCLUDED.tariff_id, tariff = EXCLUDED.tariff,"
            " tariff_fixed = EXCLUDED.tariff_fixed"
            " WHERE NOT transaction_costs.final OR EXCLUDED.final",
            station_id, transaction_id, tariff.id, json.dumps(tariff_to_json(tariff)),
            fix_tariff, cost.currency, str(cost.total), json.dumps(cost.breakdown()), final, now,
        )

    async def costs(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], TransactionCost]:
        """The stored cost of each (station, transaction) that has one."""
        if not keys:
            return {}
        rows = await self.pool.fetch(
            "SELECT c.station_id, c.transaction_id, tariff_id, currency, cost, breakdown,"
            " final, computed_at FROM transaction_costs c"
            " JOIN unnest($1::text[], $2::text[]) AS k(s, t)"
            " ON c.station_id = k.s AND c.transaction_id = k.t",
            [k[0] for k in keys], [k[1] for k in keys],
        )
        out = {}
        for r in rows:
            d = dict(r)
            d["breakdown"] = json.loads(d["breakdown"])
            out[(r["station_id"], r["transaction_id"])] = TransactionCost(**d)
        return out

    async def usage_rows(self, station_id: str, transaction_id: str
                         ) -> tuple[list[tuple[datetime, float]], list[tuple[datetime, str]]]:
        """The energy register readings and the charging states a transaction reported."""
        readings = await self.pool.fetch(
            "SELECT ts, value FROM meter_values WHERE station_id = $1 AND transaction_id = $2"
            " AND measurand = 'Energy.Active.Import.Register' AND phase = ''"
            " AND location = 'Outlet'"
            " ORDER BY ts", station_id, transaction_id)
        states = await self.pool.fetch(
            "SELECT ts, payload->'transactionInfo'->>'chargingState' AS state"
            " FROM transaction_events WHERE station_id = $1 AND transaction_id = $2"
            " AND payload->'transactionInfo' ? 'chargingState' ORDER BY ts, seq_no",
            station_id, transaction_id)
        return ([(r["ts"], float(r["value"])) for r in readings],
                [(r["ts"], r["state"]) for r in states])
