"""A site's stationary batteries and solar as a plan sees them (issue 15).

The site file holds each plant; what changes is read at every plan: a battery's state of
charge (the newest measurement, set through the API or sampled by a station's meter as
the `SoC` measurand, if it was taken after the last plan was made; else where the last
plan said the battery would be by now; else the site file's initial SoC), and a solar
forecast set through the API for the next hours in place of the site file's typical day.
Why the plan's trajectory beats an older measurement: the battery follows the plan (a
site controller reads it from the API), so the plan knows what happened since.

The decisions are pure functions; `read_site_energy` is the one read.
"""

from __future__ import annotations

import asyncio
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any

import numpy as np
import structlog

from csms import metrics
from csms.store import Store
from csms.store.storage import SocReading, SolarOverride
from smart_charging import Plan
from smart_charging.model import (
    DailyProfile,
    SiteEnergy,
    SolarForecast,
    StationaryBattery,
    StepSeries,
)

log = structlog.get_logger()


@dataclass(frozen=True)
class Trajectory:
    """A battery's planned stored energy: `start_kwh` at starts[0], stored_kwh[i] at
    ends[i], linear in between (the plan's power is constant over a slot)."""

    made_at: datetime
    starts: tuple[datetime, ...]
    ends: tuple[datetime, ...]
    start_kwh: float
    stored_kwh: tuple[float, ...]

    def at(self, t: datetime) -> float:
        if not self.starts or t <= self.starts[0]:
            return self.start_kwh
        for i, (a, b) in enumerate(zip(self.starts, self.ends, strict=True)):
            if a <= t < b:
                before = self.start_kwh if i == 0 else self.stored_kwh[i - 1]
                share = (t - a) / (b - a)
                return before + (self.stored_kwh[i] - before) * share
        return self.stored_kwh[-1]


@dataclass(frozen=True)
class BatteryNow:
    """A battery as this plan takes it: its stored energy now, and where that came from."""

    battery: StationaryBattery
    source: str  # "measured", "planned" or "site_file"
    measured_by: str | None = None
    measured_at: datetime | None = None

    @property
    def soc(self) -> float:
        return self.battery.energy_now_kwh / self.battery.capacity_kwh


@dataclass(frozen=True)
class SiteEnergyNow:
    batteries: tuple[BatteryNow, ...] = ()
    solar: tuple[SolarForecast, ...] = ()
    solar_source: Mapping[str, str] = field(default_factory=dict)  # plant -> api|site_file

    @property
    def storage(self) -> tuple[StationaryBattery, ...]:
        return tuple(b.battery for b in self.batteries)


def meter_reading(sample: tuple[datetime, float] | None, meter: tuple[str, int],
                  site_id: str, battery_id: str) -> SocReading | None:
    """A station meter's SoC sample (percent) as a reading; one out of 0-100 is refused,
    logged and counted (a meter reporting a share or garbage must not steer the plan)."""
    if sample is None:
        return None
    at, percent = sample
    if not math.isfinite(percent) or not 0 <= percent <= 100:
        metrics.rejected_inputs.labels("storage_soc_meter", "out_of_range").inc()
        log.warning("storage.soc_rejected", site_id=site_id, storage_id=battery_id,
                    station_id=meter[0], evse_id=meter[1], percent=percent)
        return None
    return SocReading(percent / 100.0, at, f"meter:{meter[0]}/{meter[1]}")


def battery_now(battery: StationaryBattery, readings: Sequence[SocReading | None],
                planned: Trajectory | None, now: datetime) -> BatteryNow:
    """The battery with its stored energy now (see the module's docstring for the order)."""
    newest = max((r for r in readings if r is not None), key=lambda r: r.at, default=None)
    if newest is not None and (planned is None or newest.at >= planned.made_at):
        kwh, source = newest.soc * battery.capacity_kwh, "measured"
    elif planned is not None:
        kwh, source, newest = planned.at(now), "planned", None
    else:
        return BatteryNow(battery, "site_file")
    kwh = min(max(kwh, 0.0), battery.capacity_kwh)
    return BatteryNow(replace(battery, energy_now_kwh=kwh), source,
                      newest.source if newest else None, newest.at if newest else None)


def solar_series(plant: SolarForecast, override: SolarOverride | None, now: datetime,
                 end: datetime) -> SolarForecast:
    """The plant's forecast with an API forecast spliced over the span it covers; after
    that span the site file's day again."""
    if override is None or override.end <= now or override.start >= end:
        return plant
    base = plant.power_kw
    steps = base.to_steps(min(now, override.start), max(end, override.end)) \
        if isinstance(base, DailyProfile) else base
    times, values = list(steps.times), list(steps.values)
    before = [(t, v) for t, v in zip(times, values, strict=True) if t < override.start]
    step = override.end - override.start
    step /= len(override.kw)
    mine = [(override.start + k * step, v) for k, v in enumerate(override.kw)]
    at_end = float(steps.over([override.end], [override.end], "max")[0])
    after = [(t, v) for t, v in zip(times, values, strict=True) if t > override.end]
    points = before + mine + [(override.end, at_end)] + after
    return replace(plant, power_kw=StepSeries(tuple(t for t, _ in points),
                                              tuple(v for _, v in points)))


