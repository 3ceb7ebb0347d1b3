"""The site page's battery and solar card (issue 15), in English and Simplified Chinese,
for the shipped integrated station (config/sites/solar-storage.toml)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import httpx
import pytest

from csms.api.auth import COOKIE
from csms.app import Csms
from csms.clock import AcceleratedClock
from csms.config import Config, SchedulerConfig
from tests.dashboard.conftest import add_token
from tests.support import eventually

SITES = Path(__file__).resolve().parents[2] / "config/sites"


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(SITES / "solar-storage.toml"), str(SITES / "test-small.toml")),
        interval_s=3600, tx_default_profile=False, learn_departures_days=0))


@pytest.fixture
async def csms(config: Config) -> AsyncIterator[Csms]:
    """The CSMS at 11:00 site time, so the chart's next 8 hours hold sun and the evening
    peak whatever the time of the run."""
    start = datetime(2026, 11, 23, 11, 0, tzinfo=timezone(timedelta(hours=8)))
    app = await Csms.start(config, AcceleratedClock(start, speed=1.0))
    yield app
    await app.stop()


@pytest.fixture
async def http(csms: Csms) -> AsyncIterator[httpx.AsyncClient]:
    assert csms.api is not None
    token = await add_token(csms, "viewer")
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{csms.api.port}",
                                 cookies={COOKIE: token}, timeout=15.0) as client:
        yield client


async def test_the_site_page_shows_battery_and_solar(csms: Csms, http: httpx.AsyncClient
                                                     ) -> None:
    await eventually(lambda: csms.store.plans.latest("solar-storage"), timeout=30)
    page = await http.get("/sites/solar-storage")
    assert page.status_code == 200
    assert "Battery and solar" in page.text
    assert 'data-battery="bess"' in page.text and 'data-solar="carport-pv"' in page.text
    assert "as planned" in page.text and "site file" in page.text
    fragment = await http.get("/fragments/sites/solar-storage/energy")
    assert fragment.status_code == 200 and 'data-battery="bess"' in fragment.text
    chinese = await http.get("/sites/solar-storage", headers={"Accept-Language": "zh-CN"})
    assert "储能与光伏" in chinese.text and "荷电状态" in chinese.text
    assert "Battery and solar" not in chinese.text
    plain = await http.get("/sites/test-small")  # a site with neither: no card
    assert plain.status_code == 200 and "Battery and solar" not in plain.text
    assert (await http.get("/fragments/sites/nope/energy")).status_code == 404


async def test_the_site_chart_counts_battery_and_solar_in_the_planned_total(
        csms: Csms, browser: Any) -> None:
    """In a real browser: the chart's "total (plan)" is household + EVs + reserved +
    battery - solar, slot by slot, as the stored plan has them."""
    plan = await eventually(lambda: csms.store.plans.latest("solar-storage"), timeout=30)
    assert csms.api is not None
    token = await add_token(csms, "viewer")
    context = await browser.new_context(base_url=f"http://127.0.0.1:{csms.api.port}")
    await context.add_cookies([{"name": COOKIE, "value": token,
                                "url": f"http://127.0.0.1:{csms.api.port}"}])
    page = await context.new_page()
    try:
        await page.goto("/sites/solar-storage")
        chart = page.locator('[data-site-chart="solar-storage"]')
        await page.wait_for_function(
            "() => document.querySelector('[data-site-chart]')._chart"
            " && document.querySelector('[data-site-chart]').dataset.planId", timeout=15_000)
        plan_id = await chart.get_attribute("data-plan-id")
        xs, planned = await page.evaluate(
            "() => { const d = document.querySelector('[data-site-chart]')._chart.data;"
            " return [d[0], d[d.length - 1]]; }")
    finally:
        await context.close()
    shown = await csms.store.plans.list("solar-storage", limit=100)
    inputs = next(p for p in shown if str(p.id) == plan_id).inputs
    assert plan is not None and any(inputs["storage_kw"]) and any(inputs["solar_kw"])
    by_x = dict(zip(xs, planned, strict=True))
    checked, sun, battery = 0, 0, 0
    for i, iso in enumerate(inputs["slot_starts"]):
        x = datetime.fromisoformat(iso).timestamp()
        if by_x.get(x) is None:
            continue
        want = (inputs["household_kw"][i] + inputs["planned_ev_kw"][i]
                + inputs["reserved_kw"][i] + inputs["storage_kw"][i] - inputs["solar_kw"][i])
        assert by_x[x] == pytest.approx(want, abs=1e-6), iso
        checked += 1
        sun += inputs["solar_kw"][i] > 1
        battery += abs(inputs["storage_kw"][i]) > 1
    assert checked >= 4 and sun >= 4 and battery >= 1
