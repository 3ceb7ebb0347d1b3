"""The site page's battery and solar card (issue 15): per node, each battery's state of
charge now and what the newest plan does with it over the horizon, and each solar plant's
forecast, from the same view the API serves (GET /api/sites/{id}/energy)."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from csms.api.deps import Parts
from csms.api.storage import site_energy_view
from csms.dashboard.i18n import _
from smart_charging.model import Site

SOURCES = {  # how a battery's SoC or a plant's forecast is known, as the page words it
    "measured": _("measured"), "planned": _("as planned"), "site_file": _("site file"),
    "api": _("set through the API"),
}


@dataclass(frozen=True)
class BatteryRow:
    id: str
    node: str
    capacity_kwh: float
    soc_percent: float
    source: str
    measured_at: datetime | None
    power_now_kw: float | None  # planned in the slot holding now: + charges, - discharges
    charge_kwh: float  # planned over the horizon, at the inverter
    discharge_kwh: float
    lowest_soc_percent: float | None


@dataclass(frozen=True)
class PlantRow:
    id: str
    node: str
    peak_kw: float
    now_kw: float | None
    best_kw: float | None
    best_at: datetime | None
    source: str


async def energy_rows(parts: Parts, site: Site) -> tuple[list[BatteryRow], list[PlantRow]]:
    """([], []) for a site with neither."""
    if not parts.energy.get(site.id):
        return [], []
    view = await site_energy_view(parts, site.id)
    now = parts.clock.now()
    batteries, plants = [], []
    for node in view.nodes:
        for b in node.storage:
            current = [s.power_kw for s in b.planned if s.start <= now < s.end]
            batteries.append(BatteryRow(
                b.id, b.node, b.capacity_kwh, round(100 * b.soc, 1),
                SOURCES.get(b.soc_source, b.soc_source), b.measured_at,
                current[0] if current else None, round(b.charge_planned_kwh, 1),
                round(b.discharge_planned_kwh, 1),
                round(100 * min(s.soc for s in b.planned), 1) if b.planned else None))
        for p in node.solar:
            best = max(p.forecast, key=lambda f: f.kw, default=None)
            plants.append(PlantRow(
                p.id, p.node, p.peak_kw, p.forecast[0].kw if p.forecast else None,
                best.kw if best else None, best.start if best else None,
                SOURCES.get(p.source, p.source)))
    return batteries, plants
