"""A site's stationary batteries and on-site solar (issue 15): what is configured, what
the newest plan does with them, and what an operator or an integration reports.

GET .../energy shows, per node, each battery's state of charge now (and where it comes
from: measured, planned, site file) with its planned power and SoC per slot, and each
plant's forecast. A site controller follows the planned power and reports the SoC back
(PUT .../storage/{id}/soc); a forecast service sets the next hours of solar (PUT
.../solar/{id}/forecast). Either re-plans the site at once. Every refused body is a 422,
logged (`<input>.rejected`) and counted (`csms_rejected_inputs_total`).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Coroutine
from datetime import datetime, timedelta
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import AwareDatetime, Field

from csms import metrics
from csms.api.auth import Caller, Permission, require
from csms.api.carbon import rejected
from csms.api.deps import Parts, PartsDep, not_found
from csms.api.grid import configured
from csms.api.models import Body, Model
from csms.api.sites import SiteId
from csms.events import SiteSettingsChanged
from csms.scheduling.site_energy import (
    SiteEnergyNow,
    read_site_energy,
    trajectories_from_record,
)
from csms.store.storage import SolarOverride
from smart_charging.model import SiteEnergy

log = structlog.get_logger()


class CountedRoute(APIRoute):
    """A request the schema refuses (a misspelt field, text for a number) is counted and
    logged like the bounds the routes check themselves, then answered 422 as usual."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        what = "storage_soc" if self.path.endswith("/soc") else "solar_forecast" \
            if self.path.endswith("/forecast") else "site_energy"

        async def route(request: Request) -> Response:
            try:
                return await handler(request)
            except RequestValidationError as exc:
                metrics.rejected_inputs.labels(what, "schema").inc()
                log.warning(f"{what}.rejected", reason="schema", path=request.url.path,
                            errors=len(exc.errors()))
                raise

        return route


router = APIRouter(prefix="/api/sites", tags=["storage and solar"], route_class=CountedRoute)

Writer = Annotated[Caller, require(Permission.STORAGE)]

SOC_MAX_AGE = timedelta(hours=24)  # an older reading says nothing about now
SOC_MAX_AHEAD = timedelta(minutes=5)  # clock skew of the reporting system
STEPS_MINUTES = (5, 10, 15, 20, 30, 60)
FORECAST_MAX_SPAN = timedelta(hours=48)
FORECAST_MAX_PAST = timedelta(hours=1)
FORECAST_MAX_AHEAD = timedelta(hours=24)  # where it may start


class SlotOut(Model):
    start: datetime
    end: datetime
    power_kw: float = Field(description="planned: positive charges, negative discharges")
    soc: float = Field(description="planned state of charge at the slot's end, 0..1")


class BatteryOut(Model):
    id: str
    node: str
    capacity_kwh: float
    min_soc: float
    max_soc: float
    max_charge_kw: float
    max_discharge_kw: float
    soc: float = Field(description="state of charge now, 0..1")
    energy_kwh: float
    soc_source: str = Field(description="measured (API or a station meter, newer than the "
                            "last plan), planned (where the last plan put it by now) or "
                            "site_file (its initial_soc)")
    measured_by: str | None
    measured_at: datetime | None
    charge_planned_kwh: float = Field(description="over the newest plan's horizon")
    discharge_planned_kwh: float = Field(description="over the newest plan's horizon")
    planned: list[SlotOut] = Field(description="the newest plan's power and SoC per slot")


class ForecastSlot(Model):
    start: datetime
    end: datetime
    kw: float


class PlantOut(Model):
    id: str
    node: str
    peak_kw: float
    source: str = Field(description="api (a forecast set for the next hours) or site_file")
    api_forecast_until: datetime | None
    forecast: list[ForecastSlot]


class NodeEnergyOut(Model):
    node: str
    storage: list[BatteryOut]
    solar: list[PlantOut]


class SiteEnergyOut(Model):
    site_id: str
    planned_at: datetime | None = Field(description="the newest plan's time, null: none yet")
    nodes: list[NodeEnergyOut] = Field(description="the nodes with a battery or solar")


class SocIn(Body):
    # plain numbers: the bounds are checked below, so every refusal is counted and logged
    soc: float = Field(description="state of charge, 0..1 (a share, not percent)")
    measured_at: AwareDatetime | None = Field(None, description="default: now")


class ForecastIn(Body):
    start: AwareDatetime | None = Field(None, description="default: now, rounded down to "
                                        "the step")
    step_minutes: int = Field(15, description=f"one of {STEPS_MINUTES}")
    kw: list[float] = Field(description="kW per step from start, 0..peak_kw; at most 48 "
                            "hours", max_length=10_000)


def _energy(parts: Parts, site_id: str) -> SiteEnergy:
    return parts.energy.get(site_id) or SiteEnergy()


