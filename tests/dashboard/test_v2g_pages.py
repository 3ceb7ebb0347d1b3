"""V2G on the dashboard (issue 15): a running session's terms edited from the station page
(signed in, as the page's script does it), the mode and the discharged energy on the
session and transaction views and in the CSV export, in English and Simplified Chinese."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable
from typing import Any

import httpx

from csms.api.auth import CSRF_HEADER
from csms.app import Csms
from csms.store.v2g import Vehicle
from tests.api import test_ocpp21
from tests.api.test_v2g import LATER, NOW, _registers, start
from tests.dashboard import test_operator_pages
from tests.dashboard.test_operator_pages import sign_in

raw = test_ocpp21.raw  # the fixture: a raw OCPP 2.1 station
http = test_operator_pages.http  # the fixture: an HTTP client to the dashboard


async def test_session_v2g_terms_are_shown_and_edited_on_the_station_page(
    csms: Csms, http: httpx.AsyncClient, raw: Callable[..., Any],
) -> None:
    await csms.store.v2g.put_vehicle(Vehicle(
        "car-1", "TOK-V2G", 60.0, True, "export_allowed", 0.2, 0.5, csms.clock.now()))
    async with raw("V21", ["ocpp2.1"]) as station:
        await start(station, "TX-D", "TOK-V2G")
        await station.ok("TransactionEvent", {
            "eventType": "Updated", "timestamp": LATER, "triggerReason": "MeterValuePeriodic",
            "seqNo": 1, "transactionInfo": {"transactionId": "TX-D"},
            "meterValue": [_registers(LATER, 4000.0, 6500.0, 55)],
        }, "2.1")
        assert NOW < LATER
        await sign_in(http, csms, "operator")
        page = (await http.get("/stations/V21")).text
        assert 'id="v2g-terms"' in page and "V2G discharged" in page
        assert "V2G: export allowed" in page and "6.0 kWh" in page
        edited = await http.put("/api/sessions/V21/TX-D/v2g", json={
            "mode": "backup_only", "min_soc": 0.5}, headers={CSRF_HEADER: "dashboard"})
        assert edited.status_code == 200, edited.text
        assert edited.json()["terms"]["mode"] == "backup_only"
        fragment = (await http.get("/fragments/sessions")).text
        assert "V2G: backup only" in fragment
        chinese = (await http.get("/stations/V21", cookies={"csms_lang": "zh-CN"})).text
        assert "会话的 V2G 条款" in chinese and "V2G\uff1a仅备用" in chinese
    listed = (await http.get("/transactions?station_id=V21")).text
    assert "6.0 kWh" in listed and "0.100" in listed
    exported = await http.get("/transactions.csv?station_id=V21")
    table = list(csv.reader(io.StringIO(exported.text.removeprefix("\ufeff"))))
    assert table[0][-3:] == ["discharged_kwh", "v2g_cycles", "v2g_compensation"]
    assert table[1][-3:] == ["6.000", "0.1000", "3.00"]


async def test_a_viewer_sees_no_v2g_form(
    csms: Csms, http: httpx.AsyncClient, raw: Callable[..., Any],
) -> None:
    async with raw("V21", ["ocpp2.1"]) as station:
        await start(station, "TX-E", "TOK-X")
        await sign_in(http, csms, "viewer")
        page = (await http.get("/stations/V21")).text
        assert 'id="v2g-terms"' not in page and "V2G discharged" in page
        refused = await http.put("/api/sessions/V21/TX-E/v2g", json={"opted_in": True},
                                 headers={CSRF_HEADER: "dashboard"})
        assert refused.status_code == 403
