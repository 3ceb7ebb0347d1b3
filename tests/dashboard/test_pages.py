"""The dashboard's pages and sign-in over plain HTTP (no browser): who sees what, the
cookie the API accepts, and what a cookie may not do without the CSRF header."""

from __future__ import annotations

import asyncio
import re
from collections.abc import AsyncIterator
from dataclasses import replace
from datetime import UTC, timedelta
from pathlib import Path

import httpx
import pytest

from csms.api.auth import COOKIE, CSRF_HEADER
from csms.app import Csms
from csms.config import Config, SchedulerConfig
from csms.store.plans import PlanRecord
from tests.api.test_event_log import seed_plans
from tests.dashboard.conftest import add_token
from tests.e2e.conftest import StationFactory

SITE_FILE = Path(__file__).resolve().parents[2] / "config/sites/test-small.toml"


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, scheduler=SchedulerConfig(
        enabled=True, sites=(str(SITE_FILE),), interval_s=3600, tx_default_profile=False))


@pytest.fixture
async def http(csms: Csms) -> AsyncIterator[httpx.AsyncClient]:
    assert csms.api is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{csms.api.port}",
                                 timeout=15.0) as client:
        yield client


async def signed_in(http: httpx.AsyncClient, token: str) -> httpx.Response:
    answer = await http.post("/login", data={"token": token, "next": "/sites/test-small"})
    return answer


async def test_sign_in_sets_an_http_only_cookie_the_api_accepts(
    csms: Csms, http: httpx.AsyncClient
) -> None:
    first = await http.get("/sites/test-small")
    assert first.status_code == 303
    assert first.headers["location"] == "/login?next=/sites/test-small"
    assert (await http.get("/fragments/stations")).status_code == 401

    wrong = await http.post("/login", data={"token": "csms_nope", "next": "/"})
    assert wrong.status_code == 401 and "Unknown or revoked" in wrong.text
    answer = await signed_in(http, await add_token(csms, "admin"))
    assert answer.status_code == 303 and answer.headers["location"] == "/sites/test-small"
    cookie = answer.headers["set-cookie"].lower()
    assert f"{COOKIE}=" in cookie and "httponly" in cookie and "samesite=strict" in cookie

    page = await http.get("/sites/test-small")
    assert page.status_code == 200 and 'data-site-chart="test-small"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert (await http.get("/api/stations")).status_code == 200  # the API takes the cookie
    body = {"id": "CS100", "no_password": True}
    refused = await http.post("/api/stations", json=body)
    assert refused.status_code == 403 and CSRF_HEADER in refused.json()["detail"]
    made = await http.post("/api/stations", json=body, headers={CSRF_HEADER: "test"})
    assert made.status_code == 201

    out = await http.post("/logout")
    http.cookies.clear()
    bearer = {"Authorization": f"Bearer {await add_token(csms, 'viewer')}"}
    assert (await http.get("/", headers=bearer)).status_code == 200  # scripts, curl
    assert out.status_code == 303 and (await http.get("/")).status_code == 303


async def test_sign_in_only_redirects_within_the_site(
    csms: Csms, http: httpx.AsyncClient
) -> None:
    token = await add_token(csms, "viewer")
    for evil in ("//evil.example/", "https://evil.example/", "/\\evil.example"):
        answer = await http.post("/login", data={"token": token, "next": evil})
        assert answer.headers["location"] == "/", evil


async def test_what_each_role_sees(csms: Csms, http: httpx.AsyncClient) -> None:
    await signed_in(http, await add_token(csms, "viewer"))
    overview = await http.get("/")
    assert "Stations" in overview.text and 'href="/sites/test-small"' in overview.text
    assert 'id="no-sites"' not in overview.text
    site = await http.get("/sites/test-small")
    assert site.status_code == 200 and "limit-form" not in site.text  # read only
    assert (await http.get("/sites/elsewhere")).status_code == 404

    await signed_in(http, await add_token(csms, "grid", ("test-small/transformer",)))
    overview = await http.get("/")
    assert "Stations" not in overview.text  # a grid company does not see stations
    assert (await http.get("/fragments/stations")).text.count("<tr") == 0
    site = await http.get("/sites/test-small")
    assert 'id="limit-form"' in site.text and '<option value="transformer">' in site.text

    await signed_in(http, await add_token(csms, "grid", ("other-site/transformer",)))
    assert (await http.get("/sites/test-small")).status_code == 404
    assert 'href="/sites/test-small"' not in (await http.get("/")).text


async def test_the_charting_library_is_served_from_here(http: httpx.AsyncClient) -> None:
    script = await http.get("/static/vendor/uplot/uPlot.iife.min.js")
    assert script.status_code == 200 and "uPlot" in script.text
    assert (await http.get("/static/vendor/uplot/LICENSE")).status_code == 200
    assert (await http.get("/static/dashboard.js")).status_code == 200


