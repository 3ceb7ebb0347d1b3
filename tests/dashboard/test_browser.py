"""The dashboard in a real headless browser, against a running CSMS that plans
config/sites/test-small.toml for simulated stations on an accelerated clock: the pages
show the site's stations, the chart gets new points, and a temporary limit set through the
form changes the plan."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from playwright.async_api import Browser, Page, expect

from csms.config import Config
from tests.dashboard.conftest import add_token
from tests.e2e.test_scheduler import Run, local, site_run

STATIONS = ["TS001", "TS002", "TS003"]


@pytest.fixture
async def run(config: Config) -> AsyncIterator[Run]:
    async with site_run(config, local(17, 55), STATIONS) as found:
        cars = [asyncio.ensure_future(found.car(sid, local(18, 0), local(23, 0), 12.0))
                for sid in STATIONS]
        yield found
        for car in cars:
            car.cancel()
        await asyncio.gather(*cars, return_exceptions=True)


@pytest.fixture
async def page(browser: Browser, run: Run) -> AsyncIterator[Page]:
    assert run.csms.api is not None
    context = await browser.new_context(base_url=f"http://127.0.0.1:{run.csms.api.port}")
    found = await context.new_page()
    found.set_default_timeout(10_000)
    yield found
    await context.close()


async def sign_in(page: Page, token: str, then: str) -> None:
    await page.goto(then)
    assert "/login" in page.url  # not signed in yet
    await page.fill("input[name=token]", token)
    await page.click("button[type=submit]")
    await page.wait_for_url(f"**{then.split('?')[0]}*")


async def snapshot(page: Page, name: str) -> None:
    """A screenshot to look at, when DASHBOARD_SCREENSHOTS names a folder."""
    if folder := os.environ.get("DASHBOARD_SCREENSHOTS"):
        await page.screenshot(path=str(Path(folder) / f"{name}.png"), full_page=True)


async def chart_updates(page: Page, site_id: str) -> None:
    """The site's chart is drawn, then gets newer points on a later poll."""
    chart = page.locator(f'[data-site-chart="{site_id}"]')
    await expect(chart.locator("canvas")).to_have_count(1)
    await expect(chart).to_have_attribute("data-last-point", re.compile(r"\d{4}-"))
    first = await chart.get_attribute("data-last-point")
    assert first is not None
    await expect(chart).not_to_have_attribute("data-last-point", first)


async def test_overview_shows_the_running_sites_stations_and_a_live_chart(
    page: Page, run: Run
) -> None:
    await sign_in(page, await add_token(run.csms, "admin"), "/?refresh=1")
    for sid in STATIONS:
        row = page.locator(f"tr[data-station={sid}]")
        await expect(row).to_contain_text("online")
        await expect(row).to_contain_text("test-small")
    await chart_updates(page, "test-small")
    await expect(page.locator("table.sessions tbody tr")).to_have_count(len(STATIONS))
    await snapshot(page, "overview")

    await page.goto("/sites/test-small?refresh=1")
    await chart_updates(page, "test-small")
    for sid in STATIONS:  # each car has a planned schedule
        await expect(page.locator(f"tr[data-evse={sid}] svg.spark")).to_have_count(1)
    await snapshot(page, "site")
