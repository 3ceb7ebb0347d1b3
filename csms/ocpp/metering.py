"""Block J, metering: MeterValues (J01) and the sampled-value parsing TransactionEvent shares."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from csms.clock import parse_ocpp
from csms.connection import StationContext
from csms.events import PowerSampled
from csms.frames import FrameError, Payload
from csms.ocpp.deps import Deps
from csms.ocpp.schemas import DECIMAL_LIMIT
from csms.store.meter import MeterRow

ENERGY_REGISTER = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"
POWER_EXPORT = "Power.Active.Export"
_KILO_UNITS = {"kWh": "Wh", "kW": "W", "kvarh": "varh", "kvar": "var", "kVA": "VA", "kVAh": "VAh"}


def meter_rows(
    station_id: str, evse_id: int, transaction_id: str | None, meter_values: list[Payload]
) -> list[MeterRow]:
    """One row per sampled value, with kilo-units and multipliers folded into the value.

    The schema has bounded the value (+-1e12) and the multiplier (+-12); the folded value
    must stay within the same physical bound (PropertyConstraintViolation)."""
    rows = []
    for meter_value in meter_values:
        ts = parse_ocpp(meter_value["timestamp"])
        for sampled in meter_value["sampledValue"]:
            unit_of_measure = sampled.get("unitOfMeasure") or {}
            unit = unit_of_measure.get("unit")
            value = float(sampled["value"]) * 10.0 ** unit_of_measure.get("multiplier", 0)
            if unit in _KILO_UNITS:
                value, unit = value * 1000, _KILO_UNITS[unit]
            if not -DECIMAL_LIMIT <= value <= DECIMAL_LIMIT:
                raise FrameError("PropertyConstraintViolation",
                                 f"sampled value {value:.3g} {unit or ''} is beyond 1e12")
            measurand = sampled.get("measurand", ENERGY_REGISTER)
            if unit is None and measurand.startswith("Energy.Active"):
                unit = "Wh"
            rows.append(MeterRow(
                station_id=station_id,
                evse_id=evse_id,
                ts=ts,
                measurand=measurand,
                phase=sampled.get("phase", ""),
                location=sampled.get("location", "Outlet"),
                context=sampled.get("context"),
                transaction_id=transaction_id,
                value=value,
                unit=unit,
            ))
    return rows


def energy_range(rows: list[MeterRow]) -> tuple[float | None, float | None]:
    """Lowest and highest whole-meter energy register reading among `rows`."""
    values = [
        r.value for r in rows
        if r.measurand == ENERGY_REGISTER and r.phase == "" and r.location == "Outlet"
    ]
    return (min(values), max(values)) if values else (None, None)


def signed_power(imported: float | None, exported: float | None) -> float:
    """An EVSE's net power (negative: it feeds back) from its whole-meter samples. Stations
    say a discharge either as Power.Active.Export (a magnitude, import 0) or as a negative
    Power.Active.Import, some both: a negative import is already the net power."""
    if imported is not None and (imported < 0 or exported is None):
        return imported
    return (imported or 0.0) - (exported or 0.0)


def publish_power(deps: Deps, rows: list[MeterRow]) -> None:
    """One signed power sample per EVSE and time (`signed_power`)."""
    found: dict[tuple[str, int, datetime], dict[str, float]] = {}
    for r in rows:
        if r.phase == "" and r.measurand in (POWER, POWER_EXPORT):
            found.setdefault((r.station_id, r.evse_id, r.ts), {})[r.measurand] = r.value
    for (station_id, evse_id, ts), sample in found.items():
        deps.events.publish(PowerSampled(station_id, evse_id, ts, signed_power(
            sample.get(POWER), sample.get(POWER_EXPORT))))


@dataclass(frozen=True)
class MeterValues:
    deps: Deps

    async def __call__(self, ctx: StationContext, req: Payload) -> Payload:
        rows = meter_rows(ctx.station_id, req["evseId"], None, req["meterValue"])
        await self.deps.store.meter.write(rows)
        publish_power(self.deps, rows)
        return {}
