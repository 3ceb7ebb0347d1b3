"""A site's battery state of charge and solar forecasts set through the API, and a
battery's SoC as a station meter reports it (migrations/0017_storage_solar.sql)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

import asyncpg

SOC_MEASURAND = "SoC"  # OCPP's measurand, in percent


@dataclass(frozen=True)
class SocReading:
    """A battery's state of charge (0..1) at a time, and who said so ("api:<name>" or
    "meter:<station>/<evse>")."""

    soc: float
    at: datetime
    source: str


@dataclass(frozen=True)
class SolarOverride:
    """A solar forecast for the next hours: kw[k] over [start + k x step, + step)."""

    start: datetime
    step_minutes: int
    kw: tuple[float, ...]
    set_by: str = ""

    @property
    def end(self) -> datetime:
        return self.start + timedelta(minutes=self.step_minutes * len(self.kw))


class StorageRepo:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool

    async def set_soc(self, site_id: str, storage_id: str, soc: float, measured_at: datetime,
                      set_by: str, now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO storage_soc (site_id, storage_id, soc, measured_at, set_by, set_at)"
            " VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (site_id, storage_id) DO UPDATE"
            " SET soc = $3, measured_at = $4, set_by = $5, set_at = $6",
            site_id, storage_id, soc, measured_at, set_by, now)

    async def soc(self, site_id: str) -> dict[str, SocReading]:
        """Battery id -> the newest SoC set through the API."""
        rows = await self.pool.fetch(
            "SELECT storage_id, soc, measured_at, set_by FROM storage_soc WHERE site_id = $1",
            site_id)
        return {r["storage_id"]: SocReading(r["soc"], r["measured_at"], f"api:{r['set_by']}")
                for r in rows}

    async def meter_soc(self, station_id: str, evse_id: int) -> tuple[datetime, float] | None:
        """The newest SoC sample (percent, unchecked) of a station's meter, if any (the
        meter_values key leads with station, EVSE and time: one index probe)."""
        row = await self.pool.fetchrow(
            "SELECT ts, value FROM meter_values WHERE station_id = $1 AND evse_id = $2"
            " AND measurand = $3 ORDER BY ts DESC LIMIT 1",
            station_id, evse_id, SOC_MEASURAND)
        return None if row is None else (row["ts"], float(row["value"]))

    async def set_forecast(self, site_id: str, solar_id: str, forecast: SolarOverride,
                           now: datetime) -> None:
        await self.pool.execute(
            "INSERT INTO solar_forecasts (site_id, solar_id, starts_at, step_minutes, kw,"
            " set_by, set_at) VALUES ($1, $2, $3, $4, $5, $6, $7)"
            " ON CONFLICT (site_id, solar_id) DO UPDATE SET starts_at = $3, step_minutes = $4,"
            " kw = $5, set_by = $6, set_at = $7",
            site_id, solar_id, forecast.start, forecast.step_minutes, list(forecast.kw),
            forecast.set_by, now)

    async def clear_forecast(self, site_id: str, solar_id: str) -> bool:
        done = await self.pool.execute(
            "DELETE FROM solar_forecasts WHERE site_id = $1 AND solar_id = $2",
            site_id, solar_id)
        return done != "DELETE 0"

    async def forecasts(self, site_id: str) -> dict[str, SolarOverride]:
        """Plant id -> the forecast set through the API (expired ones too: the caller
        knows the time)."""
        rows = await self.pool.fetch(
            "SELECT solar_id, starts_at, step_minutes, kw, set_by FROM solar_forecasts"
            " WHERE site_id = $1", site_id)
        return {r["solar_id"]: SolarOverride(r["starts_at"], r["step_minutes"],
                                             tuple(r["kw"]), r["set_by"]) for r in rows}
