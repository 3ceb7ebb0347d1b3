"""The pages an operator works from, over plain HTTP: the station list (search, filters,
paging, counts), a station's page, transaction history with CSV export, the language
(Simplified Chinese or English) and the catalogue that every shown string must be in."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import httpx
import pytest
from babel.messages.pofile import read_po

from csms.api.auth import CSRF_HEADER
from csms.app import Csms
from csms.dashboard import catalogue, i18n
from simulators.ev import EV
from tests.api.test_event_log import seed_plans
from tests.dashboard.conftest import add_token
from tests.e2e.conftest import StationFactory
from tests.support import eventually

TEMPLATES = Path(catalogue.HERE) / "templates"


@pytest.fixture
async def http(csms: Csms) -> AsyncIterator[httpx.AsyncClient]:
    assert csms.api is not None
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{csms.api.port}",
                                 timeout=15.0) as client:
        yield client


async def sign_in(http: httpx.AsyncClient, csms: Csms, role: str = "operator") -> None:
    answer = await http.post("/login", data={"token": await add_token(csms, role)})
    assert answer.status_code == 303


def rows(html: str) -> list[str]:
    return re.findall(r'<tr data-station="([^"]+)"', html)


async def test_the_station_list_searches_filters_pages_and_counts(
    csms: Csms, http: httpx.AsyncClient, make_station: StationFactory
) -> None:
    for i in range(62):
        await csms.store.stations.add(f"ST{i:03d}", None, csms.clock.now())
    station = await make_station("LIVE01")
    await station.status(1, "Faulted")
    await sign_in(http, csms)

    first = await http.get("/stations")
    assert first.status_code == 200
    assert len(rows(first.text)) == 50 and "63 stations" in first.text
    assert "1 online" in first.text and "62 offline" in first.text
    assert 'rel="next"' in first.text and 'rel="prev"' not in first.text
    second = await http.get("/stations?page=2")
    assert len(rows(second.text)) == 13 and 'rel="prev"' in second.text
    assert set(rows(first.text)).isdisjoint(rows(second.text))
    assert (await http.get("/stations?page=99")).status_code == 200  # the last page

    assert rows((await http.get("/stations?q=st00")).text) == [f"ST00{i}" for i in range(10)]
    assert rows((await http.get("/stations?state=online")).text) == ["LIVE01"]

    async def faulted() -> list[str]:
        return rows((await http.get("/stations?status=Faulted")).text)

    assert await eventually(faulted) == ["LIVE01"]
    assert "1 Faulted" in (await http.get("/fragments/station-counts")).text
    filtered = await http.get("/fragments/stations?q=live")
    assert rows(filtered.text) == ["LIVE01"]
    long = await http.get("/stations?q=" + "x" * 500)
    assert long.status_code == 422  # bounded, not searched

    overview = await http.get("/")
    assert 'href="/stations?state=offline"' in overview.text
    assert "<tr data-station" not in overview.text  # counts on the overview, not 63 rows


async def test_a_station_page_shows_its_evses_sessions_and_commands_by_role(
    csms: Csms, http: httpx.AsyncClient, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    await station.plug_in(1, EV())
    transaction_id = station.transaction_id(1)
    assert transaction_id
    await sign_in(http, csms, "operator")

    async def page() -> str | None:
        text = (await http.get("/stations/CS001")).text
        return text if transaction_id in text and "status-occupied" in text else None

    text = await eventually(page)
    assert 'id="commands"' in text and 'data-command="reset"' in text
    assert f"<option>{transaction_id}</option>" in text  # stop charging offers it
    assert 'href="/transactions?station_id=CS001"' in text
    assert 'href="/events?station_id=CS001"' in text  # its errors and events
    assert re.search(r'<tr data-kind="boot">.*?booted \(PowerUp\), Accepted', text, re.S)

    await sign_in(http, csms, "viewer")
    viewer = await http.get("/stations/CS001")
    assert viewer.status_code == 200 and 'id="commands"' not in viewer.text
    assert (await http.get("/stations/NOPE")).status_code == 404
    await sign_in(http, csms, "grid")
    assert (await http.get("/stations/CS001")).status_code == 404  # no station data


async def test_transaction_history_filters_and_exports_csv(
    csms: Csms, http: httpx.AsyncClient, make_station: StationFactory
) -> None:
    await sign_in(http, csms)
    tariff = await http.put("/api/driver-tariffs/default", headers={CSRF_HEADER: "test"},
                            json={"currency": "CNY", "price_per_kwh": "1.50",
                                  "session_fee": "2.00"})
    assert tariff.status_code in (200, 201), tariff.text
    one = await make_station("CS001")
    two = await make_station("CS002")
    await one.plug_in(1, EV())
    await two.plug_in(1, EV())
    await two.unplug(1)

    async def both() -> str | None:
        text = (await http.get("/transactions")).text
        return text if text.count("<tr data-transaction") == 2 else None

    assert await eventually(both)
    running = await http.get("/transactions?active=true")
    assert running.text.count("<tr data-transaction") == 1 and "CS001" in running.text
    assert (await http.get("/transactions?station_id=CS002")).text.count(
        "<tr data-transaction") == 1
    assert (await http.get("/transactions?since=not-a-date")).status_code == 200

    exported = await http.get("/transactions.csv?station_id=CS002")
    assert exported.status_code == 200
    assert exported.headers["content-type"].startswith("text/csv")
    table = list(csv.reader(io.StringIO(exported.text.removeprefix("\ufeff"))))
    assert table[0][:3] == ["station_id", "evse_id", "transaction_id"]
    assert len(table) == 2 and table[1][0] == "CS002" and table[1][5]  # ended
    assert table[0][-6:-3] == ["cost", "currency", "cost_final"]
    assert table[1][-5:-3] == ["CNY", "true"] and Decimal(table[1][-6]) >= Decimal("2.00")
    assert table[0][-3:] == ["discharged_kwh", "v2g_cycles", "v2g_compensation"]
    assert table[1][-3:] == ["0.000", "", "0.00"]  # a charge-only car
    ended = (await http.get("/transactions?station_id=CS002")).text
    assert re.search(r'<td class="cost">\d+\.\d+ CNY</td>', ended)  # the final cost


async def test_the_events_page_filters_by_station_and_kind_and_pages(
    csms: Csms, http: httpx.AsyncClient
) -> None:
    now = csms.clock.now()
    await seed_plans(csms, now)
    for i in range(55):
        await csms.store.security_events.add("CS1", "InvalidTLSVersion",
                                             now - timedelta(minutes=i), f"<b>try {i}</b>",
                                             False, now)
    await sign_in(http, csms, "viewer")
    assert 'href="/events"' in (await http.get("/")).text  # in the navigation

    first = await http.get("/events")
    assert first.status_code == 200
    assert first.text.count("<tr data-kind=") == 50 and 'rel="next"' in first.text
    assert "1\u201350 of 58" in first.text
    assert "InvalidTLSVersion: &lt;b&gt;try 0&lt;/b&gt;" in first.text  # a station's words
    second = await http.get("/events?page=2")
    assert second.text.count("<tr data-kind=") == 8 and 'rel="prev"' in second.text
    assert (await http.get("/events?page=99")).text.count("<tr data-kind=") == 8  # the last
    rejected = await http.get("/events?kind=profile")
    assert rejected.text.count("<tr data-kind=") == 1
    assert "CS2 / EVSE 1" in rejected.text and "TxNotFound" in rejected.text
    over = await http.get("/events?kind=non-compliance&station_id=CS1")
    assert over.text.count('<tr data-kind="non-compliance"') == 1
    assert "drew 1.4 kW against a limit of 0.0 kW (2 samples since" in over.text
    assert (await http.get("/events?station_id=CS9")).text.count("<tr data-kind=") == 0
    assert 'selected>profile rejected' in rejected.text  # the filter is kept
    assert (await http.get("/events?kind=nonsense")).status_code == 200  # no filter
    assert (await http.get("/events?station_id=" + "x" * 100)).status_code == 422
    chinese = await http.get("/events?kind=profile", headers={"Accept-Language": "zh-CN"})
    assert "错误与事件" in chinese.text and "TxNotFound" in chinese.text

    await sign_in(http, csms, "grid")
    assert (await http.get("/events")).status_code == 404  # no station data


async def test_the_language_follows_the_browser_and_the_switch(
    csms: Csms, http: httpx.AsyncClient
) -> None:
    await sign_in(http, csms)
    chinese = await http.get("/", headers={"Accept-Language": "zh-CN,zh;q=0.9,en;q=0.8"})
    assert '<html lang="zh-CN">' in chinese.text and "总览" in chinese.text
    assert "最近的错误" in chinese.text and "Recent errors" not in chinese.text
    english = await http.get("/", headers={"Accept-Language": "en-GB,en;q=0.9"})
    assert '<html lang="en">' in english.text and "Recent errors" in english.text
    assert "总览" not in english.text
    taiwan = await http.get("/", headers={"Accept-Language": "zh-TW"})
    assert '<html lang="en">' in taiwan.text  # only Simplified Chinese is offered

    switched = await http.get("/language?set=zh-CN&next=/stations")
    assert switched.status_code == 303 and switched.headers["location"] == "/stations"
    page = await http.get("/stations", headers={"Accept-Language": "en"})
    assert "充电桩" in page.text  # the switch wins over the browser
    assert (await http.get("/language?set=zh-CN&next=//evil.example")).headers[
        "location"] == "/"
    login = await http.get("/login")
    assert "请粘贴 API 令牌" in login.text  # the first screen says how to get a token


async def test_the_first_screens_say_how_to_begin(
    csms: Csms, http: httpx.AsyncClient
) -> None:
    login = (await http.get("/login")).text
    assert "<code>csms api-tokens add my-dashboard --role admin</code>" in login
    await sign_in(http, csms, "admin")
    overview = (await http.get("/")).text  # no site configured here
    assert 'id="no-sites"' in overview
    assert "cp config/sites/residential.toml config/sites/my-site.toml" in overview
    assert 'enabled = true\nsites = ["config/sites/my-site.toml"]' in overview


def test_the_example_site_file_the_overview_names_exists() -> None:
    assert (Path(__file__).resolve().parents[2] / "config/sites/residential.toml").exists()


async def test_favicon(http: httpx.AsyncClient) -> None:
    icon = await http.get("/favicon.ico")
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg")


def test_every_marked_string_is_translated() -> None:
    """Fails when a page gains a string that the zh-CN catalogue lacks
    (run `python -m csms.dashboard.catalogue`, then translate)."""
    with open(catalogue.po_path("zh-CN"), "rb") as f:
        chinese = {m.id: m.string for m in read_po(f) if m.id}
    marked = {m.id for m in catalogue.extract() if m.id}
    assert len(marked) > 150
    untranslated = sorted(m for m in marked if not chinese.get(m))
    assert untranslated == []


def test_no_template_shows_unmarked_text() -> None:
    """Text a template shows must be inside {% trans %} or _(): what is left once the
    markers, expressions, tags and markup are taken away may hold no words."""
    allowed = re.compile(r"^(kW|kWh|EVSE|ocpp-csms|CSMS)$")
    for path in TEMPLATES.glob("*.html"):
        source = path.read_text(encoding="utf-8")
        text = re.sub(r"{%-? *trans.*?endtrans *-?%}", " ", source, flags=re.S)
        text = re.sub(r"{{.*?}}|{%.*?%}|{#.*?#}", " ", text, flags=re.S)
        text = re.sub(r"<(script|style)\b.*?</\1>", " ", text, flags=re.S)
        text = re.sub(r"<code>.*?</code>", " ", text, flags=re.S)  # commands, not words
        text = re.sub(r"<[^>]*>", " ", text, flags=re.S)
        words = [w for w in re.findall(r"[A-Za-z][A-Za-z'\u2019-]+", text) if not allowed.match(w)]
        assert words == [], (path.name, words)


def test_the_language_choice() -> None:
    assert i18n.choose(None, "zh-CN,zh;q=0.9") == "zh-CN"
    assert i18n.choose(None, "fr;q=1, zh;q=0.5, en;q=0.7") == "en"
    assert i18n.choose(None, "fr, zh-Hans;q=0.2") == "zh-CN"
    assert i18n.choose("en", "zh-CN") == "en"
    assert i18n.choose("xx", None) == "en"
    assert i18n.choose(None, "zh;q=abc," * 1000) == "en"  # bounded, malformed ignored