async def test_recent_errors_name_the_station_evse_and_reason(
    csms: Csms, http: httpx.AsyncClient, make_station: StationFactory
) -> None:
    station = await make_station("TS001")
    await station.status(1, "Faulted")
    await seed_plans(csms, csms.clock.now())
    await csms.store.plans.add(PlanRecord(
        site_id="test-small", planned_at=csms.clock.now(), trigger="test", sessions=1,
        inputs={}, schedule={}, status="solved", profiles_sent=1, profiles_rejected=1))
    await signed_in(http, await add_token(csms, "viewer"))
    for _ in range(50):  # the StatusNotification is stored as the station sends it
        errors = (await http.get("/fragments/errors")).text
        if "Faulted" in errors:
            break
        await asyncio.sleep(0.1)
    assert "TS001 / EVSE 1" in errors and "EVSE 1 connector 1 Faulted" in errors
    # not "1 profile(s) rejected": which station, which EVSE, and the station's reason
    assert "CS2 / EVSE 1" in errors and "TxNotFound" in errors and "tx-2" in errors
    assert "CS1 / EVSE 1" in errors and "drew 1.4 kW against a limit of 0.0 kW" in errors
    assert 'href="/events"' in (await http.get("/")).text
    stations = (await http.get("/fragments/stations")).text
    assert "status-faulted" in stations and "online" in stations

    await signed_in(http, await add_token(csms, "grid", ("test-small/transformer",)))
    errors = (await http.get("/fragments/errors")).text
    assert "Faulted" not in errors and "1 profile(s) rejected" in errors  # no station data
    assert "TxNotFound" not in errors
    assert '<a href="/sites/test-small">site test-small</a>' in errors
    chinese = await http.get("/fragments/errors", headers={"Accept-Language": "zh-CN"})
    assert ">站点 test-small</a>" in chinese.text


async def test_the_site_page_says_why_each_car_is_held(
    csms: Csms, http: httpx.AsyncClient
) -> None:
    """From 08:00 local (the Jiangsu tariff's peak) TS001 waits for the 21:00 valley;
    TS002 waits while the transformer is full; TS003 while a grid event's limit is."""
    now = csms.clock.now()
    t0 = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0) \
        + timedelta(days=1)  # 08:00 at +08:00
    starts = [t0 + timedelta(minutes=15 * i) for i in range(56)]  # to 22:00 local
    planned_ev = [22.0] * 8 + [7.0] * 44 + [7.0] * 4
    event = await csms.store.grid.add_event("test-small", "transformer", "limit", 32.0,
                                            starts[4], starts[8], None, "test", now)

    def entry(held_until: int) -> dict[str, object]:
        return {"transaction_id": f"tx-{held_until}", "energy_needed_kwh": 10.0,
                "energy_planned_kwh": 8.0, "profile": "sent", "why": "",
                "setpoints": [[0, 0.0, 0], [held_until * 900, 32.0, 7360]]}

    await csms.store.plans.add(PlanRecord(
        site_id="test-small", planned_at=now, trigger="test", sessions=3, inputs={
            "now": t0.isoformat(), "slot_starts": [t.isoformat() for t in starts],
            "limit_kw": [32.0] * 56, "household_kw": [10.0] * 56, "reserved_kw": [0.0] * 56,
            "planned_ev_kw": planned_ev, "sessions": []},
        schedule={"TS001": entry(52), "TS002": entry(4),
                  "TS003": {**entry(8), "setpoints": [[0, 32.0, 7360], [3600, 0.0, 0],
                                                      [7200, 32.0, 7360]]}},
        status="solved", profiles_sent=3))
    await signed_in(http, await add_token(csms, "viewer"))

    page = (await http.get("/fragments/sites/test-small/schedules")).text

    def why(evse: str) -> str:
        row = re.search(rf'<tr data-evse="{evse}".*?</tr>', page, re.S)
        assert row is not None, evse
        return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", row.group(0)))

    assert ("held 08:00\u201321:00: the price valley starts at 21:00 (0.5583 → 0.3583 CNY/kWh)"
            in why("TS001"))
    assert "held 08:00\u201309:00: limited by the transformer limit: no headroom left" in why(
        "TS002")
    assert (f"held 09:00\u201310:00: the limit of grid event #{event.id} is full (32.0 kW on "
            "transformer)") in why("TS003")
    assert 'class="short"' in page  # 8 of 10 kWh planned: flagged
    chinese = await http.get("/sites/test-small", headers={"Accept-Language": "zh-CN"})
    assert "谷电价" in chinese.text
