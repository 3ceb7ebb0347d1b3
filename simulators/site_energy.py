"""On-site solar and a simple stationary battery for a scenario (issue 15).

Solar is a negative household load on its node: the simulated node load (and so the
summary's node peaks) is EV load + household - solar + battery. The battery is a local
peak-shaving controller, as a site's own energy-management box runs one: it discharges
what the node's load without it has above `discharge_above_kw` (default: the node's
limit) and charges into what is below `charge_below_kw` (default 0: from surplus solar
only), within its power and state-of-charge window. It does not follow the CSMS's plan:
nothing tells it the plan over the wire yet, and the simulator shares no code with the
CSMS, so what the trace shows is what such a controller would do, not what was planned.

Everything here is pure: the fleet hands each sample's time and load in.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

# A clear day's output as shares of peak, by local hour from 00:00 (sunrise 06:00, noon
# peak, sunset 18:00); a scenario's `shape` replaces it.
CLEAR_SKY: tuple[float, ...] = (
    0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.07, 0.29, 0.52, 0.74, 0.9, 0.99,
    0.99, 0.9, 0.74, 0.52, 0.29, 0.07, 0.0, 0.0, 0.0, 0.0, 0.0, 0.0,
)
MAX_KW = 100_000.0
MAX_KWH = 100_000.0


@dataclass(frozen=True)
class SolarPlant:
    id: str
    node: str
    peak_kw: float
    shape: tuple[float, ...] = CLEAR_SKY  # shares of peak, any resolution dividing a day

    def kw_at(self, local: datetime) -> float:
        minute = local.hour * 60 + local.minute
        return self.peak_kw * self.shape[minute * len(self.shape) // 1440]


@dataclass(frozen=True)
class BatterySpec:
    id: str
    node: str
    capacity_kwh: float
    max_charge_kw: float
    max_discharge_kw: float
    initial_soc: float = 0.5
    min_soc: float = 0.0
    max_soc: float = 1.0
    round_trip_efficiency: float = 0.9
    discharge_above_kw: float | None = None  # None: the node's limit
    charge_below_kw: float = 0.0


@dataclass
class Battery:
    """A battery's state through a run: its power holds from one sample to the next."""

    spec: BatterySpec
    energy_kwh: float = 0.0
    power_kw: float = 0.0  # + charging, - discharging (at its terminals)
    charged_kwh: float = 0.0
    discharged_kwh: float = 0.0
    _last: datetime | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        self.energy_kwh = self.spec.initial_soc * self.spec.capacity_kwh

    @property
    def soc(self) -> float:
        return self.energy_kwh / self.spec.capacity_kwh

    def sample(self, at: datetime, net_kw: float, limit_kw: float | None) -> float:
        """Account the power held since the last sample, then choose the power from now
        given the node's load without the battery (kW); returns it."""
        s = self.spec
        eta = math.sqrt(s.round_trip_efficiency)  # each way
        if self._last is not None and at > self._last:
            hours = (at - self._last).total_seconds() / 3600.0
            lo, hi = s.min_soc * s.capacity_kwh, s.max_soc * s.capacity_kwh
            if self.power_kw > 0:
                kwh = min(self.power_kw * hours, max(hi - self.energy_kwh, 0.0) / eta)
                self.energy_kwh += kwh * eta
                self.charged_kwh += kwh
            elif self.power_kw < 0:
                kwh = min(-self.power_kw * hours, max(self.energy_kwh - lo, 0.0) * eta)
                self.energy_kwh -= kwh / eta
                self.discharged_kwh += kwh
        self._last = at
        above = s.discharge_above_kw if s.discharge_above_kw is not None else limit_kw
        if above is not None and net_kw > above and self.soc > s.min_soc + 1e-9:
            self.power_kw = -min(net_kw - above, s.max_discharge_kw)
        elif net_kw < s.charge_below_kw and self.soc < s.max_soc - 1e-9:
            self.power_kw = min(s.charge_below_kw - net_kw, s.max_charge_kw)
        else:
            self.power_kw = 0.0
        return self.power_kw


def _number(where: str, name: str, value: Any, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) \
            or not math.isfinite(value) or not lo <= value <= hi:
        raise ValueError(f"{where}: {name} must be a number in [{lo:g}, {hi:g}], got {value!r}")
    return float(value)


def solar_from_dict(d: dict[str, Any], nodes: set[str]) -> SolarPlant:
    where = f"[[solar]] {d.get('id', '?')}"
    if not isinstance(d.get("id"), str) or d.get("node") not in nodes:
        raise ValueError(f"{where}: needs an id and the id of one of the scenario's nodes")
    shape = d.get("shape", CLEAR_SKY)
    if not isinstance(shape, list | tuple) or not shape or 1440 % len(shape):
        raise ValueError(f"{where}: shape needs a number of values that divides a day")
    return SolarPlant(d["id"], d["node"], _number(where, "peak_kw", d.get("peak_kw"), 0, MAX_KW),
                      tuple(_number(where, f"shape[{i}]", v, 0, 1) for i, v in enumerate(shape)))


def battery_from_dict(d: dict[str, Any], nodes: set[str]) -> BatterySpec:
    where = f"[[storage]] {d.get('id', '?')}"
    if not isinstance(d.get("id"), str) or d.get("node") not in nodes:
        raise ValueError(f"{where}: needs an id and the id of one of the scenario's nodes")
    lo = _number(where, "min_soc", d.get("min_soc", 0.0), 0, 1)
    hi = _number(where, "max_soc", d.get("max_soc", 1.0), lo, 1)
    above = d.get("discharge_above_kw")
    return BatterySpec(
        d["id"], d["node"],
        capacity_kwh=_number(where, "capacity_kwh", d.get("capacity_kwh"), 0.001, MAX_KWH),
        max_charge_kw=_number(where, "max_charge_kw", d.get("max_charge_kw"), 0, MAX_KW),
        max_discharge_kw=_number(where, "max_discharge_kw", d.get("max_discharge_kw"), 0,
                                 MAX_KW),
        initial_soc=_number(where, "initial_soc", d.get("initial_soc", 0.5), lo, hi),
        min_soc=lo, max_soc=hi,
        round_trip_efficiency=_number(where, "round_trip_efficiency",
                                      d.get("round_trip_efficiency", 0.9), 0.25, 1),
        discharge_above_kw=None if above is None
        else _number(where, "discharge_above_kw", above, 0, MAX_KW),
        charge_below_kw=_number(where, "charge_below_kw", d.get("charge_below_kw", 0.0), 0,
                                MAX_KW))
