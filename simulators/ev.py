"""An electric vehicle as a charger sees it: a battery behind an onboard charger.

The EV draws the least of: its own maximum (AC onboard-charger current or DC power), what the
battery accepts (constant current up to ~80% SoC, then a constant-voltage taper), and the
limit the EVSE offers. It stops drawing when the driver's energy is delivered or it is full.

A bidirectional EV (ISO 15118-20 BPT) can also feed energy back, at most
`max_discharge_power_w`, and never below `min_soc`: its battery management keeps that reserve
whatever the EVSE asks. The driver's energy is counted net: what it gave back must be charged
again before the EV is satisfied.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

TAPER_START_SOC = 0.8
MIN_TAPER_FRACTION = 0.05
RESERVE_SNAP_WH = 0.01  # closer to the reserve than this is at it


@dataclass
class EV:
    battery_kwh: float = 60.0
    soc: float = 0.3
    max_ac_current_a: float = 32.0
    max_dc_power_w: float = 50_000.0
    energy_wanted_wh: float = 20_000.0
    departure: datetime | None = None
    iso15118: bool = False
    ac_phases: int = 3
    energy_received_wh: float = 0.0  # net: charged minus discharged
    bidirectional: bool = False
    min_soc: float = 0.0  # the V2X reserve: no discharge below it
    max_discharge_power_w: float | None = None  # None: as much as it can charge
    energy_discharged_wh: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.soc <= 1.0:
            raise ValueError("soc must be within 0..1")
        if not 0.0 <= self.min_soc <= 1.0:
            raise ValueError("min_soc must be within 0..1")
        if self.battery_kwh <= 0:
            raise ValueError("battery_kwh must be positive")
        if self.max_discharge_power_w is not None and self.max_discharge_power_w < 0:
            raise ValueError("max_discharge_power_w is a magnitude: not negative")

    @property
    def satisfied(self) -> bool:
        """The driver's energy is delivered or the battery is full: the EV stops drawing."""
        return self.energy_received_wh >= self.energy_wanted_wh or self.soc >= 1.0

    def taper_fraction(self) -> float:
        """Share of the EV's maximum the battery accepts at the current SoC (CC-CV)."""
        if self.soc >= 1.0:
            return 0.0
        if self.soc <= TAPER_START_SOC:
            return 1.0
        return max(MIN_TAPER_FRACTION, (1.0 - self.soc) / (1.0 - TAPER_START_SOC))

    def ac_current_a(self, offered_a: float) -> float:
        """Current per phase the EV draws when the EVSE offers `offered_a` per phase."""
        if self.satisfied:
            return 0.0
        return max(0.0, min(offered_a, self.max_ac_current_a * self.taper_fraction()))

    def dc_power_w(self, offered_w: float) -> float:
        """DC power the EV draws when the EVSE offers `offered_w`."""
        if self.satisfied:
            return 0.0
        return max(0.0, min(offered_w, self.max_dc_power_w * self.taper_fraction()))

    def charge(self, energy_wh: float) -> None:
        """Put `energy_wh` into the battery (losses ignored)."""
        if energy_wh <= 0:
            return
        room_wh = (1.0 - self.soc) * self.battery_kwh * 1000.0
        energy_wh = min(energy_wh, room_wh)
        self.energy_received_wh += energy_wh
        self.soc = min(1.0, self.soc + energy_wh / (self.battery_kwh * 1000.0))

    def discharge_limit_w(self, charge_max_w: float) -> float:
        """The most it feeds back now (W, >= 0): nothing unless bidirectional and above its
        reserve. `charge_max_w` is its charging maximum at this EVSE (the default)."""
        if not self.bidirectional or self.soc <= self.min_soc:
            return 0.0
        if self.max_discharge_power_w is None:
            return charge_max_w
        return self.max_discharge_power_w

    @property
    def dischargeable_wh(self) -> float:
        """Energy it can still give back before it reaches its reserve."""
        if not self.bidirectional:
            return 0.0
        return max(0.0, (self.soc - self.min_soc) * self.battery_kwh * 1000.0)

    def discharge(self, energy_wh: float) -> float:
        """Take `energy_wh` out of the battery (losses ignored), never below the reserve;
        return what was taken."""
        available = self.dischargeable_wh
        if energy_wh <= 0:
            return 0.0
        energy_wh = min(energy_wh, available)
        if available - energy_wh < RESERVE_SNAP_WH:  # at the reserve: stop, not creep to it
            energy_wh = available
        if energy_wh <= 0:
            return 0.0
        self.energy_received_wh -= energy_wh
        self.energy_discharged_wh += energy_wh
        if energy_wh == available:
            self.soc = self.min_soc
        else:
            self.soc -= energy_wh / (self.battery_kwh * 1000.0)
        return energy_wh

    @property
    def energy_needed_wh(self) -> float:
        """Energy still wanted, bounded by the room left in the battery."""
        room_wh = (1.0 - self.soc) * self.battery_kwh * 1000.0
        return max(0.0, min(self.energy_wanted_wh - self.energy_received_wh, room_wh))
