import json
from dataclasses import replace
from datetime import timedelta
from importlib import resources

import jsonschema
import numpy as np
import pytest

from smart_charging import Planner, charging_profile_for, profile_from_schedule
from tests.smart_charging.helpers import DAY, at, evening_sessions, jiangsu_prices, residential_site


@pytest.fixture(scope="module")
def plan_and_schema():
    site = residential_site()
    sessions = evening_sessions(site, DAY)
    plan = Planner().plan(site, sessions, jiangsu_prices(), at(DAY, 17, 7))
    schema_file = resources.files("ocpp") / "v201/schemas/SetChargingProfileRequest.json"
    return plan, json.loads(schema_file.read_text())


def _validate(schema: dict, profile: dict) -> None:
    jsonschema.validate({"evseId": 1, "chargingProfile": profile}, schema)


def _limit_at(profile: dict, offset: float) -> float:
    periods = profile["chargingSchedule"][0]["chargingSchedulePeriod"]
    return [p["limit"] for p in periods if p["startPeriod"] <= offset][-1]


def test_profile_validates_and_follows_the_plan(plan_and_schema) -> None:
    plan, schema = plan_and_schema
    evse_id = plan.evse_ids[3]
    profile = charging_profile_for(plan, evse_id, profile_id=42, max_periods=1024)
    _validate(schema, profile)
    sched = profile["chargingSchedule"][0]
    starts = [p["startPeriod"] for p in sched["chargingSchedulePeriod"]]
    assert starts[0] == 0 and starts == sorted(set(starts))
    assert profile["transactionId"] == plan.transaction_ids[3]
    assert sched["startSchedule"] == "2026-11-23T09:07:00Z"
    i = plan.evse_ids.index(evse_id)
    for t, ts in enumerate(plan.slot_starts):
        offset = (ts - plan.slot_starts[0]).total_seconds()
        assert _limit_at(profile, offset) == pytest.approx(plan.current_a[i, t])


def test_period_cap_never_allows_more_than_the_plan(plan_and_schema) -> None:
    plan, schema = plan_and_schema
    i = int(np.argmax([len(set(row)) for row in plan.current_a]))
    full = charging_profile_for(plan, plan.evse_ids[i], profile_id=1, max_periods=1024)
    n_full = len(full["chargingSchedule"][0]["chargingSchedulePeriod"])
    assert n_full > 5
    capped = charging_profile_for(plan, plan.evse_ids[i], profile_id=1, max_periods=5)
    _validate(schema, capped)
    assert len(capped["chargingSchedule"][0]["chargingSchedulePeriod"]) == 5
    for t, ts in enumerate(plan.slot_starts):
        offset = (ts - plan.slot_starts[0]).total_seconds()
        assert _limit_at(capped, offset) <= plan.current_a[i, t] + 1e-9


def test_watts_and_default_profile(plan_and_schema) -> None:
    plan, schema = plan_and_schema
    sched = plan.schedule_for(plan.evse_ids[0])
    prof = profile_from_schedule(sched, profile_id=7, rate_unit="W", purpose="TxDefaultProfile",
                                 stack_level=1)
    _validate(schema, prof)
    assert "transactionId" not in prof
    periods = prof["chargingSchedule"][0]["chargingSchedulePeriod"]
    assert all("numberPhases" not in p for p in periods)
    assert max(p["limit"] for p in periods) == pytest.approx(max(sched.power_w))


def test_txprofile_needs_a_transaction(plan_and_schema) -> None:
    plan, _ = plan_and_schema
    sched = replace(plan.schedule_for(plan.evse_ids[0]), transaction_id=None)
    with pytest.raises(ValueError, match="transaction"):
        profile_from_schedule(sched, profile_id=1)
    with pytest.raises(ValueError, match="rate_unit"):
        profile_from_schedule(sched, profile_id=1, rate_unit="kW", transaction_id="t")


def test_duration_covers_the_horizon(plan_and_schema) -> None:
    plan, _ = plan_and_schema
    prof = charging_profile_for(plan, plan.evse_ids[0], profile_id=1)
    horizon = plan.slot_ends[-1] - plan.slot_starts[0]
    assert prof["chargingSchedule"][0]["duration"] == int(horizon.total_seconds())
    assert horizon <= timedelta(hours=24)
