"""Grid events and node limits over HTTP, on a site with a transformer and two feeders
(config written here) planned by the scheduler."""

from __future__ import annotations

import asyncio
import math
from dataclasses import replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from csms.api.auth import new_token
from csms.app import Csms
from csms.config import Config, SchedulerConfig
from csms.events import GridEventChanged
from csms.scheduling.grid_inputs import plan_inputs
from csms.store.api_tokens import ApiTokenRepo
from tests.api.conftest import Client
from tests.api.test_events import sse

TARIFFS = Path(__file__).resolve().parents[2] / "config/tariffs"
SITE = """
[site]
id = "street"
utc_offset = "+08:00"
tariff = "cn-jiangsu-residential-ev-2024"

[[nodes]]
id = "transformer"
kind = "transformer"
limit_kw = 40.0
load_kw_daily = [5]

[[nodes]]
id = "feeder-a"
parent = "transformer"
limit_kw = 22.0

[[nodes]]
id = "feeder-b"
parent = "transformer"

[[evse_groups]]
count = 2
id_prefix = "FA"
node = "feeder-a"
max_current_a = 32

[[evse_groups]]
count = 2
id_prefix = "FB"
node = "feeder-b"
max_current_a = 32
"""


def with_street(config: Config, folder: Path) -> Config:
    """The config planning the street site (written to `folder`), re-planned on demand."""
    site = folder / "street.toml"
    site.write_text(SITE)
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(site),), tariffs_dir=str(TARIFFS), interval_s=3600,
        debounce_s=0, tx_default_profile=False))


@pytest.fixture
def config(config: Config, tmp_path: Path) -> Config:
    return with_street(config, tmp_path)


@pytest.fixture
async def grid_client(csms: Csms, base_url: str) -> Any:
    """`grid_client("street/feeder-a")`: a client with a grid token given those nodes."""
    opened: list[httpx.AsyncClient] = []

    async def make(*nodes: str) -> httpx.AsyncClient:
        token, hashed = new_token()
        await ApiTokenRepo(csms.store.pool).add(f"dso-{len(opened)}", "grid", hashed,
                                                csms.clock.now(), nodes)
        c = httpx.AsyncClient(base_url=base_url, timeout=15.0,
                              headers={"Authorization": f"Bearer {token}"})
        opened.append(c)
        return c

    yield make
    for c in opened:
        await c.aclose()


def iso(t: datetime) -> str:
    return t.isoformat()


def window(csms: Csms, start_min: float = 0, end_min: float = 60) -> dict[str, str]:
    now = csms.clock.now()
    return {"start": iso(now + timedelta(minutes=start_min)),
            "end": iso(now + timedelta(minutes=end_min))}


async def newest_plan_after(csms: Csms, event_at: datetime, trigger: str) -> Any:
    """The scheduler re-plans on its own after an event: wait for that plan."""
    for _ in range(200):
        plan = await csms.store.plans.latest("street")
        if plan is not None and trigger in plan.trigger and plan.planned_at >= event_at.replace(
                microsecond=0):
            return plan
        await asyncio.sleep(0.05)
    raise AssertionError(f"no plan triggered by {trigger}")


async def test_a_dso_curtails_its_transformer_and_the_site_replans(
    csms: Csms, client: Client, grid_client: Any
) -> None:
    dso = await grid_client("street/transformer")
    viewer = client("viewer")
    async with viewer.stream("GET", "/api/events", params={"types": "GridEventChanged"}) as feed:
        events = sse(feed.aiter_lines())
        assert (await anext(events))[0] == "ready"
        before = csms.clock.now()
        reply = await dso.post("/api/sites/street/events", json={
            "node": "transformer", "kind": "limit", "kw": 12.5, "reference": "DR-1",
            "end": iso(before + timedelta(hours=1))})
        assert reply.status_code == 201, reply.text
        event = reply.json()
        assert event["status"] == "active" and event["kw"] == 12.5
        assert event["created_by"] == "dso-0" and event["reference"] == "DR-1"
        assert event["site_id"] == "street" and event["node"] == "transformer"
        assert event["cancelled_at"] is None
        assert set(event) >= {"id", "start", "end", "created_at", "delivery"}
        name, data = await anext(events)
        assert name == "GridEventChanged" and data["change"] == "created"
        assert data["event_id"] == event["id"] and data["site_id"] == "street"

        plan = await newest_plan_after(csms, before, "grid event created")
        assert plan.inputs["limit_kw"][0] == 12.5  # the plan's limit is min(40, 12.5)
        site = (await viewer.get("/api/sites/street")).json()
        node = next(n for n in site["nodes"] if n["id"] == "transformer")
        assert (node["limit_kw"], node["effective_limit_kw"]) == (40.0, 12.5)

        listed = (await viewer.get("/api/sites/street/events")).json()
        assert [e["id"] for e in listed] == [event["id"]]
        assert (await viewer.get("/api/sites/street/events",
                                 params={"status": "active"})).json()[0]["id"] == event["id"]
        assert (await viewer.get("/api/sites/street/events",
                                 params={"status": "scheduled"})).json() == []
        got = (await viewer.get(f"/api/sites/street/events/{event['id']}")).json()
        assert got["id"] == event["id"] and got["delivery"]["samples"] == 0
        assert got["delivery"]["max_kw"] == 0.0 and got["delivery"]["complied"] is True

        cancelled = await dso.delete(f"/api/sites/street/events/{event['id']}")
        assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
        name, data = await anext(events)
        assert (name, data["change"]) == ("GridEventChanged", "cancelled")
        plan = await newest_plan_after(csms, before, "grid event cancelled")
        assert plan.inputs["limit_kw"][0] == 40.0
        again = await dso.delete(f"/api/sites/street/events/{event['id']}")
        assert again.status_code == 409 and "cancelled" in again.json()["detail"]


