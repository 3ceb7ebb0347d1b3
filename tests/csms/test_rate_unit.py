"""The unit of the scheduler's profiles for a station's reported RateUnit (K01)."""

from __future__ import annotations

from csms.scheduling.gateway import Capabilities, rate_unit_for
from smart_charging.model import Evse, Wiring

AC = Evse("ac", "tx", rate_unit="W")
DC = Evse("dc", "tx", wiring=Wiring.DC, max_power_kw=50.0)


def test_the_site_files_choice_wins_when_the_station_takes_it() -> None:
    assert rate_unit_for(AC, Capabilities(("A", "W"))) == "W"
    assert rate_unit_for(AC, Capabilities(("A",))) == "A"


def test_an_ac_station_without_a_usable_rate_unit_is_planned_in_amps() -> None:
    """Was: no profile at all ("no supported rate unit")."""
    assert rate_unit_for(AC, Capabilities(("kW",))) == "A"
    assert rate_unit_for(AC, Capabilities(())) == "A"


def test_dc_is_planned_in_watts_only() -> None:
    assert rate_unit_for(DC, Capabilities(("A", "W"))) == "W"
    assert rate_unit_for(DC, Capabilities(("A",))) is None