async def read_site_energy(store: Store, site_id: str, energy: SiteEnergy, now: datetime,
                           end: datetime, planned: Mapping[str, Trajectory]) -> SiteEnergyNow:
    """The site's batteries and solar for a plan from `now` to `end`."""
    if not energy:
        return SiteEnergyNow((), (), {})
    api_soc, overrides = await asyncio.gather(store.storage.soc(site_id),
                                              store.storage.forecasts(site_id))
    batteries = []
    for b in energy.batteries:
        meter = energy.soc_meters.get(b.id)
        metered = None if meter is None else meter_reading(
            await store.storage.meter_soc(*meter), meter, site_id, b.id)
        batteries.append(battery_now(b, [api_soc.get(b.id), metered], planned.get(b.id), now))
    solar, source = [], {}
    for f in energy.solar:
        spliced = solar_series(f, overrides.get(f.id), now, end)
        solar.append(spliced)
        source[f.id] = "api" if spliced is not f else "site_file"
    return SiteEnergyNow(tuple(batteries), tuple(solar), source)


def trajectories(plan: Plan, inputs: SiteEnergyNow) -> dict[str, Trajectory]:
    """Each battery's planned stored energy; a plan without it (charge-only fallback:
    the battery idle) keeps it where it was."""
    out = {}
    for b in inputs.batteries:
        e0 = b.battery.energy_now_kwh
        stored = (e0,) * len(plan.slot_starts)
        if plan.storage_stored_kwh is not None and b.battery.id in plan.storage_ids:
            i = plan.storage_ids.index(b.battery.id)
            stored = tuple(float(v) for v in plan.storage_stored_kwh[i])
        out[b.battery.id] = Trajectory(plan.now, plan.slot_starts, plan.slot_ends, e0, stored)
    return out


def trajectories_from_record(inputs: dict[str, Any], made_at: datetime
                             ) -> dict[str, Trajectory]:
    """The trajectories a stored plan holds (a site just taken over continues from them)."""
    starts = tuple(datetime.fromisoformat(t) for t in inputs.get("slot_starts", []))
    if not starts:
        return {}
    if len(starts) < 2:
        return {}
    ends = (*starts[1:], starts[-1] + (starts[-1] - starts[-2]))  # the first may be short
    out = {}
    for entry in inputs.get("storage", []):
        stored = tuple(float(v) for v in entry.get("stored_kwh", []))
        if len(stored) != len(starts):
            continue
        out[entry["id"]] = Trajectory(made_at, starts, ends, float(entry["energy_now_kwh"]),
                                      stored)
    return out


def record_entries(plan: Plan, inputs: SiteEnergyNow, root: str,
                   paths: Mapping[str, list[str]]) -> dict[str, Any]:
    """What the stored plan keeps of storage and solar (per slot, as the plan's other
    series): each battery's planned power (kW, negative: discharge) and stored energy,
    each plant's forecast, and the totals under the root node."""
    if not inputs.batteries and not inputs.solar:
        return {}
    starts, ends = list(plan.slot_starts), list(plan.slot_ends)
    plans = trajectories(plan, inputs)
    storage, storage_total = [], np.zeros(len(starts))
    for b in inputs.batteries:
        bat = b.battery
        power = np.zeros(len(starts))
        if plan.storage_power_kw is not None and bat.id in plan.storage_ids:
            power = np.asarray(plan.storage_power_kw[plan.storage_ids.index(bat.id)])
        if root in paths[bat.node]:
            storage_total += power
        storage.append({
            "id": bat.id, "node": bat.node, "capacity_kwh": round(bat.capacity_kwh, 3),
            "min_kwh": round(bat.min_kwh, 3),
            "max_kwh": round(bat.capacity_kwh if bat.max_kwh is None else bat.max_kwh, 3),
            "energy_now_kwh": round(bat.energy_now_kwh, 3), "soc": round(b.soc, 4),
            "soc_source": b.source, "measured_by": b.measured_by,
            "measured_at": b.measured_at and b.measured_at.isoformat(),
            "power_kw": [round(float(v), 3) for v in power],
            "stored_kwh": [round(v, 3) for v in plans[bat.id].stored_kwh],
        })
    solar, solar_total = [], np.zeros(len(starts))
    for f in inputs.solar:
        kw = f.power_kw.over(starts, ends, "min") if starts else np.zeros(0)
        if root in paths[f.node]:
            solar_total += kw
        solar.append({"id": f.id, "node": f.node, "source": inputs.solar_source[f.id],
                      "forecast_kw": [round(float(v), 3) for v in kw]})
    return {"storage": storage, "solar": solar,
            "storage_kw": [round(float(v), 3) for v in storage_total],
            "solar_kw": [round(float(v), 3) for v in solar_total]}
