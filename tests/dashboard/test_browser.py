"""The dashboard in a real headless browser, against a running CSMS that plans
config/sites/test-small.toml for three simulated stations on an accelerated clock: the pages
show the site's stations, the chart gets new points, and a temporary limit set through the
form changes the plan."""

from __future__ import annotations

import asyncio
import os
import re
from collections.abc import AsyncIterator, Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from axe_playwright_python.async_playwright import Axe
from playwright.async_api import Browser, Page, expect

from csms.config import Config
from tests.dashboard.conftest import add_token
from tests.e2e.test_scheduler import Run, local, site_run

STATIONS = ["TS001", "TS002", "TS003"]
LIMIT_KW = 18.0  # over 12 kW of household load at 18:00-21:00: 6 kW left for the cars


@pytest.fixture
async def run(config: Config) -> AsyncIterator[Run]:
    async with site_run(config, local(17, 55), STATIONS) as found:
        # 36 kWh by 20:00 under ~20 kW of headroom: the plan uses the headroom at once
        cars = [asyncio.ensure_future(found.car(sid, local(18, 0), local(20, 0), 12.0))
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
    await expect(page.locator(".counts")).to_contain_text(f"{len(STATIONS)} online")
    await chart_updates(page, "test-small")
    # the cars arrive at 18:00 on the accelerated clock
    await expect(page.locator("table.sessions tbody tr")).to_have_count(len(STATIONS),
                                                                      timeout=20_000)
    await snapshot(page, "overview")

    await page.click(".counts a[href='/stations?state=online']")
    for sid in STATIONS:
        row = page.locator(f"tr[data-station={sid}]")
        await expect(row).to_contain_text("online")
        await expect(row).to_contain_text("test-small")

    await page.goto("/sites/test-small?refresh=1")
    await chart_updates(page, "test-small")
    for sid in STATIONS:  # each car has a planned schedule
        await expect(page.locator(f"tr[data-evse={sid}] svg.spark")).to_have_count(1)
    await snapshot(page, "site")


async def planned_kw(api: httpx.AsyncClient, until: Callable[[dict[str, Any]], bool],
                     seconds: float = 15.0) -> dict[str, Any]:
    """The site's newest plan, once `until(plan)` holds."""
    plan: dict[str, Any] = {}
    for _ in range(int(seconds * 10)):
        answer = await api.get("/api/sites/test-small/plan")
        if answer.status_code == 200 and until(plan := answer.json()):
            return plan
        await asyncio.sleep(0.1)
    pytest.fail(f"no such plan in {seconds} s; the newest: {plan.get('inputs')}")


def ev_kw(plan: dict[str, Any], slot: int = 0) -> float:
    inputs = plan["inputs"]
    return float(inputs["planned_ev_kw"][slot] + inputs["reserved_kw"][slot])


async def test_a_temporary_limit_set_through_the_form_changes_the_plan(
    page: Page, run: Run
) -> None:
    token = await add_token(run.csms, "grid", ("test-small/transformer",))
    assert run.csms.api is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{run.csms.api.port}",
                                 headers={"Authorization": f"Bearer {token}"}) as api:
        # three cars charging: the plan gives them more than a 6 kW headroom would
        before = await planned_kw(api, lambda p: p["sessions"] == 3 and ev_kw(p) > 10.0)
        await sign_in(page, token, "/sites/test-small?refresh=1")
        await page.select_option("#limit-form select[name=node]", "transformer")
        await page.fill("#limit-form input[name=kw]", str(LIMIT_KW))
        await page.fill("#limit-form input[name=minutes]", "120")
        await page.click("#limit-form button[type=submit]")
        await expect(page.locator("#limit-result")).to_contain_text(f"{LIMIT_KW:g} kW")
        event = page.locator("table.events tbody tr").first  # the events table shows it
        await expect(event).to_contain_text("active")
        await expect(event).to_contain_text(f"{LIMIT_KW:.1f}")
        after = await planned_kw(api, lambda p: p["id"] != before["id"]
                                 and p["inputs"]["limit_kw"][0] == LIMIT_KW)
    inputs = after["inputs"]
    starts = [datetime.fromisoformat(t) for t in inputs["slot_starts"]]
    within = [i for i, t in enumerate(starts) if t < starts[0] + timedelta(minutes=110)]
    assert len(within) >= 2
    for i in within:  # the plan keeps household + EV load under the new limit
        assert inputs["limit_kw"][i] == LIMIT_KW
        assert inputs["household_kw"][i] + ev_kw(after, i) <= LIMIT_KW + 0.1, i
    assert ev_kw(after) < ev_kw(before) - 2.0
    # ... and the page's chart draws the new plan
    chart = page.locator('[data-site-chart="test-small"]')
    for _ in range(100):  # (no wait_for_function: the page's CSP forbids eval)
        if int(await chart.get_attribute("data-plan-id") or 0) >= after["id"]:
            break
        await asyncio.sleep(0.1)
    else:
        pytest.fail("the chart did not draw the new plan")
    await snapshot(page, "site-limited")


