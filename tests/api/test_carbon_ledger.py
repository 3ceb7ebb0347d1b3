"""Issue 14: emission factors per site, the carbon figures of settlements and sessions,
and the revenue-split ledger, over HTTP against a real PostgreSQL."""

from __future__ import annotations

import asyncio
import json
import math
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
import structlog

from csms import metrics
from csms.api.auth import new_token
from csms.app import Csms
from csms.config import Config
from csms.store.api_tokens import ApiTokenRepo
from tests.api.conftest import Client
from tests.api.test_grid_events import SITE, with_street

CARBON = "\n[carbon]\nkg_per_kwh_daily = [0.8]\nweight_per_kg = 0.05\n"


class SteppedClock:
    """The wall clock plus an offset a test moves forward: an event ends, later samples
    arrive, and the settlement comes after."""

    def __init__(self) -> None:
        self.offset = timedelta(0)

    def now(self) -> datetime:
        return datetime.now(UTC) + self.offset

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


@pytest.fixture
def config(config: Config, tmp_path: Path) -> Config:
    configured = with_street(config, tmp_path)
    (tmp_path / "street.toml").write_text(SITE + CARBON)
    return configured


@pytest.fixture
async def csms(config: Config) -> AsyncIterator[Csms]:
    app = await Csms.start(config, SteppedClock())  # type: ignore[arg-type]
    yield app
    await app.stop()


async def _token(csms: Csms, base_url: str, role: str, *, nodes: tuple[str, ...] = (),
                 portfolios: tuple[str, ...] = ()) -> httpx.AsyncClient:
    token, hashed = new_token()
    assert await ApiTokenRepo(csms.store.pool).add(
        f"{role}-{token[-6:]}", role, hashed, csms.clock.now(), nodes, portfolios=portfolios)
    return httpx.AsyncClient(base_url=base_url, timeout=15.0,
                             headers={"Authorization": f"Bearer {token}"})


def _rejected(reason: str) -> float:
    return metrics.rejected_inputs.labels("emission_factors", reason)._value.get()


async def test_emission_factors_are_set_by_the_grid_company_or_aggregator_and_bounded(
    csms: Csms, client: Client, base_url: str
) -> None:
    now = csms.clock.now().replace(second=0, microsecond=0)
    hour = {"start": now.isoformat(), "end": (now + timedelta(hours=1)).isoformat(),
            "kg_per_kwh": 0.45}
    url = "/api/sites/street/emission-factors"
    assert (await client("operator").post("/api/portfolios", json={
        "id": "east", "name": "East", "operator": "Suzhou Property Co.",
        "members": [{"site_id": "street"}]})).status_code == 201
    async with await _token(csms, base_url, "grid", nodes=("street/feeder-a",)) as dso, \
            await _token(csms, base_url, "grid", nodes=("elsewhere/t",)) as other_dso, \
            await _token(csms, base_url, "aggregator", portfolios=("east",)) as vpp, \
            await _token(csms, base_url, "aggregator", portfolios=("west",)) as stranger:
        assert (await dso.put(url, json={"intervals": [hour]})).status_code == 200
        assert (await other_dso.put(url, json={"intervals": [hour]})).status_code == 404
        assert (await stranger.put(url, json={"intervals": [hour]})).status_code == 404
        assert (await client("viewer").put(url, json={"intervals": [hour]})).status_code == 403
        later = {**hour, "start": (now + timedelta(hours=1)).isoformat(),
                 "end": (now + timedelta(hours=2)).isoformat(), "kg_per_kwh": 0.3}
        set_ = await vpp.put(url, json={"intervals": [later]})
        assert set_.status_code == 200 and set_.json()[0]["kg_per_kwh"] == 0.3

        for reason, bad in [
            ("factor_out_of_range", [{**hour, "kg_per_kwh": 7.5}]),
            ("factor_out_of_range", [{**hour, "kg_per_kwh": -0.1}]),
            ("bad_interval", [{**hour, "end": (now + timedelta(days=2)).isoformat()}]),
            ("overlap", [hour, {**hour, "kg_per_kwh": 0.2}]),
            ("out_of_window", [{**hour, "start": (now + timedelta(days=60)).isoformat(),
                                "end": (now + timedelta(days=60, hours=1)).isoformat()}]),
        ]:
            before = _rejected(reason)
            with structlog.testing.capture_logs() as logs:
                refused = await dso.put(url, json={"intervals": bad})
            assert refused.status_code == 422, (reason, refused.text)
            assert _rejected(reason) == before + 1, reason
            assert [(e["event"], e["reason"], e["site"]) for e in logs
                    if e["event"].endswith(".rejected")] == [
                ("emission_factors.rejected", reason, "street")]
        nan_body = json.dumps({"intervals": [{**hour, "kg_per_kwh": math.nan}]})
        nan = await dso.put(url, content=nan_body, headers={"Content-Type": "application/json"})
        assert nan.status_code == 422
        assert (await dso.put(url, json={"intervals": []})).status_code == 422

        got = (await vpp.get(url, params={"start": now.isoformat(), "hours": 3,
                                          "step_minutes": 60})).json()
    assert got["weight_per_kg"] == 0.05
    assert [(f["kg_per_kwh"], f["source"]) for f in got["factors"]] == [
        (0.45, "api"), (0.3, "api"), (0.8, "site_file")]
    # the plan weighs them: the stored factors over the site file's, with its weight
    from csms.scheduling.grid_inputs import plan_inputs

    site_file = csms.sites["street"]
    inputs = await plan_inputs(csms.store, site_file.site, site_file.prices, now)
    slots = [now + timedelta(minutes=30 + 60 * h) for h in range(3)]
    cost = inputs.prices.carbon.cost_per_kwh(slots, [t + timedelta(minutes=15) for t in slots])
    assert cost == pytest.approx([0.05 * 0.45, 0.05 * 0.3, 0.05 * 0.8])


