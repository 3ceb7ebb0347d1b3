"""Driver tariffs (block I): what drivers pay per kWh (flat or by time of use), per hour
charging or parked, and per session, per id-token group. Not the site's energy tariff
(`/api/tariffs`, what the site pays, used for planning). The tariff of a token's group
applies, else the default one (no `group_id`); a transaction keeps the tariff it was
priced with once its token is known. Money is exact decimal, given and shown as strings
or numbers; rounding: csms/billing.py."""

from __future__ import annotations

from datetime import time, timedelta
from decimal import Decimal
from typing import Annotated

import asyncpg
from fastapi import APIRouter, HTTPException, Path, Response, status
from pydantic import Field, field_validator

from csms.api.auth import Caller, Permission, require
from csms.api.deps import PartsDep, not_found
from csms.api.models import Body, Model
from csms.billing import DriverTariff, PriceBand, tariff_text

router = APIRouter(prefix="/api/driver-tariffs", tags=["driver tariffs"])

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"
OFFSET = r"^(Z|[+-]([01][0-9]|1[0-4]):[0-5][0-9])$"
Price = Annotated[Decimal, Field(ge=0, le=100_000, max_digits=12, decimal_places=4,
                                 allow_inf_nan=False)]
TariffId = Annotated[str, Path(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._-]+$")]


class DriverBand(Body):
    """A per-kWh price in the tariff's local time; end <= start wraps past midnight."""

    name: str = Field("", max_length=40)
    start: str = Field(pattern=HHMM, examples=["08:00"])
    end: str = Field(pattern=HHMM, examples=["22:00"])
    price_per_kwh: Price


class DriverTariffBody(Body):
    currency: str = Field(pattern=r"^[A-Z]{3}$", examples=["CNY"],
                          description="ISO 4217; should match the stations' "
                          "TariffCostCtrlr.Currency")
    group_id: str | None = Field(None, min_length=1, max_length=36,
                                 description="the id-token group it is for; left out: "
                                 "the default tariff")
    price_per_kwh: Price = Field(Decimal(0), description="where no band applies")
    bands: list[DriverBand] = Field(default_factory=list, max_length=48)
    utc_offset: str = Field("Z", pattern=OFFSET, examples=["+08:00"],
                            description="the bands' local time")
    price_per_hour_charging: Price = Decimal(0)
    price_per_hour_parked: Price = Field(Decimal(0), description="an occupancy fee, "
                                         "for time plugged in but not charging")
    parking_grace_minutes: int = Field(0, ge=0, le=1440,
                                       description="parked time that is free")
    session_fee: Price = Decimal(0)
    description: str | None = Field(None, min_length=1, max_length=512,
                                    description="shown to drivers instead of the "
                                    "generated text")

    @field_validator("bands")
    @classmethod
    def _no_overlap(cls, bands: list[DriverBand]) -> list[DriverBand]:
        parsed = [_band(b) for b in bands]
        for minute in range(24 * 60):
            t = time(minute // 60, minute % 60)
            hits = [b.name or f"{b.start:%H:%M}" for b in parsed if b.contains(t)]
            if len(hits) > 1:
                raise ValueError(f"bands {' and '.join(hits)} overlap at {t:%H:%M}")
        return bands

    def tariff(self, tariff_id: str) -> DriverTariff:
        return DriverTariff(
            id=tariff_id, currency=self.currency, group_id=self.group_id,
            price_per_kwh=self.price_per_kwh, bands=tuple(_band(b) for b in self.bands),
            utc_offset=_offset(self.utc_offset),
            price_per_hour_charging=self.price_per_hour_charging,
            price_per_hour_parked=self.price_per_hour_parked,
            parking_grace=timedelta(minutes=self.parking_grace_minutes),
            session_fee=self.session_fee, description=self.description)


class DriverTariffOut(Model):
    id: str
    currency: str
    group_id: str | None
    price_per_kwh: Decimal
    bands: list[DriverBand]
    utc_offset: str
    price_per_hour_charging: Decimal
    price_per_hour_parked: Decimal
    parking_grace_minutes: int
    session_fee: Decimal
    description: str | None
    text: str = Field(description="what drivers are shown at Authorize (I01)")


def _band(b: DriverBand) -> PriceBand:
    return PriceBand(time.fromisoformat(b.start), time.fromisoformat(b.end),
                     b.price_per_kwh, b.name)


def _offset(text: str) -> timedelta:
    if text == "Z":
        return timedelta(0)
    sign = -1 if text[0] == "-" else 1
    return sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6]))


def _offset_text(offset: timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    if minutes == 0:
        return "Z"
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"


def tariff_out(t: DriverTariff) -> DriverTariffOut:
    return DriverTariffOut(
        id=t.id, currency=t.currency, group_id=t.group_id, price_per_kwh=t.price_per_kwh,
        bands=[DriverBand(name=b.name, start=f"{b.start:%H:%M}", end=f"{b.end:%H:%M}",
                          price_per_kwh=b.price_per_kwh) for b in t.bands],
        utc_offset=_offset_text(t.utc_offset),
        price_per_hour_charging=t.price_per_hour_charging,
        price_per_hour_parked=t.price_per_hour_parked,
        parking_grace_minutes=int(t.parking_grace.total_seconds() // 60),
        session_fee=t.session_fee, description=t.description, text=tariff_text(t))


@router.get("", dependencies=[require(Permission.READ)])
async def list_driver_tariffs(parts: PartsDep) -> list[DriverTariffOut]:
    return [tariff_out(t) for t in await parts.store.driver_tariffs.list()]


@router.get("/{tariff_id}", dependencies=[require(Permission.READ)],
            responses={404: {"description": "no such tariff"}})
async def get_driver_tariff(tariff_id: TariffId, parts: PartsDep) -> DriverTariffOut:
    t = await parts.store.driver_tariffs.get(tariff_id)
    if t is None:
        raise not_found(f"driver tariff {tariff_id}")
    return tariff_out(t)


@router.put("/{tariff_id}", responses={
    201: {"description": "created"},
    409: {"description": "another tariff is already the default or that group's"}})
async def put_driver_tariff(tariff_id: TariffId, body: DriverTariffBody, parts: PartsDep,
                            response: Response,
                            who: Annotated[Caller, require(Permission.TARIFFS)]
                            ) -> DriverTariffOut:
    """Create or replace. Transactions whose tariff is fixed keep their price."""
    tariff = body.tariff(tariff_id)
    try:
        created = await parts.store.driver_tariffs.put(tariff, who.name, parts.clock.now())
    except asyncpg.UniqueViolationError:
        which = f"group {body.group_id}" if body.group_id else "the default"
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"another tariff is already {which}'s") from None
    if created:
        response.status_code = status.HTTP_201_CREATED
    return tariff_out(tariff)


@router.delete("/{tariff_id}", status_code=status.HTTP_204_NO_CONTENT,
               dependencies=[require(Permission.TARIFFS)],
               responses={404: {"description": "no such tariff"}})
async def delete_driver_tariff(tariff_id: TariffId, parts: PartsDep) -> None:
    if not await parts.store.driver_tariffs.remove(tariff_id):
        raise not_found(f"driver tariff {tariff_id}")
