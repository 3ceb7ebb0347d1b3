"""An electric vehicle as a charger sees it: a battery behind an onboard charger.

The EV draws the least of: its own maximum (AC onboard-charger current or DC power), what the
battery accepts (constant current up to ~80% SoC, then a constant-voltage taper), and the
limit the EVSE offers. It stops drawing when the driver's energy is delivered or it is full.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

TAPER_START_SOC = 0.8
MIN_TAPER_FRACTION = 0.05


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
    energy_received_wh: float = 0.0

    def __post_init__(self) -> None:
        if not 0.0 <= self.soc <= 1.0:
            raise ValueError("soc must be within 0..1")
        if self.battery_kwh <= 0:
            raise ValueError("battery_kwh must be positive")

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

    @property
    def energy_needed_wh(self) -> float:
        """Energy still wanted, bounded by the room left in the battery."""
        room_wh = (1.0 - self.soc) * self.battery_kwh * 1000.0
        return max(0.0, min(self.energy_wanted_wh - self.energy_received_wh, room_wh))
