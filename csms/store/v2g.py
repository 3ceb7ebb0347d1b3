"""V2G as stored: vehicles with their standing terms, each session's own terms and the
car's V2X parameters, and the discharge metered per transaction (migration 0014)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import asyncpg

EXPORT_REGISTER = "Energy.Active.Export.Register"

TxKey = tuple[str, str]  # (station id, transaction id)


@dataclass(frozen=True)
class Vehicle:
    id: str
    id_token: str | None
    battery_kwh: float | None
    v2g_opted_in: bool
    v2g_mode: str
    min_soc: float
    compensation_per_kwh: float
    updated_at: datetime


@dataclass(frozen=True)
class SessionV2g:
    station_id: str
    transaction_id: str
    opted_in: bool | None
    mode: str | None
    min_soc: float | None
    compensation_per_kwh: float | None
    ev_bidirectional: bool | None
    ev_battery_kwh: float | None
    ev_soc: float | None
    ev_max_discharge_w: float | None
    ev_min_v2x_energy_wh: float | None
    ev_updated_at: datetime | None
    updated_at: datetime


_VEHICLE = ("id, id_token, battery_kwh, v2g_opted_in, v2g_mode, min_soc, compensation_per_kwh,"
            " updated_at")
_SESSION = ("station_id, transaction_id, opted_in, mode, min_soc, compensation_per_kwh,"
            " ev_bidirectional, ev_battery_kwh, ev_soc, ev_max_discharge_w,"
            " ev_min_v2x_energy_wh, ev_updated_at, updated_at")


class V2gRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    # ----------------------------------------------------------------- vehicles

    async def put_vehicle(self, v: Vehicle) -> Vehicle:
        """Create or replace; raises asyncpg.UniqueViolationError when another vehicle
        already has the id token."""
        row = await self.pool.fetchrow(
            f"INSERT INTO vehicles ({_VEHICLE}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
            " ON CONFLICT (id) DO UPDATE SET id_token = EXCLUDED.id_token,"
            " battery_kwh = EXCLUDED.battery_kwh, v2g_opted_in = EXCLUDED.v2g_opted_in,"
            " v2g_mode = EXCLUDED.v2g_mode, min_soc = EXCLUDED.min_soc,"
            " compensation_per_kwh = EXCLUDED.compensation_per_kwh,"
            f" updated_at = EXCLUDED.updated_at RETURNING {_VEHICLE}",
            v.id, v.id_token, v.battery_kwh, v.v2g_opted_in, v.v2g_mode, v.min_soc,
            v.compensation_per_kwh, v.updated_at)
        return Vehicle(**dict(row))

    async def vehicle(self, vehicle_id: str) -> Vehicle | None:
        row = await self.pool.fetchrow(f"SELECT {_VEHICLE} FROM vehicles WHERE id = $1",
                                       vehicle_id)
        return Vehicle(**dict(row)) if row else None

    async def vehicles(self, limit: int = 1000) -> list[Vehicle]:
        rows = await self.pool.fetch(f"SELECT {_VEHICLE} FROM vehicles ORDER BY id LIMIT $1",
                                     limit)
        return [Vehicle(**dict(r)) for r in rows]

    async def remove_vehicle(self, vehicle_id: str) -> bool:
        return await self.pool.fetchval(
            "DELETE FROM vehicles WHERE id = $1 RETURNING true", vehicle_id) is not None

    async def vehicles_by_token(self, tokens: Sequence[str]) -> dict[str, Vehicle]:
        rows = await self.pool.fetch(
            f"SELECT {_VEHICLE} FROM vehicles WHERE id_token = ANY($1)", list(tokens))
        return {r["id_token"]: Vehicle(**dict(r)) for r in rows}

    # ----------------------------------------------------------------- sessions

    async def set_session_terms(self, station_id: str, transaction_id: str, *,
                                opted_in: bool | None, mode: str | None,
                                min_soc: float | None, compensation_per_kwh: float | None,
                                now: datetime) -> SessionV2g:
        """The driver's or operator's terms for this session (None: the vehicle's)."""
        row = await self.pool.fetchrow(
            "INSERT INTO session_v2g (station_id, transaction_id, opted_in, mode, min_soc,"
            " compensation_per_kwh, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (station_id, transaction_id) DO UPDATE SET"
            " opted_in = EXCLUDED.opted_in, mode = EXCLUDED.mode, min_soc = EXCLUDED.min_soc,"
            " compensation_per_kwh = EXCLUDED.compensation_per_kwh,"
            f" updated_at = EXCLUDED.updated_at RETURNING {_SESSION}",
            station_id, transaction_id, opted_in, mode, min_soc, compensation_per_kwh, now)
        return SessionV2g(**dict(row))

    async def set_ev(self, station_id: str, transaction_id: str, *,
                     bidirectional: bool | None, battery_kwh: float | None,
                     soc: float | None, max_discharge_w: float | None,
                     min_v2x_energy_wh: float | None, now: datetime) -> None:
        """What the car reported; a field it left out keeps what it said before."""
        await self.pool.execute(
            "INSERT INTO session_v2g (station_id, transaction_id, ev_bidirectional,"
            " ev_battery_kwh, ev_soc, ev_max_discharge_w, ev_min_v2x_energy_wh,"
            " ev_updated_at, updated_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8)"
            " ON CONFLICT (station_id, transaction_id) DO UPDATE SET"
            " ev_bidirectional = COALESCE(EXCLUDED.ev_bidirectional,"
            "   session_v2g.ev_bidirectional),"
            " ev_battery_kwh = COALESCE(EXCLUDED.ev_battery_kwh, session_v2g.ev_battery_kwh),"
            " ev_soc = COALESCE(EXCLUDED.ev_soc, session_v2g.ev_soc),"
            " ev_max_discharge_w = COALESCE(EXCLUDED.ev_max_discharge_w,"
            "   session_v2g.ev_max_discharge_w),"
            " ev_min_v2x_energy_wh = COALESCE(EXCLUDED.ev_min_v2x_energy_wh,"
            "   session_v2g.ev_min_v2x_energy_wh),"
            " ev_updated_at = EXCLUDED.ev_updated_at, updated_at = EXCLUDED.updated_at",
            station_id, transaction_id, bidirectional, battery_kwh, soc, max_discharge_w,
            min_v2x_energy_wh, now)

    async def sessions(self, keys: Sequence[TxKey]) -> dict[TxKey, SessionV2g]:
        if not keys:
            return {}
        rows = await self.pool.fetch(
            f"SELECT {_SESSION} FROM session_v2g s JOIN unnest($1::text[], $2::text[])"
            " AS k(sid, tid) ON s.station_id = k.sid AND s.transaction_id = k.tid",
            [k[0] for k in keys], [k[1] for k in keys])
        return {(r["station_id"], r["transaction_id"]): SessionV2g(**dict(r)) for r in rows}

    async def ev_modes(self, station_id: str, transaction_id: str) -> list[str]:
        """The energy transfer modes the car last offered (2.1 availableEnergyTransfer,
        else the one it requested), from its latest NotifyEVChargingNeeds."""
        payload = await self.pool.fetchval(
            "SELECT payload FROM ev_charging_needs WHERE station_id = $1"
            " AND transaction_id = $2 ORDER BY received_at DESC LIMIT 1",
            station_id, transaction_id)
        if payload is None:
            return []
        needs = json.loads(payload).get("chargingNeeds", {})
        modes = list(needs.get("availableEnergyTransfer") or [])
        wanted = needs.get("requestedEnergyTransfer")
        return modes or ([wanted] if wanted else [])

    # ----------------------------------------------------------------- metered

    async def metered(self, keys: Sequence[TxKey]) -> dict[TxKey, tuple[float, float | None]]:
        """Per transaction: Wh exported (the Energy.Active.Export.Register's rise over the
        transaction, whole meter at the outlet) and the latest SoC (%) metered, if any."""
        if not keys:
            return {}
        rows = await self.pool.fetch(
            "SELECT k.sid, k.tid,"
            " (SELECT max(value) - min(value) FROM meter_values m"
            "   WHERE m.station_id = k.sid AND m.transaction_id = k.tid"
            "   AND m.measurand = $3 AND m.phase = '' AND m.location = 'Outlet') AS exported,"
            " (SELECT value FROM meter_values m WHERE m.station_id = k.sid"
            "   AND m.transaction_id = k.tid AND m.measurand = 'SoC'"
            "   ORDER BY ts DESC LIMIT 1) AS soc"
            " FROM unnest($1::text[], $2::text[]) AS k(sid, tid)",
            [k[0] for k in keys], [k[1] for k in keys], EXPORT_REGISTER)
        return {(r["sid"], r["tid"]): (float(r["exported"] or 0.0), r["soc"]) for r in rows}
