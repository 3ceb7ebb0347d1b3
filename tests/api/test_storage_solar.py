"""A site's battery and solar over HTTP (issue 15), with the scheduler on and real
PostgreSQL: the SoC and forecast an operator or integration reports reach the next plan,
the plan's battery power and solar are stored and shown per node, every bad body is a 422
that is logged and counted, and a station meter's SoC sample counts as a measurement."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from csms.app import Csms
from csms.config import Config, SchedulerConfig
from tests.api import test_ocpp21
from tests.api.conftest import Client
from tests.support import eventually

raw = test_ocpp21.raw  # the fixture: a raw OCPP station

SITE = """
[site]
utc_offset = "+00:00"

[[nodes]]
id = "transformer"
kind = "transformer"
limit_kw = 50.0
load_kw_daily = [30.0]

[[evses]]
id = "E1"
node = "transformer"
station_id = "CS1"

[[storage]]
id = "bess"
node = "transformer"
capacity_kwh = 100
min_soc = 0.1
max_soc = 0.9
initial_soc = 0.5
max_charge_kw = 25
max_discharge_kw = 25
round_trip_efficiency = 0.9
meter_station_id = "BESS01"
meter_evse_id = 0

[[solar]]
id = "pv"
node = "transformer"
peak_kw = 40
profile_kw = [0.0]
"""
BASE = "/api/sites/home"


@pytest.fixture
def config(config: Config, tmp_path: Path) -> Config:
    site = tmp_path / "sites" / "home.toml"
    site.parent.mkdir()
    site.write_text(SITE)
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(site),), interval_s=3600, debounce_s=0.05,
        learn_departures_days=0))


def rejected(what: str, reason: str) -> float:
    labels = {"input": what, "reason": reason}
    return REGISTRY.get_sample_value("csms_rejected_inputs_total", labels) or 0.0


async def newest_plan(csms: Csms, after: int | None = None) -> Any:
    async def check() -> Any:
        plan = await csms.store.plans.latest("home")
        return plan if plan is not None and (after is None or plan.id > after) else None
    return await eventually(check)


def battery(view: dict[str, Any]) -> dict[str, Any]:
    (node,) = view["nodes"]
    assert node["node"] == "transformer"
    return node["storage"][0]


async def test_soc_and_forecast_reach_the_plan_and_the_api(csms: Csms, client: Client) -> None:
    operator = client("operator")
    first = await newest_plan(csms)
    stored = first.inputs["storage"][0]
    assert (stored["id"], stored["soc_source"], stored["energy_now_kwh"]) == (
        "bess", "site_file", 50.0)
    assert len(stored["power_kw"]) == len(first.inputs["slot_starts"])
    assert first.inputs["solar"][0] == {"id": "pv", "node": "transformer",
                                        "source": "site_file",
                                        "forecast_kw": [0.0] * len(first.inputs["slot_starts"])}

    view = (await operator.get(f"{BASE}/energy")).json()
    assert view["planned_at"] is not None
    bess = battery(view)
    assert bess["soc_source"] == "planned" and bess["capacity_kwh"] == 100.0
    assert (bess["min_soc"], bess["max_soc"]) == (0.1, 0.9)
    assert len(bess["planned"]) == len(first.inputs["slot_starts"])
    hours = [(datetime.fromisoformat(s["end"]) - datetime.fromisoformat(s["start"]))
             .total_seconds() / 3600 for s in bess["planned"]]
    assert bess["discharge_planned_kwh"] == pytest.approx(sum(
        max(-s["power_kw"], 0) * h for s, h in zip(bess["planned"], hours, strict=True)),
        abs=1e-2)
    assert view["nodes"][0]["solar"][0]["source"] == "site_file"

    put = await operator.put(f"{BASE}/storage/bess/soc", json={"soc": 0.8})
    assert put.status_code == 200, put.text
    assert (put.json()["soc"], put.json()["soc_source"]) == (0.8, "measured")
    assert put.json()["measured_by"] == "api:test-operator"
    plan = await newest_plan(csms, first.id)
    stored = plan.inputs["storage"][0]
    assert (stored["soc_source"], stored["energy_now_kwh"]) == ("measured", 80.0)
    assert plan.trigger == "soc of bess set"

    now = csms.clock.now()
    put = await operator.put(f"{BASE}/solar/pv/forecast", json={"kw": [20.0] * 8,
                                                                "step_minutes": 15})
    assert put.status_code == 200, put.text
    plant = put.json()
    assert plant["source"] == "api" and plant["peak_kw"] == 40.0
    assert plant["forecast"][0]["kw"] == 20.0 and plant["forecast"][-1]["kw"] == 0.0
    assert datetime.fromisoformat(plant["api_forecast_until"]) > now + timedelta(minutes=100)
    plan = await newest_plan(csms, plan.id)
    assert plan.inputs["solar"][0]["source"] == "api"
    assert plan.inputs["solar_kw"][0] == 20.0 and plan.inputs["solar_kw"][-1] == 0.0

    gone = await operator.delete(f"{BASE}/solar/pv/forecast")
    assert gone.status_code == 200 and gone.json()["source"] == "site_file"
    assert (await operator.delete(f"{BASE}/solar/pv/forecast")).status_code == 404


@pytest.mark.parametrize(("path", "body", "what", "reason"), [
    ("storage/bess/soc", {"soc": 80}, "storage_soc", "soc_out_of_range"),
    ("storage/bess/soc", {"soc": -0.1}, "storage_soc", "soc_out_of_range"),
    ("storage/bess/soc", {"soc": 0.5, "measured_at": "2099-01-01T00:00:00Z"},
     "storage_soc", "in_the_future"),
    ("storage/bess/soc", {"soc": 0.5, "measured_at": "2020-01-01T00:00:00Z"},
     "storage_soc", "too_old"),
    ("solar/pv/forecast", {"kw": [10.0], "step_minutes": 7}, "solar_forecast", "bad_step"),
    ("solar/pv/forecast", {"kw": []}, "solar_forecast", "bad_span"),
    ("solar/pv/forecast", {"kw": [1.0] * 49, "step_minutes": 60}, "solar_forecast",
     "bad_span"),
    ("solar/pv/forecast", {"kw": [41.0]}, "solar_forecast", "kw_out_of_range"),
    ("solar/pv/forecast", {"kw": [-1.0]}, "solar_forecast", "kw_out_of_range"),
    ("solar/pv/forecast", {"kw": [1.0], "start": "2099-01-01T00:00:00Z"}, "solar_forecast",
     "out_of_window"),
])
async def test_a_bad_body_is_a_422_logged_and_counted(
        csms: Csms, client: Client, path: str, body: dict[str, Any], what: str,
        reason: str) -> None:
    before = rejected(what, reason)
    reply = await client("operator").put(f"{BASE}/{path}", json=body)
    assert reply.status_code == 422, reply.text
    assert rejected(what, reason) == before + 1


async def test_who_may_set_what(csms: Csms, client: Client) -> None:
    assert (await client("viewer").put(f"{BASE}/storage/bess/soc",
                                       json={"soc": 0.5})).status_code == 403
    assert (await client("viewer").get(f"{BASE}/energy")).status_code == 200
    admin = client("admin")
    assert (await admin.put(f"{BASE}/storage/nope/soc", json={"soc": 0.5})).status_code == 404
    assert (await admin.put(f"{BASE}/solar/nope/forecast", json={"kw": [1.0]})).status_code \
        == 404
    assert (await admin.put("/api/sites/nope/storage/bess/soc",
                            json={"soc": 0.5})).status_code == 404
    before = rejected("storage_soc", "schema")
    assert (await admin.put(f"{BASE}/storage/bess/soc",
                            json={"soc": 0.5, "percent": 50})).status_code == 422
    assert (await admin.put(f"{BASE}/solar/pv/forecast",
                            json={"kw": "lots"})).status_code == 422
    assert rejected("storage_soc", "schema") == before + 1
    assert rejected("solar_forecast", "schema") >= 1


async def test_a_station_meters_soc_is_a_measurement(csms: Csms, client: Client,
                                                     raw: Callable[..., Any]) -> None:
    first = await newest_plan(csms)
    async with raw("BESS01", ["ocpp2.0.1"]) as station:
        await station.boot("2.0.1")
        at = csms.clock.now().isoformat(timespec="seconds").replace("+00:00", "Z")
        await station.ok("MeterValues", {"evseId": 0, "meterValue": [{
            "timestamp": at, "sampledValue": [
                {"value": 35, "measurand": "SoC", "unitOfMeasure": {"unit": "Percent"}}]}]},
            "2.0.1")
    bess = battery((await client("operator").get(f"{BASE}/energy")).json())
    assert (bess["soc"], bess["soc_source"], bess["measured_by"]) == (
        0.35, "measured", "meter:BESS01/0")
    await client("operator").put(f"{BASE}/storage/bess/soc", json={"soc": 0.6})
    plan = await newest_plan(csms, first.id)
    assert plan.inputs["storage"][0]["energy_now_kwh"] == 60.0  # the newer of the two


async def test_a_site_taken_over_continues_the_stored_trajectory(csms: Csms) -> None:
    """Another node taking the site has no plan in memory: it reads the stored one."""
    first = await newest_plan(csms)
    assert csms.scheduler is not None
    planner = csms.scheduler.sites["home"]
    planner._battery_plans = None  # as a fresh SitePlanner on the node taking over
    plan_id = await planner.plan_once("taken over")
    plans = {p.id: p for p in await csms.store.plans.list("home", limit=100)}
    stored = plans[plan_id].inputs["storage"][0]
    assert stored["soc_source"] == "planned"
    energy = first.inputs["storage"][0]["stored_kwh"]
    assert min(50.0, energy[0]) - 1e-3 <= stored["energy_now_kwh"] <= max(50.0, energy[0]) + 1e-3