def _power(start: datetime, minutes: int, watts: float, every: int = 10) -> list[dict]:
    return [{"timestamp": (start + timedelta(minutes=m)).isoformat(), "sampledValue": [
        {"value": watts, "measurand": "Power.Active.Import"}]} for m in range(0, minutes, every)]


async def _session(station: Any, tx: str, token: str, started: datetime,
                   spans: list[tuple[int, float]]) -> None:
    """A transaction from `started`, drawing each (minutes, W) in turn, then ended."""
    seq = 0
    await station.call("TransactionEvent", {
        "eventType": "Started", "timestamp": started.isoformat(), "seqNo": seq,
        "triggerReason": "Authorized", "transactionInfo": {"transactionId": tx},
        "evse": {"id": 1, "connectorId": 1}, "idToken": {"idToken": token, "type": "ISO14443"}})
    t = started
    for minutes, watts in spans:
        seq += 1
        await station.call("TransactionEvent", {
            "eventType": "Updated", "timestamp": t.isoformat(), "seqNo": seq,
            "triggerReason": "MeterValuePeriodic", "transactionInfo": {"transactionId": tx},
            "meterValue": _power(t, minutes, watts)})
        t += timedelta(minutes=minutes)
    await station.call("TransactionEvent", {
        "eventType": "Ended", "timestamp": t.isoformat(), "seqNo": seq + 1,
        "triggerReason": "EVDeparted",
        "transactionInfo": {"transactionId": tx, "stoppedReason": "EVDisconnected"}})