def _slots(inputs: dict[str, Any]) -> tuple[list[datetime], list[datetime]]:
    starts = [datetime.fromisoformat(t) for t in inputs.get("slot_starts", [])]
    if len(starts) < 2:
        return starts, [s + timedelta(minutes=15) for s in starts]
    return starts, [*starts[1:], starts[-1] + (starts[-1] - starts[-2])]


async def energy_now(parts: Parts, site_id: str, hours: float = 24.0
                     ) -> tuple[SiteEnergyNow, Any]:
    """The site's batteries and solar as the next plan would take them, and the newest
    plan (None if there is none)."""
    now = parts.clock.now()
    last = await parts.store.plans.latest(site_id)
    planned = {} if last is None else trajectories_from_record(last.inputs, last.planned_at)
    return await read_site_energy(parts.store, site_id, _energy(parts, site_id), now,
                                  now + timedelta(hours=hours), planned), last


async def site_energy_view(parts: Parts, site_id: str, hours: int = 24,
                           step_minutes: int = 15) -> SiteEnergyOut:
    energy = _energy(parts, site_id)
    now = parts.clock.now()
    current, last = await energy_now(parts, site_id, hours)
    inputs = last.inputs if last is not None else {}
    starts, ends = _slots(inputs)
    planned = {e["id"]: e for e in inputs.get("storage", [])}
    overrides = await parts.store.storage.forecasts(site_id) if energy.solar else {}
    step = timedelta(minutes=step_minutes)
    t0 = now.replace(second=0, microsecond=0)
    f_starts = [t0 + k * step for k in range(int(timedelta(hours=hours) / step))]
    f_ends = [t + step for t in f_starts]
    nodes: dict[str, NodeEnergyOut] = {}

    def node(node_id: str) -> NodeEnergyOut:
        return nodes.setdefault(node_id, NodeEnergyOut(node=node_id, storage=[], solar=[]))

    for b in current.batteries:
        bat = b.battery
        entry = planned.get(bat.id, {})
        slots = [SlotOut(start=a, end=z, power_kw=p, soc=round(e / bat.capacity_kwh, 4))
                 for a, z, p, e in zip(starts, ends, entry.get("power_kw", []),
                                       entry.get("stored_kwh", []), strict=False)]
        top = bat.capacity_kwh if bat.max_kwh is None else bat.max_kwh
        hours = [(s.end - s.start).total_seconds() / 3600 for s in slots]
        charge = sum(max(s.power_kw, 0.0) * h for s, h in zip(slots, hours, strict=True))
        discharge = sum(max(-s.power_kw, 0.0) * h for s, h in zip(slots, hours, strict=True))
        node(bat.node).storage.append(BatteryOut(
            id=bat.id, node=bat.node, capacity_kwh=bat.capacity_kwh,
            min_soc=round(bat.min_kwh / bat.capacity_kwh, 4),
            max_soc=round(top / bat.capacity_kwh, 4), max_charge_kw=bat.max_charge_kw,
            max_discharge_kw=bat.max_discharge_kw, soc=round(b.soc, 4),
            energy_kwh=round(bat.energy_now_kwh, 3), soc_source=b.source,
            measured_by=b.measured_by, measured_at=b.measured_at,
            charge_planned_kwh=round(charge, 3), discharge_planned_kwh=round(discharge, 3),
            planned=slots))
    for f in current.solar:
        kw = f.power_kw.over(f_starts, f_ends, "min")
        override = overrides.get(f.id)
        node(f.node).solar.append(PlantOut(
            id=f.id, node=f.node, peak_kw=energy.solar_peak_kw.get(f.id, 0.0),
            source=current.solar_source.get(f.id, "site_file"),
            api_forecast_until=override.end if override and override.end > now else None,
            forecast=[ForecastSlot(start=a, end=z, kw=round(float(v), 3))
                      for a, z, v in zip(f_starts, f_ends, kw, strict=True)]))
    return SiteEnergyOut(site_id=site_id, planned_at=None if last is None else last.planned_at,
                         nodes=list(nodes.values()))


@router.get("/{site_id}/energy", responses={404: {"description": "no such site"}})
async def get_site_energy(
    site_id: SiteId, parts: PartsDep,
    hours: Annotated[int, Query(ge=1, le=48, description="forecast span")] = 24,
    step_minutes: Annotated[int, Query(ge=5, le=60)] = 15,
) -> SiteEnergyOut:
    """Per node: each battery's SoC now and its planned power and SoC per slot (the
    newest plan), each solar plant's forecast from now."""
    configured(parts, site_id)
    return await site_energy_view(parts, site_id, hours, step_minutes)


@router.put("/{site_id}/storage/{storage_id}/soc", responses={
    404: {"description": "no such site or battery"},
    422: {"description": "a SoC or time out of bounds (counted and logged)"}})
