"""Site files' `[[storage]]` and `[[solar]]` (issue 15): parsed into the engine's
StationaryBattery and SolarForecast, every bound refused with the field named."""

from __future__ import annotations

import math
from datetime import timedelta
from typing import Any

import pytest

from smart_charging.config import CLEAR_SKY, energy_from_dict, site_from_dict

NODES: list[dict[str, Any]] = [{"id": "transformer", "limit_kw": 100.0},
                               {"id": "feeder", "parent": "transformer", "limit_kw": 50.0}]
BATTERY: dict[str, Any] = {"id": "bess", "node": "feeder", "capacity_kwh": 200,
                           "min_soc": 0.1, "max_soc": 0.9, "initial_soc": 0.5,
                           "max_charge_kw": 50, "max_discharge_kw": 60}
PLANT: dict[str, Any] = {"id": "pv", "node": "transformer", "peak_kw": 80}


def parse(storage: list[dict[str, Any]] = (), solar: list[dict[str, Any]] = ()) -> Any:
    data = {"site": {"id": "s", "utc_offset": "+08:00"}, "nodes": NODES,
            "storage": list(storage), "solar": list(solar)}
    return energy_from_dict(data, site_from_dict(data))


def test_a_battery_in_shares_of_capacity_becomes_the_engines_kwh() -> None:
    energy = parse([BATTERY | {"round_trip_efficiency": 0.81, "wear_per_kwh": 0.1,
                               "meter_station_id": "BESS01", "meter_evse_id": 0}])
    b = energy.battery("bess")
    assert (b.node, b.capacity_kwh, b.min_kwh, b.max_kwh, b.energy_now_kwh) == (
        "feeder", 200.0, 20.0, 180.0, 100.0)
    assert (b.max_charge_kw, b.max_discharge_kw, b.wear_per_kwh) == (50.0, 60.0, 0.1)
    assert b.charge_efficiency == pytest.approx(0.9) == b.discharge_efficiency
    assert energy.soc_meters == {"bess": ("BESS01", 0)}
    assert not b.export_allowed and bool(energy)


def test_separate_efficiencies_and_defaults() -> None:
    b = parse([BATTERY | {"charge_efficiency": 0.97, "discharge_efficiency": 0.9}]).batteries[0]
    assert (b.charge_efficiency, b.discharge_efficiency, b.wear_per_kwh) == (0.97, 0.9, None)
    plain = {k: v for k, v in BATTERY.items() if k not in ("min_soc", "max_soc", "initial_soc")}
    b = parse([plain]).batteries[0]
    assert (b.min_kwh, b.max_kwh, b.energy_now_kwh) == (0.0, 200.0, 0.0)


def test_solar_by_profile_by_shape_or_clear_sky() -> None:
    energy = parse(solar=[PLANT, PLANT | {"id": "roof", "shape": [0.5] * 96},
                          PLANT | {"id": "kw", "profile_kw": [0.0] * 12 + [40.0] * 12}])
    clear, shaped, profiled = energy.solar
    assert clear.power_kw.values == tuple(80 * f for f in CLEAR_SKY)
    assert clear.power_kw.utc_offset == timedelta(hours=8)
    assert max(clear.power_kw.values) == pytest.approx(79.2)
    assert shaped.power_kw.values == (40.0,) * 96
    assert profiled.power_kw.values[12:] == (40.0,) * 12
    assert energy.solar_peak_kw == {"pv": 80.0, "roof": 80.0, "kw": 80.0}
    assert not parse()


@pytest.mark.parametrize(("entry", "message"), [
    (BATTERY | {"capacity_kwh": 0}, r"\[\[storage\]\] bess: capacity_kwh must be a number in"),
    (BATTERY | {"capacity_kwh": 1e9}, "capacity_kwh must be a number in"),
    (BATTERY | {"capacity_kwh": math.nan}, "capacity_kwh"),
    (BATTERY | {"capacity_kwh": "200"}, "capacity_kwh"),
    (BATTERY | {"min_soc": -0.1}, "min_soc must be a number in"),
    (BATTERY | {"max_soc": 95}, "max_soc must be a number in"),
    (BATTERY | {"min_soc": 0.9, "max_soc": 0.5}, "max_soc .* must be above min_soc"),
    (BATTERY | {"initial_soc": 1.5}, "initial_soc"),
    (BATTERY | {"max_charge_kw": 0}, "max_charge_kw"),
    (BATTERY | {"max_discharge_kw": -5}, "max_discharge_kw"),
    (BATTERY | {"round_trip_efficiency": 1.2}, "round_trip_efficiency"),
    (BATTERY | {"round_trip_efficiency": 0.9, "charge_efficiency": 0.9}, "not both"),
    (BATTERY | {"charge_efficiency": 0.1}, "charge_efficiency"),
    (BATTERY | {"wear_per_kwh": -1}, "wear_per_kwh"),
    (BATTERY | {"export_allowed": "yes"}, "export_allowed"),
    (BATTERY | {"meter_evse_id": 1}, "meter_evse_id without meter_station_id"),
    (BATTERY | {"capacity": 200}, r"unknown key\(s\) capacity"),
    (BATTERY | {"node": "nowhere"}, "unknown node 'nowhere'"),
    ({k: v for k, v in BATTERY.items() if k != "id"}, r"\[\[storage\]\] #1: id"),
])
def test_a_bad_battery_is_refused_naming_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse([entry])


@pytest.mark.parametrize(("entry", "message"), [
    (PLANT | {"peak_kw": 0}, r"\[\[solar\]\] pv: peak_kw must be a number in"),
    (PLANT | {"peak_kw": math.inf}, "peak_kw"),
    (PLANT | {"shape": [0.5] * 7}, "count divides a day"),
    (PLANT | {"shape": [1.5] * 24}, r"shape\[0\] must be a number in \[0, 1\]"),
    (PLANT | {"profile_kw": [90.0] * 24}, r"profile_kw\[0\] must be a number in \[0, 80\]"),
    (PLANT | {"profile_kw": [1.0] * 24, "shape": [1.0] * 24}, "not both"),
    (PLANT | {"node": 3}, "node must name a node"),
    (PLANT | {"azimuth": 180}, "unknown key"),
])
def test_a_bad_plant_is_refused_naming_the_field(entry: dict[str, Any], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse(solar=[entry])


def test_two_entries_of_one_id_are_refused() -> None:
    with pytest.raises(ValueError, match="two entries with this id"):
        parse([BATTERY, BATTERY])
