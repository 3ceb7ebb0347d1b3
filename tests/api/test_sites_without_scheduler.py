"""The API knows the configured sites even when the scheduler is off (csms/sites.py loads
them for both): the tree and tariff are there, no plan, and no process holds a lease."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from csms.app import Csms
from csms.config import Config, SchedulerConfig
from csms.store.plans import PlanRecord
from tests.api.conftest import Client

SITE_FILE = Path(__file__).resolve().parents[2] / "config/sites/test-small.toml"


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, scheduler=SchedulerConfig(enabled=False, sites=(str(SITE_FILE),)))


async def test_sites_are_served_with_the_scheduler_off(csms: Csms, client: Client) -> None:
    assert csms.scheduler is None
    viewer = client("viewer")
    assert [s["id"] for s in (await viewer.get("/api/sites")).json()] == ["test-small"]
    site = (await viewer.get("/api/sites/test-small")).json()
    assert len(site["evses"]) == 6 and site["planned_by"] is None
    tariff = (await viewer.get("/api/sites/test-small/tariff")).json()
    assert tariff["source"] == "config"
    assert tariff["tariff"]["id"] == "cn-jiangsu-residential-ev-2024"
    assert (await viewer.get("/api/sites/test-small/plan")).status_code == 404
    leases = (await viewer.get("/api/scheduler/leases")).json()
    assert leases == [{"site_id": "test-small", "node": None, "pid": None, "since": None}]


async def test_plans_stored_under_a_former_site_id_stay_readable(
    csms: Csms, client: Client
) -> None:
    """A site whose file once named another id (`[site] id`): its stored plans are still
    served under that id, though no file configures it now."""
    await csms.store.plans.add(PlanRecord(
        site_id="residential-630kva", planned_at=csms.clock.now(), trigger="interval",
        sessions=0, inputs={}, schedule={}, status="no sessions"))
    viewer = client("viewer")
    assert [p["site_id"] for p in (await viewer.get(
        "/api/sites/residential-630kva/plans")).json()] == ["residential-630kva"]
    assert (await viewer.get("/api/sites/residential-630kva/plan")).status_code == 200
    assert (await viewer.get("/api/sites/residential-630kva")).status_code == 404
