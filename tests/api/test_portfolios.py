"""Issue 14, first part: portfolios of sites with an aggregator role scoped to them, and the
hash-chained audit log of dispatches and portfolios that `csms audit verify` checks."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest

from csms.api.auth import new_token
from csms.app import Csms
from csms.config import Config
from csms.store.api_tokens import ApiTokenRepo
from tests.api.conftest import Client
from tests.api.test_grid_events import TARIFFS, with_street

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def config(config: Config, tmp_path: Path) -> Config:
    return with_street(config, tmp_path)


async def _aggregator(csms: Csms, base_url: str, *portfolios: str) -> httpx.AsyncClient:
    token, hashed = new_token()
    assert await ApiTokenRepo(csms.store.pool).add(
        f"vpp-{'-'.join(portfolios)}", "aggregator", hashed, csms.clock.now(),
        portfolios=portfolios)
    return httpx.AsyncClient(base_url=base_url, timeout=15.0,
                             headers={"Authorization": f"Bearer {token}"})


def _portfolio(pid: str, *members: dict[str, Any]) -> dict[str, Any]:
    return {"id": pid, "name": f"{pid} pool", "operator": "Suzhou Property Co.",
            "members": list(members) or [{"site_id": "street"}]}


async def test_portfolios_are_made_by_operators_and_seen_by_their_aggregator(
    csms: Csms, client: Client, base_url: str
) -> None:
    operator = client("operator")
    made = await operator.post("/api/portfolios", json=_portfolio(
        "east", {"site_id": "street", "node": "feeder-a"}, {"site_id": "street"}))
    assert made.status_code == 201, made.text
    assert made.json()["members"] == [{"site_id": "street", "node": "feeder-a"},
                                      {"site_id": "street", "node": None}]
    assert (await operator.post("/api/portfolios", json=_portfolio("west"))).status_code == 201
    again = await operator.post("/api/portfolios", json=_portfolio("east"))
    assert again.status_code == 409
    for bad in ({"site_id": "nowhere"}, {"site_id": "street", "node": "feeder-z"}):
        refused = await operator.post("/api/portfolios", json=_portfolio("x", bad))
        assert refused.status_code == 422, refused.text
    assert (await operator.post("/api/portfolios", json={**_portfolio("y"), "members": []})
            ).status_code == 422
    assert (await operator.post("/api/portfolios", json=_portfolio("bad id!"))
            ).status_code == 422

    async with await _aggregator(csms, base_url, "east") as vpp:
        assert [p["id"] for p in (await vpp.get("/api/portfolios")).json()] == ["east"]
        assert (await vpp.get("/api/portfolios/east")).status_code == 200
        assert (await vpp.get("/api/portfolios/west")).status_code == 404  # not its own
        assert (await vpp.post("/api/portfolios", json=_portfolio("z"))).status_code == 403
        assert (await vpp.get("/api/stations")).status_code == 403  # no drivers, no stations
    assert (await client("grid").get("/api/portfolios")).status_code == 403
    assert [p["id"] for p in (await client("viewer").get("/api/portfolios")).json()] == [
        "east", "west"]
    assert (await client("viewer").delete("/api/portfolios/west")).status_code == 403
    assert (await operator.delete("/api/portfolios/west")).status_code == 204
    assert (await operator.delete("/api/portfolios/west")).status_code == 404


def _cli(*args: str, config: Config, command: str = "audit",
         extra: tuple[str, ...] = ()) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "csms.cli", command, *args, *extra,
         "--database-url", config.database.url, "--data-dir", config.database.data_dir],
        cwd=ROOT, capture_output=True, text=True, timeout=120)


async def test_portfolios_from_the_command_line(csms: Csms, client: Client,
                                                tmp_path: Path) -> None:
    settings = tmp_path / "csms.toml"
    settings.write_text(f"[scheduler]\nsites = [{str(tmp_path / 'street.toml')!r}]\n"
                        f"tariffs_dir = {str(TARIFFS)!r}\n")
    conf = ("--config", str(settings))
    made = _cli("add", "north", "--name", "North pool", "--operator", "Grid Co.",
                "--member", "street/feeder-b", "--member", "street", config=csms.config,
                command="portfolios", extra=conf)
    assert made.returncode == 0, made.stderr
    wrong = _cli("add", "south", "--name", "S", "--operator", "O", "--member", "street/nope",
                 config=csms.config, command="portfolios", extra=conf)
    assert wrong.returncode == 2 and "has no node nope" in wrong.stderr
    listed = _cli("list", config=csms.config, command="portfolios", extra=conf)
    assert "north" in listed.stdout and "street, street/feeder-b" in listed.stdout
    got = (await client("viewer").get("/api/portfolios/north")).json()
    assert got["created_by"].startswith("cli:") and len(got["members"]) == 2
    assert _cli("remove", "north", config=csms.config, command="portfolios",
                extra=conf).returncode == 0
    log = (await client("admin").get("/api/audit")).json()
    assert [e["kind"] for e in log] == ["portfolio.created", "portfolio.removed"]


async def test_dispatches_and_portfolios_are_in_a_chain_that_audit_verify_checks(
    csms: Csms, client: Client, base_url: str
) -> None:
    operator = client("operator")
    assert (await operator.post("/api/portfolios", json=_portfolio("east"))).status_code == 201
    now = csms.clock.now()
    admin = client("admin")  # a dispatch: admin or a grid token
    event = await admin.post("/api/sites/street/events", json={
        "node": "transformer", "kind": "limit", "kw": 20.0,
        "start": (now + timedelta(minutes=5)).isoformat(),
        "end": (now + timedelta(hours=1)).isoformat(), "reference": "DR-2026-12-05"})
    assert event.status_code == 201, event.text
    cancelled = await admin.delete(f"/api/sites/street/events/{event.json()['id']}")
    assert cancelled.status_code == 200
    assert (await operator.delete("/api/portfolios/east")).status_code == 204
    log = (await operator.get("/api/audit")).json()
    assert [(e["seq"], e["kind"]) for e in log] == [
        (1, "portfolio.created"), (2, "dispatch.created"), (3, "dispatch.cancelled"),
        (4, "portfolio.removed")]
    assert log[1]["body"]["reference"] == "DR-2026-12-05" and log[1]["actor"] == "test-admin"
    async with await _aggregator(csms, base_url, "east") as vpp:  # entries about its own
        assert [e["seq"] for e in (await vpp.get("/api/audit")).json()] == [1, 4]

    config = csms.config
    intact = _cli("verify", config=config)
    assert intact.returncode == 0 and "4 entries, chain intact" in intact.stdout, intact
    head = _cli("head", config=config).stdout.strip()
    assert head.startswith("4:")

    pool = csms.store.pool
    await pool.execute("UPDATE audit_log SET body = jsonb_set(body, '{kw}', '5') WHERE seq = 2")
    changed = _cli("verify", config=config)
    assert changed.returncode == 1 and "entry 2: its content does not match" in changed.stdout
    await pool.execute("DELETE FROM audit_log WHERE seq = 2")
    removed = _cli("verify", config=config)
    assert "entry 3: expected entry 2 here" in removed.stdout
    await pool.execute("DELETE FROM audit_log WHERE seq >= 3")  # the tail: only the head
    assert _cli("verify", config=config).returncode == 0  # ... nothing links to it
    truncated = _cli("verify", "--head", head, config=config)
    assert truncated.returncode == 1 and "the noted head (entry 4)" in truncated.stdout


async def _meter(station: Any, start: Any, minutes: int, watts: float) -> None:
    """Power samples every 10 minutes from `start`, as a station sends them (one call)."""
    await station.call("MeterValues", {"evseId": 1, "meterValue": [
        {"timestamp": (start + timedelta(minutes=m)).isoformat(), "sampledValue": [
            {"value": watts, "measurand": "Power.Active.Import"}]}
        for m in range(0, minutes, 10)]})


async def test_an_ended_event_is_settled_against_similar_days_and_audited(
    csms: Csms, client: Client, make_station: Any
) -> None:
    station = await make_station("FA001")
    now = csms.clock.now().replace(second=0, microsecond=0)
    start = now - timedelta(hours=1)
    for back in (1, 2, 3):  # 7 kW on earlier days, before and during the event's hours
        await _meter(station, start - timedelta(days=back, hours=2), 180, 7000.0)
    await _meter(station, start - timedelta(hours=2), 120, 7000.0)  # the event day, before
    await _meter(station, start, 60, 3000.0)  # during the event: 4 kW less
    admin = client("admin")
    event = (await admin.post("/api/sites/street/events", json={
        "node": "feeder-a", "kind": "limit", "kw": 3.0, "start": start.isoformat(),
        "end": (now + timedelta(hours=1)).isoformat()})).json()
    url = f"/api/sites/street/events/{event['id']}/settlement"
    terms = {"committed_kw": 4.0, "price_per_kwh": 3.0, "baseline_days": 3, "similar": "any",
             "adjustment": "multiplicative"}
    assert (await admin.post(url, json=terms)).status_code == 409  # still running
    await admin.delete(f"/api/sites/street/events/{event['id']}")
    assert (await client("operator").post(url, json=terms)).status_code == 403
    for bad in ({**terms, "committed_kw": float("nan")}, {**terms, "baseline_days": 0},
                {**terms, "adjustment": "guess"}):
        assert (await admin.post(url, content=_json(bad), headers={
            "Content-Type": "application/json"})).status_code == 422
    settled = await admin.post(url, json=terms)
    assert settled.status_code == 200, settled.text
    s = settled.json()
    assert len(s["baseline_days"]) == 3 and s["adjustment"] == pytest.approx(1.0)
    assert [round(i["baseline_kw"], 1) for i in s["intervals"]] == [7.0] * 4
    assert [round(i["metered_kw"], 1) for i in s["intervals"]] == [3.0] * 4
    assert s["delivered_kwh"] == pytest.approx(4.0, abs=0.05)
    assert s["performance"] == pytest.approx(1.0, abs=0.02)
    assert s["payment"] == pytest.approx(12.0, abs=0.2) and s["penalty"] == 0
    log = (await admin.get("/api/audit")).json()
    assert log[-1]["seq"] == s["audit_seq"] and log[-1]["kind"] == "settlement.computed"
    assert log[-1]["body"]["payment"] == s["payment"]


def _json(body: dict[str, Any]) -> str:
    return json.dumps(body)  # NaN as JSON allows it, to be refused