async def set_soc(site_id: SiteId, storage_id: str, body: SocIn, who: Writer,
                  parts: PartsDep) -> BatteryOut:
    """Report a battery's measured state of charge (a share, 0..1); the next plan starts
    from it, and the site re-plans at once."""
    site = configured(parts, site_id)
    try:
        battery = _energy(parts, site.id).battery(storage_id)
    except KeyError:
        raise not_found(f"battery {storage_id} in site {site_id}") from None
    now = parts.clock.now()
    at = body.measured_at or now
    context = {"site": site.id, "storage_id": storage_id, "by": who.name}
    if not math.isfinite(body.soc) or not 0 <= body.soc <= 1:
        raise rejected("storage_soc", "soc_out_of_range",
                       f"soc must be a share from 0 to 1, got {body.soc}", **context)
    if at > now + SOC_MAX_AHEAD:
        raise rejected("storage_soc", "in_the_future", "measured_at is in the future",
                       **context)
    if at < now - SOC_MAX_AGE:
        raise rejected("storage_soc", "too_old", "measured_at is more than 24 hours ago",
                       **context)
    await parts.store.storage.set_soc(site.id, battery.id, body.soc, at, who.name, now)
    log.info("storage.soc_set", soc=body.soc, measured_at=at.isoformat(), **context)
    parts.events.publish(SiteSettingsChanged(site.id, f"soc of {battery.id}", now))
    view = await site_energy_view(parts, site.id)
    return next(b for n in view.nodes for b in n.storage if b.id == battery.id)


@router.put("/{site_id}/solar/{solar_id}/forecast", responses={
    404: {"description": "no such site or plant"},
    422: {"description": "a value, step or span out of bounds (counted and logged)"}})
async def set_forecast(site_id: SiteId, solar_id: str, body: ForecastIn, who: Writer,
                       parts: PartsDep) -> PlantOut:
    """Set a plant's forecast for the next hours in place of the site file's day (a new
    one replaces it; after its end the site file's day holds again); the site re-plans."""
    site = configured(parts, site_id)
    energy = _energy(parts, site.id)
    if solar_id not in energy.solar_peak_kw:
        raise not_found(f"solar plant {solar_id} in site {site_id}")
    peak = energy.solar_peak_kw[solar_id]
    now = parts.clock.now()
    context = {"site": site.id, "solar_id": solar_id, "by": who.name}
    if body.step_minutes not in STEPS_MINUTES:
        raise rejected("solar_forecast", "bad_step",
                       f"step_minutes must be one of {STEPS_MINUTES}", **context)
    step = timedelta(minutes=body.step_minutes)
    if not body.kw or len(body.kw) * step > FORECAST_MAX_SPAN:
        raise rejected("solar_forecast", "bad_span",
                       "kw needs 1 value at least, and spans at most 48 hours", **context)
    for i, v in enumerate(body.kw):
        if not math.isfinite(v) or not 0 <= v <= peak:
            raise rejected("solar_forecast", "kw_out_of_range",
                           f"kw[{i}] must be 0 to the plant's peak {peak:g} kW, got {v}",
                           **context)
    epoch = datetime(1970, 1, 1, tzinfo=now.tzinfo)
    start = body.start or epoch + ((now - epoch) // step) * step
    if not now - FORECAST_MAX_PAST <= start <= now + FORECAST_MAX_AHEAD:
        raise rejected("solar_forecast", "out_of_window",
                       "start lies within 1 hour back and 24 hours ahead", **context)
    forecast = SolarOverride(start, body.step_minutes, tuple(body.kw), who.name)
    await parts.store.storage.set_forecast(site.id, solar_id, forecast, now)
    log.info("solar.forecast_set", start=start.isoformat(), steps=len(body.kw), **context)
    parts.events.publish(SiteSettingsChanged(site.id, f"forecast of {solar_id}", now))
    return await _plant(parts, site.id, solar_id)


@router.delete("/{site_id}/solar/{solar_id}/forecast", responses={
    404: {"description": "no such site or plant, or no forecast set"}})
async def clear_forecast(site_id: SiteId, solar_id: str, who: Writer,
                         parts: PartsDep) -> PlantOut:
    """Back to the site file's day; the site re-plans."""
    site = configured(parts, site_id)
    if solar_id not in _energy(parts, site.id).solar_peak_kw:
        raise not_found(f"solar plant {solar_id} in site {site_id}")
    if not await parts.store.storage.clear_forecast(site.id, solar_id):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no forecast set for {solar_id}")
    now = parts.clock.now()
    log.info("solar.forecast_cleared", site=site.id, solar_id=solar_id, by=who.name)
    parts.events.publish(SiteSettingsChanged(site.id, f"forecast of {solar_id}", now))
    return await _plant(parts, site.id, solar_id)


async def _plant(parts: Parts, site_id: str, solar_id: str) -> PlantOut:
    view = await site_energy_view(parts, site_id)
    return next(p for n in view.nodes for p in n.solar if p.id == solar_id)
