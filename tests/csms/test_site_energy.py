"""The pure rules of csms/scheduling/site_energy.py: which state of charge a plan starts
from, and how a forecast set through the API is spliced into the site file's day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from prometheus_client import REGISTRY

from csms.scheduling.site_energy import (
    Trajectory,
    battery_now,
    meter_reading,
    solar_series,
    trajectories_from_record,
)
from csms.store.storage import SocReading, SolarOverride
from smart_charging.model import DailyProfile, SolarForecast, StationaryBattery

T0 = datetime(2026, 12, 5, 12, 0, tzinfo=UTC)
MIN15 = timedelta(minutes=15)
BATTERY = StationaryBattery("bess", "t", capacity_kwh=100, energy_now_kwh=50,
                            max_charge_kw=20, max_discharge_kw=20)
PLAN = Trajectory(T0, (T0, T0 + MIN15), (T0 + MIN15, T0 + 2 * MIN15), 50.0, (45.0, 40.0))


def test_a_trajectory_is_linear_within_a_slot() -> None:
    assert PLAN.at(T0 - MIN15) == 50.0
    assert PLAN.at(T0 + MIN15 / 3) == pytest.approx(50 - 5 / 3)
    assert PLAN.at(T0 + MIN15 * 1.5) == pytest.approx(42.5)
    assert PLAN.at(T0 + MIN15 * 9) == 40.0


def test_a_reading_after_the_plan_beats_it_and_an_older_one_does_not() -> None:
    now = T0 + MIN15
    newer = SocReading(0.8, T0 + timedelta(minutes=5), "api:ops")
    older = SocReading(0.2, T0 - timedelta(minutes=5), "meter:B/0")
    got = battery_now(BATTERY, [older, newer], PLAN, now)
    assert (got.battery.energy_now_kwh, got.source, got.measured_by) == (80.0, "measured",
                                                                        "api:ops")
    got = battery_now(BATTERY, [older, None], PLAN, now)
    assert (got.battery.energy_now_kwh, got.source) == (45.0, "planned")
    got = battery_now(BATTERY, [older], None, now)
    assert (got.battery.energy_now_kwh, got.source) == (20.0, "measured")
    assert battery_now(BATTERY, [], None, now).source == "site_file"


def test_a_meter_reading_out_of_percent_is_refused_and_counted() -> None:
    labels = {"input": "storage_soc_meter", "reason": "out_of_range"}
    before = REGISTRY.get_sample_value("csms_rejected_inputs_total", labels) or 0.0
    assert meter_reading((T0, 135.0), ("B", 0), "s", "bess") is None
    assert REGISTRY.get_sample_value("csms_rejected_inputs_total", labels) == before + 1
    assert meter_reading((T0, 40.0), ("B", 0), "s", "bess") == SocReading(0.4, T0, "meter:B/0")
    assert meter_reading(None, ("B", 0), "s", "bess") is None


def test_a_forecast_holds_over_its_span_and_the_day_after_it() -> None:
    plant = SolarForecast("pv", "t", DailyProfile((10.0,) * 24))
    override = SolarOverride(T0 + MIN15, 15, (30.0, 20.0))
    got = solar_series(plant, override, T0, T0 + timedelta(hours=4)).power_kw
    starts = [T0 + k * MIN15 for k in range(5)]
    assert list(got.over(starts, [s + MIN15 for s in starts], "min")) == [10, 30, 20, 10, 10]
    assert solar_series(plant, SolarOverride(T0 - 4 * MIN15, 15, (1.0,)), T0,
                        T0 + MIN15) is plant  # over already


def test_trajectories_come_back_from_a_stored_plan() -> None:
    inputs = {"slot_starts": [(T0 + k * MIN15).isoformat() for k in range(3)],
              "storage": [{"id": "bess", "energy_now_kwh": 50.0,
                           "stored_kwh": [45.0, 40.0, 35.0]}, {"id": "short", "stored_kwh": []}]}
    got = trajectories_from_record(inputs, T0)
    assert set(got) == {"bess"}
    assert got["bess"].at(T0 + 3 * MIN15) == 35.0
    assert got["bess"].at(T0 + MIN15 * 2.5) == pytest.approx(37.5)
    assert trajectories_from_record({}, T0) == {}