async def test_a_scheduled_limit_lowers_only_its_slots_and_survives_a_restart(
    csms: Csms, admin: httpx.AsyncClient, config: Config
) -> None:
    reply = await admin.post("/api/sites/street/events", json={
        "node": "transformer", "kind": "limit", "kw": 10, **window(csms, 60, 120)})
    assert reply.status_code == 201 and reply.json()["status"] == "scheduled"
    assert reply.json()["delivery"] is None
    assert csms.scheduler is not None
    await csms.scheduler.stop()  # gives up the site's lease, as a stopped process does
    second = await Csms.start(replace(config, api=replace(config.api, enabled=False)))
    try:  # a CSMS started afterwards on the same database plans with it
        assert second.scheduler is not None
        plan_id = await second.scheduler.sites["street"].plan_once("restart test")
        plan = next(p for p in await second.store.plans.list("street") if p.id == plan_id)
        limits = plan.inputs["limit_kw"]
        assert limits[0] == 40.0 and 10.0 in limits and limits.count(10.0) in (4, 5)
    finally:
        await second.stop()


async def test_a_grant_covers_the_nodes_beneath_it_only(
    csms: Csms, grid_client: Any
) -> None:
    dso = await grid_client("street/transformer")
    feeder = await grid_client("street/feeder-a")
    body = {"kind": "limit", "kw": 5, **window(csms)}
    on_a = await dso.post("/api/sites/street/events", json={"node": "feeder-a", **body})
    assert on_a.status_code == 201
    up = await feeder.post("/api/sites/street/events", json={"node": "transformer", **body})
    assert up.status_code == 403
    side = await feeder.post("/api/sites/street/events", json={"node": "feeder-b", **body})
    assert side.status_code == 403
    on_root = await dso.post("/api/sites/street/events", json={"node": "transformer", **body})
    # the feeder's DSO sees its own node's events, not the transformer's
    seen = (await feeder.get("/api/sites/street/events")).json()
    assert [e["id"] for e in seen] == [on_a.json()["id"]]
    hidden = await feeder.get(f"/api/sites/street/events/{on_root.json()['id']}")
    assert hidden.status_code == 404
    assert (await feeder.delete(
        f"/api/sites/street/events/{on_root.json()['id']}")).status_code == 404
    assert (await feeder.delete(
        f"/api/sites/street/events/{on_a.json()['id']}")).status_code == 200


