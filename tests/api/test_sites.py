"""Sites and plans over HTTP, with the scheduler planning config/sites/test-small.toml."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from csms.api.auth import new_token
from csms.app import Csms
from csms.config import Config, SchedulerConfig
from csms.store.api_tokens import ApiTokenRepo
from tests.api.conftest import Client

SITE_FILE = Path(__file__).resolve().parents[2] / "config/sites/test-small.toml"


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(SITE_FILE),), interval_s=3600, tx_default_profile=False))


async def test_sites_and_their_plans(csms: Csms, client: Client, base_url: str) -> None:
    viewer = client("viewer")
    sites = (await viewer.get("/api/sites")).json()
    assert [s["id"] for s in sites] == ["test-small"]
    site = (await viewer.get("/api/sites/test-small")).json()
    transformer = next(n for n in site["nodes"] if n["id"] == "transformer")
    assert transformer["limit_kw"] == 32.0 and len(site["evses"]) == 6
    assert (await viewer.get("/api/sites/elsewhere")).status_code == 404
    assert (await viewer.get("/api/sites/test-small/plan")).status_code in (200, 404)

    assert csms.scheduler is not None
    await csms.scheduler.sites["test-small"].plan_once("api test")
    plan = (await viewer.get("/api/sites/test-small/plan")).json()
    assert plan["site_id"] == "test-small" and plan["trigger"] == "api test"
    assert len(plan["inputs"]["limit_kw"]) == len(plan["inputs"]["slot_starts"]) > 0
    history = (await viewer.get("/api/sites/test-small/plans")).json()
    assert history[0]["id"] == plan["id"] and "inputs" not in history[0]


async def test_a_grid_token_sees_only_the_sites_of_its_nodes(
    csms: Csms, client: Client, base_url: str
) -> None:
    other = client("grid")  # its node is site-1/transformer
    assert (await other.get("/api/sites")).json() == []
    assert (await other.get("/api/sites/test-small")).status_code == 404
    token, hashed = new_token()
    await ApiTokenRepo(csms.store.pool).add("dso", "grid", hashed, csms.clock.now(),
                                            ("test-small/transformer",))
    async with httpx.AsyncClient(base_url=base_url,
                                 headers={"Authorization": f"Bearer {token}"}) as dso:
        assert [s["id"] for s in (await dso.get("/api/sites")).json()] == ["test-small"]
        assert (await dso.get("/api/sites/test-small")).status_code == 200
        assert (await dso.get("/api/stations")).status_code == 403


async def test_the_lease_of_each_site_names_the_process_planning_it(
    csms: Csms, client: Client
) -> None:
    assert csms.scheduler is not None
    leases = (await client("viewer").get("/api/scheduler/leases")).json()
    assert [(x["site_id"], x["node"]) for x in leases] == [("test-small", csms.scheduler.node)]
    assert leases[0]["pid"] == csms.scheduler.leases.backend_pid()  # type: ignore[union-attr]
    assert (await client("grid").get("/api/scheduler/leases")).json() == []  # not its site
    site = (await client("viewer").get("/api/sites/test-small")).json()
    assert site["planned_by"] == csms.scheduler.node