PAGES = ["/", "/stations", "/stations/TS001", "/transactions", "/events",
         "/sites/test-small"]


async def test_every_page_fits_a_phone(browser: Browser, run: Run) -> None:
    """At 390 px wide no page scrolls sideways (wide tables scroll inside their box)."""
    assert run.csms.api is not None
    context = await browser.new_context(
        base_url=f"http://127.0.0.1:{run.csms.api.port}",
        viewport={"width": 390, "height": 844}, device_scale_factor=2, is_mobile=True)
    page = await context.new_page()
    page.set_default_timeout(10_000)
    try:
        await page.goto("/login")
        assert await page.evaluate("document.documentElement.scrollWidth") <= 390
        await sign_in(page, await add_token(run.csms, "admin"), "/")
        for path in PAGES:
            await page.goto(path)
            await page.wait_for_load_state("networkidle")
            width = await page.evaluate("document.documentElement.scrollWidth")
            assert width <= 390, (path, width)
            await snapshot(page, "phone" + path.replace("/", "-"))
    finally:
        await context.close()


async def test_a_command_from_the_station_page_reaches_the_station(
    page: Page, run: Run
) -> None:
    await sign_in(page, await add_token(run.csms, "operator"), "/stations/TS002")
    station = run.stations["TS002"]
    before = list(station.received_calls).count("TriggerMessage")
    form = page.locator("form[data-command=trigger-message]")
    await form.locator("select[name=requested_message]").select_option("Heartbeat")
    await form.locator("button[type=submit]").click()
    result = page.locator("#command-result")
    await expect(result).to_contain_text("answered")
    await expect(result).to_contain_text('"status":"Accepted"')
    assert list(station.received_calls).count("TriggerMessage") == before + 1

    form = page.locator("form[data-command=unlock-connector]")
    await form.locator("input[name=evse_id]").fill("9")  # no such EVSE: the station says so
    await form.locator("button[type=submit]").click()
    await expect(result).to_contain_text("unlock-connector")


async def test_the_language_switch(page: Page, run: Run) -> None:
    await sign_in(page, await add_token(run.csms, "viewer"), "/stations")
    await expect(page.locator("h1")).to_have_text("Stations")
    await page.click("header .languages a[lang=zh-CN]")
    await expect(page.locator("h1")).to_have_text("充电桩")
    await expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    assert page.url.endswith("/stations")
    await page.goto("/sites/test-small")  # the choice is kept, and the script speaks it too
    await expect(page.locator(".u-legend")).to_contain_text("居民负荷")
    await page.click("header .languages a[lang=en]")
    await expect(page.locator("h1")).to_contain_text("Site test-small")


async def serious_violations(page: Page) -> list[str]:
    """axe-core's serious and critical findings on the page as it is now (run through
    the DevTools protocol, so the page's CSP still holds for the page itself)."""
    found = await Axe().run(page)
    return [f"{v['id']}: {[n['target'] for n in v['nodes']][:5]} ({v['help']})"
            for v in found.response["violations"]
            if v.get("impact") in ("serious", "critical")]