async def test_targets_are_followed_only_on_a_node_holding_every_evse(
    csms: Csms, admin: httpx.AsyncClient
) -> None:
    body = {"kind": "target", "kw": 8, **window(csms)}
    feeder = await admin.post("/api/sites/street/events", json={"node": "feeder-a", **body})
    assert feeder.status_code == 422
    assert feeder.json()["detail"][0]["loc"] == ["body", "kind"]
    assert "not supported yet" in feeder.json()["detail"][0]["msg"]
    root = await admin.post("/api/sites/street/events", json={"node": "transformer", **body})
    assert root.status_code == 201 and root.json()["kind"] == "target"
    # the scheduler hands it to the engine as the EV power to follow, and no target outside
    assert csms.scheduler is not None
    runner = csms.scheduler.sites["street"]
    now = csms.clock.now()
    target = (await plan_inputs(csms.store, runner.site, runner.prices, now)).target_kw
    assert target is not None
    slots = [now + timedelta(minutes=m) for m in (-30, 5, 55, 90)]
    got = target.over(slots, [t + timedelta(minutes=1) for t in slots], "max")
    assert math.isnan(got[0]) and list(got[1:3]) == [8.0, 8.0] and math.isnan(got[3])
    got = (await admin.get(f"/api/sites/street/events/{root.json()['id']}")).json()
    assert got["delivery"]["mean_abs_deviation_kw"] == 8.0  # nothing charges: 8 kW short
    assert got["delivery"]["complied"] is False
    # a target below zero asks V2G cars to feed back (stored as such); a limit never is
    back = await admin.post("/api/sites/street/events", json={
        "node": "transformer", **body, "kw": -6.5})
    assert back.status_code == 201 and back.json()["kw"] == -6.5
    stored = await csms.store.grid.event("street", back.json()["id"])
    assert stored is not None and stored.kw == -6.5
    limit = await admin.post("/api/sites/street/events", json={
        "node": "transformer", **body, "kind": "limit", "kw": -6.5})
    assert limit.status_code == 422 and limit.json()["detail"][0]["loc"] == ["body", "kw"]


async def test_a_completed_event_reports_its_metered_delivery_and_cannot_be_cancelled(
    csms: Csms, admin: httpx.AsyncClient
) -> None:
    from csms.store.meter import MeterRow
    now = csms.clock.now().replace(microsecond=0)
    start, end = now - timedelta(hours=2), now - timedelta(hours=1)
    event = await csms.store.grid.add_event("street", "feeder-a", "limit", 7.0, start, end,
                                            None, "test", start)
    # FA001 draws 7.4 kW for the first 30 minutes, then 3.7 kW; FB001 (another feeder) 7 kW
    rows = [MeterRow("FA001", 1, start + timedelta(minutes=m), "Power.Active.Import", "",
                     "Outlet", "Sample.Periodic", None, 7400.0 if m < 30 else 3700.0, "W")
            for m in range(0, 60, 5)]
    rows.append(MeterRow("FB001", 1, start, "Power.Active.Import", "", "Outlet",
                         "Sample.Periodic", None, 7000.0, "W"))
    await csms.store.meter.write(rows)
    got = (await admin.get(f"/api/sites/street/events/{event.id}")).json()
    assert got["status"] == "completed"
    d = got["delivery"]
    assert d["final"] is True and d["evses"] == 2 and d["source"] == "meter_values"
    assert d["max_kw"] == 7.4 and d["mean_kw"] == pytest.approx(5.55)
    assert d["energy_kwh"] == pytest.approx(5.55)
    assert d["minutes_above_limit"] == 30.0 and d["complied"] is False
    assert (await admin.delete(f"/api/sites/street/events/{event.id}")).status_code == 409


async def test_static_limits_are_writable_by_admin_and_the_nodes_grid_token(
    csms: Csms, client: Client, grid_client: Any
) -> None:
    admin, feeder = client("admin"), await grid_client("street/feeder-a")
    before = csms.clock.now()
    reply = await admin.put("/api/sites/street/nodes/transformer/limit", json={"limit_kw": 30})
    assert reply.status_code == 200, reply.text
    assert reply.json()["limit_override_kw"] == 30.0
    assert reply.json()["effective_limit_kw"] == 30.0 and reply.json()["limit_kw"] == 40.0
    plan = await newest_plan_after(csms, before, "limit of transformer set")
    assert plan.inputs["limit_kw"][0] == 30.0
    own = await feeder.put("/api/sites/street/nodes/feeder-a/limit", json={"limit_kw": 11})
    assert own.status_code == 200 and own.json()["effective_limit_kw"] == 11.0
    await admin.post("/api/sites/street/events", json={
        "node": "feeder-a", "kind": "limit", "kw": 4, **window(csms)})
    nodes = {n["id"]: n for n in (await admin.get("/api/sites/street")).json()["nodes"]}
    assert nodes["feeder-a"]["effective_limit_kw"] == 4.0
    assert nodes["feeder-a"]["limit_kw"] == 22.0
    assert nodes["feeder-b"]["effective_limit_kw"] == nodes["feeder-b"]["limit_kw"] is None
    assert (await feeder.put("/api/sites/street/nodes/transformer/limit",
                             json={"limit_kw": 1})).status_code == 403
    removed = await admin.put("/api/sites/street/nodes/transformer/limit",
                              json={"limit_kw": None})
    assert removed.json()["limit_override_kw"] is None
    assert removed.json()["effective_limit_kw"] == 40.0
    for bad in ({"limit_kw": 0}, {"limit_kw": -3}, {}, {"limit_kw": "x"},
                {"limit_kw": 5, "extra": 1}):
        wrong = await admin.put("/api/sites/street/nodes/transformer/limit", json=bad)
        assert wrong.status_code == 422, bad
    assert (await admin.put("/api/sites/street/nodes/nowhere/limit",
                            json={"limit_kw": 5})).status_code == 404
    assert (await admin.put("/api/sites/elsewhere/nodes/transformer/limit",
                            json={"limit_kw": 5})).status_code == 404
    for role in ("operator", "viewer"):
        assert (await client(role).put("/api/sites/street/nodes/transformer/limit",
                                       json={"limit_kw": 5})).status_code == 403


