"""Tariffs: the configured ones (config/tariffs/*.toml), and each site's prices over the
next 24 hours as the scheduler will see them. An admin or operator can set a site's tariff
(same shape as the TOML files); it is stored and used from the next plan, which starts at
once."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Literal

from fastapi import APIRouter, HTTPException, status
from pydantic import ConfigDict, Field, field_validator

from csms.api.auth import Caller, Permission, require
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.grid import configured
from csms.api.models import Body, Model
from csms.api.sites import SiteId
from csms.events import SiteSettingsChanged
from smart_charging import prices_from_dict

router = APIRouter(tags=["tariffs"])

HHMM = r"^([01][0-9]|2[0-3]):[0-5][0-9]$"


class Band(Body):
    """A time-of-use band in the tariff's local time; end <= start wraps past midnight."""

    name: str = Field(min_length=1, max_length=40)
    start: str = Field(pattern=HHMM, examples=["21:00"])
    end: str = Field(pattern=HHMM, examples=["08:00"])
    price: float = Field(ge=0, allow_inf_nan=False, description="per kWh")


class Tariff(Body):
    """As in config/tariffs/*.toml. Where no band applies, `flat_price` does."""

    id: str = Field(min_length=1, max_length=80, pattern=r"^[A-Za-z0-9._-]+$")
    currency: str = Field("CNY", min_length=3, max_length=3)
    utc_offset: str = Field("Z", pattern=r"^(Z|[+-]([01][0-9]|2[0-3]):[0-5][0-9])$")
    demand_charge_per_kw: float = Field(0.0, ge=0, allow_inf_nan=False)
    flat_price: float = Field(0.0, ge=0, allow_inf_nan=False)
    bands: list[Band] = Field(default_factory=list, max_length=48)

    @field_validator("bands")
    @classmethod
    def _no_overlap(cls, bands: list[Band]) -> list[Band]:
        parsed = prices_from_dict({"bands": [b.model_dump() for b in bands]}).bands
        for minute in range(24 * 60):
            t = (datetime(2000, 1, 1) + timedelta(minutes=minute)).time()
            hits = [b.name for b in parsed if b.contains(t)]
            if len(hits) > 1:
                raise ValueError(f"bands {' and '.join(hits)} overlap at {t:%H:%M}")
        return bands


class TariffOut(Tariff):
    model_config = ConfigDict(extra="ignore", from_attributes=True)


class Interval(Model):
    start: datetime
    end: datetime
    price: float
    band: str | None


class SiteTariff(Model):
    site_id: str
    source: Literal["api", "config", "none"] = Field(
        description="api: set through this API; config: the one the site's TOML names")
    tariff: TariffOut | None
    currency: str | None
    demand_charge_per_kw: float
    prices: list[Interval] = Field(description="per slot, the next 24 hours")


Reader = Annotated[Caller, require(Permission.SITES)]
Writer = Annotated[Caller, require(Permission.TARIFFS)]


@router.get("/api/tariffs", dependencies=[require(Permission.SITES)])
async def list_tariffs(parts: PartsDep) -> list[TariffOut]:
    """The configured tariff files (the folder the sites take theirs from)."""
    return [TariffOut.model_validate(t) for _, t in sorted(parts.tariffs.tariffs.items())]


@router.get("/api/tariffs/{tariff_id}", dependencies=[require(Permission.SITES)],
            responses={404: {"description": "no such tariff"}})
async def get_tariff(tariff_id: str, parts: PartsDep) -> TariffOut:
    found = parts.tariffs.tariffs.get(tariff_id)
    if found is None:
        raise not_found(f"tariff {tariff_id}")
    return TariffOut.model_validate(found)


async def site_tariff(parts: Parts, site_id: str) -> SiteTariff:
    stored = await parts.store.grid.tariff(site_id)
    tariff_id = parts.tariffs.by_site.get(site_id)
    raw = stored or (parts.tariffs.tariffs.get(tariff_id) if tariff_id else None)
    source = "api" if stored else "config" if raw else "none"
    prices = prices_from_dict(raw or {})
    step = timedelta(minutes=parts.tariffs.slot_minutes)
    now = parts.clock.now().astimezone(UTC)
    first = datetime.fromtimestamp(now.timestamp() // step.total_seconds()
                                   * step.total_seconds(), UTC)
    starts = [first + i * step for i in range(int(timedelta(hours=24) / step))]
    ends = [s + step for s in starts]
    per_slot = prices.energy_price(starts, ends)
    intervals = []
    for a, b, p in zip(starts, ends, per_slot, strict=True):
        band = prices.band_at(a + (b - a) / 2)
        intervals.append(Interval(start=a, end=b, price=float(p),
                                  band=None if band is None else band.name))
    return SiteTariff(
        site_id=site_id, source=source,  # type: ignore[arg-type]
        tariff=None if raw is None else TariffOut.model_validate(raw),
        currency=None if raw is None else prices.currency,
        demand_charge_per_kw=prices.demand_charge_per_kw, prices=intervals)


@router.get("/api/sites/{site_id}/tariff", tags=["sites"],
            responses={404: {"description": "no such site"}})
async def get_site_tariff(site_id: SiteId, parts: PartsDep) -> SiteTariff:
    """The site's tariff and its price per slot over the next 24 hours (CSMS clock)."""
    return await site_tariff(parts, configured(parts, site_id).id)


@router.put("/api/sites/{site_id}/tariff", tags=["sites"],
            responses={404: {"description": "no such site"}})
async def set_site_tariff(site_id: SiteId, body: Tariff, who: Writer,
                          parts: PartsDep) -> SiteTariff:
    """Set the site's tariff in place of the configured one; the site re-plans at once."""
    site = configured(parts, site_id)
    now = parts.clock.now()
    await parts.store.grid.set_tariff(site.id, body.model_dump(), who.name, now)
    parts.events.publish(SiteSettingsChanged(site.id, "tariff", now))
    return await site_tariff(parts, site.id)


@router.delete("/api/sites/{site_id}/tariff", tags=["sites"],
               responses={404: {"description": "no such site"}})
async def reset_site_tariff(site_id: SiteId, who: Writer, parts: PartsDep) -> SiteTariff:
    """Back to the tariff the site's TOML names; the site re-plans at once."""
    site = configured(parts, site_id)
    now = parts.clock.now()
    if not await parts.store.grid.clear_tariff(site.id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no tariff was set through the API")
    parts.events.publish(SiteSettingsChanged(site.id, "tariff", now))
    return await site_tariff(parts, site.id)
