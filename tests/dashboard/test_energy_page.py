"""The site page's battery and solar card (issue 15), in English and Simplified Chinese,
for the shipped integrated station (config/sites/solar-storage.toml)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import httpx
import pytest

from csms.api.auth import COOKIE
from csms.app import Csms
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