async def test_every_error_class(
    csms: Csms, client: Client, grid_client: Any, base_url: str
) -> None:
    admin = client("admin")
    ok = {"node": "transformer", "kind": "limit", "kw": 5, **window(csms)}
    # 401
    assert (await client(None).get("/api/sites/street/events")).status_code == 401
    assert (await client(None).post("/api/sites/street/events", json=ok)).status_code == 401
    async with httpx.AsyncClient(base_url=base_url,
                                 headers={"Authorization": "Bearer csms_nope"}) as stranger:
        assert (await stranger.post("/api/sites/street/events", json=ok)).status_code == 401
    # 403: operator and viewer read but do not create or cancel
    created = (await admin.post("/api/sites/street/events", json=ok)).json()
    for role in ("operator", "viewer"):
        assert (await client(role).post("/api/sites/street/events", json=ok)).status_code == 403
        assert (await client(role).get("/api/sites/street/events")).status_code == 200
        assert (await client(role).get(
            f"/api/sites/street/events/{created['id']}")).status_code == 200
        assert (await client(role).delete(
            f"/api/sites/street/events/{created['id']}")).status_code == 403
    # 404: unknown site, node, event; a grid token of another site learns nothing
    assert (await admin.post("/api/sites/elsewhere/events", json=ok)).status_code == 404
    assert (await admin.get("/api/sites/elsewhere/events")).status_code == 404
    nowhere = await admin.post("/api/sites/street/events", json={**ok, "node": "nowhere"})
    assert nowhere.status_code == 404
    assert (await admin.get("/api/sites/street/events/999999")).status_code == 404
    assert (await admin.delete("/api/sites/street/events/999999")).status_code == 404
    other = client("grid")  # given site-1/transformer
    assert (await other.post("/api/sites/street/events", json=ok)).status_code == 404
    assert (await other.get("/api/sites/street/events")).status_code == 404
    assert (await other.get(
        f"/api/sites/street/events/{created['id']}")).status_code == 404
    # 422: the field and the reason
    now = csms.clock.now()
    cases: list[tuple[dict[str, Any], str]] = [
        ({**ok, "kw": -1}, "kw"),
        ({**ok, "kind": "target", "kw": -2e6}, "kw"),
        ({**ok, "kw": 2e6}, "kw"),
        ({**ok, "kind": "shed"}, "kind"),
        ({k: v for k, v in ok.items() if k != "end"}, "end"),
        ({**ok, "end": "2030-01-01T00:00:00"}, "end"),  # no offset
        ({**ok, "start": iso(now + timedelta(hours=2)), "end": iso(now + timedelta(hours=1))},
         "end"),
        ({**ok, "start": iso(now - timedelta(hours=2)), "end": iso(now - timedelta(hours=1))},
         "end"),
        ({**ok, "colour": "red"}, "colour"),
        ({k: v for k, v in ok.items() if k != "node"}, "node"),
    ]
    for body, field in cases:
        reply = await admin.post("/api/sites/street/events", json=body)
        assert reply.status_code == 422, (body, reply.text)
        detail = reply.json()["detail"][0]
        assert detail["loc"][-1] == field and detail["msg"], (field, detail)
    bad_filter = await admin.get("/api/sites/street/events", params={"status": "done"})
    assert bad_filter.status_code == 422
    assert (await admin.get("/api/sites/street/events/abc")).status_code == 422


async def test_the_active_events_gauge(csms: Csms, admin: httpx.AsyncClient) -> None:
    await admin.post("/api/sites/street/events", json={
        "node": "transformer", "kind": "limit", "kw": 5, **window(csms)})
    text = (await admin.get("/metrics")).text
    assert "csms_grid_events_active 1.0" in text


def test_grid_event_changed_is_on_the_feed() -> None:
    from csms.api.events import EVENT_TYPES
    assert EVENT_TYPES["GridEventChanged"] is GridEventChanged
    assert "SiteSettingsChanged" in EVENT_TYPES