async def test_no_page_has_serious_accessibility_violations(page: Page, run: Run) -> None:
    """axe-core on every page, in English and Chinese: labels on every form field,
    contrast, names for links and buttons, the language of the page..."""
    await page.goto("/login")
    found = {"/login": await serious_violations(page)}
    await sign_in(page, await add_token(run.csms, "admin"), "/")
    for lang in ("en", "zh-CN"):
        await page.goto(f"/language?set={lang}&next=/")
        for path in PAGES:
            await page.goto(path)
            await page.wait_for_load_state("networkidle")
            found[f"{lang} {path}"] = await serious_violations(page)
    failing = [f"{where}: {v}" for where, v in found.items() for v in v]
    assert failing == [], "\n".join(failing)


async def test_the_events_page_filters_by_station_and_kind(page: Page, run: Run) -> None:
    await sign_in(page, await add_token(run.csms, "viewer"), "/events")
    rows = page.locator("table.errors tbody tr")
    for sid in STATIONS:  # each simulated station booted
        await expect(rows.filter(has_text=sid).and_(page.locator("[data-kind=boot]"))
                     ).to_have_count(1)
    await page.fill("form.filters input[name=station_id]", "TS002")
    await page.select_option("form.filters select[name=kind]", "boot")
    await page.click("form.filters button[type=submit]")
    await page.wait_for_url("**/events?station_id=TS002&kind=boot")
    await expect(rows).to_have_count(1)
    await expect(rows.first).to_contain_text("TS002")
    await expect(page.locator("#page-info")).to_contain_text("1\u20131 of 1")
    await snapshot(page, "events")


async def test_a_car_that_ignores_its_limit_shows_as_non_compliant(
    browser: Browser, config: Config
) -> None:
    """TS001's station stops obeying profiles; a grid event leaves the cars no headroom, so
    the plan sends every EVSE 0 kW: TS001 keeps drawing and the events page says so."""
    async with site_run(config, local(17, 55), ["TS001", "TS002"]) as run:
        # the cars stay long and want more than they can get: TS001 draws to the end
        cars = [asyncio.ensure_future(run.car(sid, local(18, 0), local(23, 0), 40.0))
                for sid in ("TS001", "TS002")]
        try:
            await run.until(local(18, 10))
            run.stations["TS001"].ignore_profiles = True
            assert run.csms.api is not None
            base_url = f"http://127.0.0.1:{run.csms.api.port}"
            token = await add_token(run.csms, "admin")
            async with httpx.AsyncClient(base_url=base_url, headers={
                    "Authorization": f"Bearer {token}"}) as api:
                made = await api.post("/api/sites/test-small/events", json={
                    "node": "transformer", "kind": "limit", "kw": 12.0,
                    "end": local(23, 30).isoformat()})
                assert made.status_code == 201, made.text
            context = await browser.new_context(base_url=base_url)
            page = await context.new_page()
            page.set_default_timeout(10_000)
            # the clock runs 600 times faster: a plan takes simulated minutes (over 10
            # seen on a busy machine) to solve and reach the stations, so the others may
            # draw their old share for far longer than the default 2 minutes
            await sign_in(page, token, "/events?kind=non-compliance&grace_s=1800")
            rows = page.locator("table.errors tbody tr[data-kind=non-compliance]")
            for _ in range(100):
                if await rows.filter(has_text="TS001 / EVSE 1").count():
                    break
                await asyncio.sleep(0.2)
                await page.reload()
            await expect(rows.filter(has_text="TS001 / EVSE 1").first).to_contain_text(
                re.compile(r"drew 7\.\d kW against a limit of 0\.0 kW"))
            await expect(rows.filter(has_text="TS002")).to_have_count(0)  # it obeyed
            await snapshot(page, "non-compliance")
            await context.close()
        finally:
            for car in cars:
                car.cancel()
            await asyncio.gather(*cars, return_exceptions=True)