async def test_a_settlement_carries_carbon_figures_per_session_and_writes_the_ledger(
    csms: Csms, client: Client, make_station: Any, base_url: str
) -> None:
    a, b = await make_station("FA001"), await make_station("FA002")
    now = csms.clock.now().replace(second=0, microsecond=0)
    start = now - timedelta(hours=1)
    for back in (1, 2, 3):  # 7 kW at each charger on earlier days: a 14 kW baseline
        for station in (a, b):
            await station.call("MeterValues", {"evseId": 1, "meterValue": _power(
                start - timedelta(days=back, hours=2), 300, 7000.0)})
    # CARD-A: held at 2 kW through the two-hour event, then took the 7 kWh it still
    # needed; CARD-B: full after its first hour, as it would have been anyway
    await _session(a, "TX-A", "CARD-A", start - timedelta(minutes=30),
                   [(30, 7000.0), (120, 2000.0), (60, 7000.0)])
    await _session(b, "TX-B", "CARD-B", start, [(60, 7000.0)])
    admin, operator = client("admin"), client("operator")
    event = (await admin.post("/api/sites/street/events", json={
        "node": "feeder-a", "kind": "limit", "kw": 2.0, "start": start.isoformat(),
        "end": (start + timedelta(hours=2)).isoformat(), "reference": "DR-7"})).json()
    assert (await admin.put("/api/sites/street/emission-factors", json={"intervals": [{
        "start": start.isoformat(), "end": (start + timedelta(hours=1)).isoformat(),
        "kg_per_kwh": 0.5}]})).status_code == 200  # the first hour's published factor
    assert (await operator.post("/api/portfolios", json={
        "id": "east", "name": "East", "operator": "Suzhou Property Co.",
        "members": [{"site_id": "street"}]})).status_code == 201
    csms.clock.offset = timedelta(hours=3)  # type: ignore[attr-defined]  # the event is over

    url = f"/api/sites/street/events/{event['id']}/settlement"
    terms = {"committed_kw": 6.0, "price_per_kwh": 3.0, "baseline_days": 3, "similar": "any",
             "portfolio": "east", "currency": "CNY"}
    no_shares = await admin.post(url, json=terms)
    assert no_shares.status_code == 409 and "revenue shares" in no_shares.text
    shares = "/api/portfolios/east/revenue-shares"
    before = metrics.rejected_inputs.labels("revenue_shares", "bad_shares")._value.get()
    bad = await operator.put(shares, json={"aggregator": 0.5, "site_operator": 0.5,
                                           "drivers": 0.5})
    assert bad.status_code == 422
    assert metrics.rejected_inputs.labels("revenue_shares", "bad_shares")._value.get() == \
        before + 1
    assert (await operator.put(shares, json={"aggregator": 0.2, "site_operator": 0.3,
                                             "drivers": 0.5})).status_code == 200
    assert (await admin.post(url, json={**terms, "portfolio": "west"})).status_code == 404
    async with await _token(csms, base_url, "grid", nodes=("street/transformer",)) as dso:
        assert (await dso.post(url, json=terms)).status_code == 403  # settles, no ledger

    settled = await admin.post(url, json=terms)
    assert settled.status_code == 200, settled.text
    s = settled.json()
    assert [round(i["baseline_kw"], 1) for i in s["intervals"]] == [14.0] * 8
    assert [round(i["metered_kw"], 1) for i in s["intervals"]] == [9.0] * 4 + [2.0] * 4
    assert [i["kg_per_kwh"] for i in s["intervals"]] == [0.5] * 4 + [0.8] * 4
    assert s["delivered_kwh"] == pytest.approx(17.0, abs=0.1)
    assert s["payment"] == pytest.approx(43.2)  # 14.4 kWh paid (120% cap) x 3.0
    c = s["carbon"]
    assert c["emissions_kg"] == pytest.approx(9 * 0.5 + 2 * 0.8, abs=0.05)
    assert c["baseline_emissions_kg"] == pytest.approx(14 * 0.5 + 14 * 0.8, abs=0.05)
    assert c["avoided_kg"] == pytest.approx(18.2 - 6.1, abs=0.1)

    by_energy = sorted(s["sessions"], key=lambda x: x["energy_kwh"])
    held, full = by_energy  # CARD-A drew 4 kWh in the window, CARD-B 7
    assert held["energy_kwh"] == pytest.approx(4.0, abs=0.05)
    assert held["baseline_kwh"] == pytest.approx(11.0, abs=0.1)
    assert held["contribution_kwh"] == pytest.approx(7.0, abs=0.1)
    assert held["avoided_kg"] > 0
    assert full["contribution_kwh"] == pytest.approx(0.0, abs=0.05)
    text = settled.text
    assert "CARD-A" not in text and "CARD-B" not in text and "FA001" not in text

    ledger = s["ledger"]
    assert [(r["party"], r["amount"]) for r in ledger] == [
        ("aggregator", "8.64"), ("site_operator", "12.96"), ("driver", "21.60")]
    assert ledger[2]["payee"] == held["driver"] and ledger[2]["payee"].startswith("drv-")
    again = await admin.post(url, json=terms)
    assert again.status_code == 409  # one ledger per event and portfolio

    log = (await admin.get("/api/audit", params={"limit": 1000})).json()
    recorded = [e for e in log if e["kind"] == "ledger.recorded"]
    assert [e["seq"] for e in recorded] == [r["audit_seq"] for r in ledger]
    assert all(e["body"]["settlement_seq"] == s["audit_seq"] for e in recorded)

    async with await _token(csms, base_url, "aggregator",
                            portfolios=("east",)) as vpp:
        csv_text = (await vpp.get("/api/portfolios/east/ledger",
                                  params={"format": "csv"})).text
        mine = (await vpp.get("/api/audit", params={"limit": 1000})).json()
    lines = csv_text.strip().splitlines()
    assert lines[0].startswith("id,recorded_at,portfolio_id") and len(lines) == 4
    assert "CARD-A" not in csv_text and ",driver," in lines[3] and lines[3].count("21.60")
    assert {e["kind"] for e in mine} >= {"ledger.recorded", "settlement.computed",
                                         "revenue_shares.set"}

    one = await client("viewer").get("/api/sites/street/sessions/FA001/TX-A/carbon")
    assert one.status_code == 200, one.text
    sc = one.json()
    assert sc["energy_kwh"] == pytest.approx(3.5 + 4.0 + 7.0, abs=0.1)
    assert sc["driver"] == held["driver"] and not math.isnan(sc["avoided_kg"])
    assert (await client("viewer").get(
        "/api/sites/street/sessions/FB001/TX-A/carbon")).status_code == 404
