"""Tariffs over HTTP: the configured ones, a site's prices for the next 24 hours, and a
site tariff set through the API that the scheduler plans with."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from pathlib import Path

import httpx
import pytest

from csms.app import Csms
from csms.config import Config, SchedulerConfig
from csms.scheduling.grid_inputs import plan_inputs
from tests.api.conftest import Client

SITE_FILE = Path(__file__).resolve().parents[2] / "config/sites/test-small.toml"
JIANGSU = "cn-jiangsu-residential-ev-2024"
CHEAP_NIGHTS = {
    "id": "cheap-nights", "currency": "EUR", "utc_offset": "+01:00",
    "demand_charge_per_kw": 0.0, "flat_price": 0.30,
    "bands": [{"name": "night", "start": "23:00", "end": "06:00", "price": 0.10}],
}


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(SITE_FILE),), interval_s=3600, debounce_s=0,
        tx_default_profile=False))


async def test_configured_tariffs_and_a_sites_prices(client: Client) -> None:
    viewer = client("viewer")
    tariffs = (await viewer.get("/api/tariffs")).json()
    assert JIANGSU in [t["id"] for t in tariffs]
    jiangsu = (await viewer.get(f"/api/tariffs/{JIANGSU}")).json()
    assert jiangsu["currency"] == "CNY" and jiangsu["utc_offset"] == "+08:00"
    assert {b["name"]: b["price"] for b in jiangsu["bands"]} == {"peak": 0.5583,
                                                                   "valley": 0.3583}
    assert (await viewer.get("/api/tariffs/nope")).status_code == 404

    site = (await viewer.get("/api/sites/test-small/tariff")).json()
    assert site["source"] == "config" and site["tariff"]["id"] == JIANGSU
    prices = site["prices"]
    assert len(prices) == 96  # 15-minute slots over 24 hours
    for p in prices:  # valley 21:00-08:00 in +08:00 is 13:00-24:00 UTC
        utc_hour = datetime.fromisoformat(p["start"]).hour
        want = ("valley", 0.3583) if utc_hour >= 13 else ("peak", 0.5583)
        assert (p["band"], p["price"]) == want, p


async def test_an_operator_sets_a_sites_tariff_and_the_scheduler_uses_it(
    csms: Csms, client: Client
) -> None:
    operator = client("operator")
    before = csms.clock.now().replace(microsecond=0)
    reply = await operator.put("/api/sites/test-small/tariff", json=CHEAP_NIGHTS)
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["source"] == "api" and body["currency"] == "EUR"
    assert body["tariff"] == CHEAP_NIGHTS
    assert {p["price"] for p in body["prices"]} == {0.10, 0.30}
    assert body["prices"][0]["band"] in ("night", None)

    for _ in range(200):  # the site re-plans on its own
        plan = await csms.store.plans.latest("test-small")
        if plan is not None and "tariff set" in plan.trigger and plan.planned_at >= before:
            break
        await asyncio.sleep(0.05)
    else:
        raise AssertionError("no re-plan after the tariff was set")
    assert csms.scheduler is not None
    runner = csms.scheduler.sites["test-small"]
    used = (await plan_inputs(csms.store, runner.site, runner.prices, csms.clock.now())).prices
    assert used.currency == "EUR" and used.flat_price == 0.30 and len(used.bands) == 1

    reset = await operator.delete("/api/sites/test-small/tariff")
    assert reset.status_code == 200 and reset.json()["source"] == "config"
    assert (await operator.delete("/api/sites/test-small/tariff")).status_code == 404


async def test_tariff_errors(client: Client, base_url: str) -> None:
    admin = client("admin")
    url = "/api/sites/test-small/tariff"
    assert (await client(None).get(url)).status_code == 401
    assert (await client(None).get("/api/tariffs")).status_code == 401
    async with httpx.AsyncClient(base_url=base_url,
                                 headers={"Authorization": "Bearer csms_nope"}) as stranger:
        assert (await stranger.put(url, json=CHEAP_NIGHTS)).status_code == 401
    for role in ("viewer", "grid"):
        assert (await client(role).put(url, json=CHEAP_NIGHTS)).status_code in (403, 404)
    assert (await client("viewer").put(url, json=CHEAP_NIGHTS)).status_code == 403
    assert (await client("grid").get(url)).status_code == 404  # not its site
    assert (await admin.get("/api/sites/elsewhere/tariff")).status_code == 404
    assert (await admin.put("/api/sites/elsewhere/tariff",
                            json=CHEAP_NIGHTS)).status_code == 404
    band = CHEAP_NIGHTS["bands"][0]  # type: ignore[index]
    cases = [
        ({**CHEAP_NIGHTS, "bands": [{**band, "start": "25:00"}]}, "start"),
        ({**CHEAP_NIGHTS, "bands": [{**band, "price": -1}]}, "price"),
        ({**CHEAP_NIGHTS, "bands": [band, {**band, "name": "late", "start": "05:00",
                                           "end": "07:00"}]}, "bands"),
        ({**CHEAP_NIGHTS, "utc_offset": "8"}, "utc_offset"),
        ({**CHEAP_NIGHTS, "colour": "red"}, "colour"),
        ({k: v for k, v in CHEAP_NIGHTS.items() if k != "id"}, "id"),
    ]
    for body, field in cases:
        reply = await admin.put(url, json=body)
        assert reply.status_code == 422, (field, reply.text)
        detail = reply.json()["detail"][0]
        assert field in detail["loc"] and detail["msg"], (field, detail)
    overlap = await admin.put(url, json=cases[2][0])
    assert "overlap at 05:00" in overlap.json()["detail"][0]["msg"]
