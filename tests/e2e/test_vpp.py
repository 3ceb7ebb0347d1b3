"""Issue 14 end to end, as an aggregator and a grid company would use it: two simulated
sites (copies of config/sites/test-small.toml, six 7 kW chargers each) under one portfolio,
cars plugged in on one accelerated clock shared by the CSMS and the stations. The
aggregator (a token scoped to the portfolio) is invited to reduce for an hour, reads the
proposed offer and accepts it; the sites' engines follow their shares as grid targets;
what the stations meter is compared with the baseline and the commitment; every car still
leaves with its energy; the grid company settles each site's events against its meter
history; `csms audit verify` (the CLI) finds the chain intact, and then the one row changed
in the database.

The settlement's baseline is the mean of similar days from stored meter data. The test
cannot run a whole earlier day in its time budget, so the day before is written as meter
values the stations send with yesterday's timestamps: the engine's own plan without the
event (the forecast's P50 baseline), i.e. a day like this one that had no event.
"""

from __future__ import annotations

import asyncio
import os
import subprocess
import sys
from dataclasses import replace
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import pytest

from csms.api.auth import new_token
from csms.app import Csms
from csms.clock import AcceleratedClock
from csms.config import ApiConfig, Config, SchedulerConfig, VppConfig
from csms.store.api_tokens import ApiTokenRepo
from simulators.ev import EV
from simulators.station import EvseSpec, Station, StationSpec

ROOT = Path(__file__).resolve().parents[2]
CST = timezone(timedelta(hours=8))
SPEED = 150.0
SITES = {"east": "ES", "west": "WS"}
DAY = datetime(2026, 11, 25, tzinfo=CST)  # a Wednesday: the day before is a weekday too
WINDOW = (DAY.replace(hour=19), DAY.replace(hour=20))
# (station suffix, arrival minute after 18:00, departure (h, m), kWh wanted): 57 kWh per
# site in about 4 h under ~20 kW of EV headroom, so the engine has little slack to give
CARS = [("001", 0, (22, 0), 10.0), ("002", 5, (22, 30), 12.0), ("003", 10, (21, 45), 8.0),
        ("004", 15, (22, 15), 10.0), ("005", 20, (22, 30), 9.0), ("006", 25, (22, 0), 8.0)]
REQUESTED_KW = 8.0  # about 40% of what the portfolio's forecast says it sheds for the hour
# Re-splitting is off here: with it on, both sites are judged short in the event's first
# minutes (an engine solve of ~1 s wall is minutes at this speed), vpp.resplit then
# drops the commitment (tests/vpp/test_resplit_commitment.py), and the cut-short grid
# events (under 15 minutes) can no longer be settled one by one.
NO_RESPLIT = 10_000
PROGRAMMES = {"evening": {"min_kw": 3.0, "min_duration_minutes": 60, "confidence": "p90",
                          "baseline": "similar_days", "baseline_days": 1,
                          "penalty_per_kwh": 3.0}}


def _site_file(folder: Path, site_id: str, prefix: str) -> str:
    text = (ROOT / "config/sites/test-small.toml").read_text()
    text = text.replace('id_prefix = "TS"', f'id_prefix = "{prefix}"')
    path = folder / f"{site_id}.toml"
    path.write_text(text)
    return str(path)


def _stamp(t: datetime) -> str:
    return t.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


async def _token(csms: Csms, name: str, role: str, **scope: Any) -> str:
    token, hashed = new_token()
    assert await ApiTokenRepo(csms.store.pool).add(name, role, hashed, csms.clock.now(),
                                                   **scope)
    return token


def _verify(config: Config) -> subprocess.CompletedProcess[str]:
    """`csms audit verify`, the installed command, against the test's database."""
    command = Path(sys.executable).with_name("csms")
    argv = [str(command)] if command.exists() else [sys.executable, "-c",
                                                    "import sys; from csms.cli import main; "
                                                    "sys.exit(main())"]
    return subprocess.run(
        [*argv, "audit", "verify", "--database-url", config.database.url,
         "--data-dir", config.database.data_dir], capture_output=True, text=True,
        timeout=60, env=os.environ | {"PYTHONPATH": str(ROOT)}, cwd=ROOT)


async def test_an_invitation_answered_dispatched_delivered_settled_and_audited(
    config: Config, tmp_path: Path,
) -> None:
    files = tuple(_site_file(tmp_path, s, p) for s, p in SITES.items())
    clock = AcceleratedClock(DAY.replace(hour=17, minute=50), speed=SPEED)
    config = replace(
        config, api=ApiConfig(enabled=True, host="127.0.0.1", port=0),
        scheduler=SchedulerConfig(enabled=True, sites=files, interval_s=300, debounce_s=10,
                                  tariffs_dir=str(ROOT / "config/tariffs")),
        vpp=VppConfig(programmes=PROGRAMMES, track_interval_s=60,
                      resplit_after_minutes=NO_RESPLIT))
    csms = await Csms.start(config, clock)
    url = f"ws://127.0.0.1:{csms.ocpp.port}/ocpp"
    assert csms.api is not None
    api = f"http://127.0.0.1:{csms.api.port}"
    stations: dict[str, Station] = {}
    cars: dict[str, tuple[EV, float]] = {}

    async def until(t: datetime) -> None:
        await clock.sleep((t - clock.now()).total_seconds())

    async def drive(sid: str, arrive: datetime, leave: datetime, kwh: float) -> None:
        await until(arrive)
        ev = EV(battery_kwh=60, soc=0.2, max_ac_current_a=32, ac_phases=1,
                energy_wanted_wh=kwh * 1000, departure=leave, iso15118=True)
        cars[sid] = (ev, kwh)
        await stations[sid].plug_in(1, ev)
        assert await stations[sid].present_token(1, f"TOK-{sid}") == "Accepted"
        await until(leave)
        await stations[sid].unplug(1)

    try:
        for prefix in SITES.values():
            for suffix, *_ in CARS:
                sid = prefix + suffix
                await csms.store.stations.add(sid, None, clock.now())
                await csms.store.tokens.add(f"TOK-{sid}", "ISO14443", clock.now())
                stations[sid] = Station(StationSpec(sid, evses=[EvseSpec(
                    1, kind="AC", phases=1, max_current_a=32)], meter_interval_s=60),
                    url=url, clock=clock)
        await asyncio.gather(*(st.start() for st in stations.values()))
        driving = [asyncio.ensure_future(drive(
            p + suffix, DAY.replace(hour=18, minute=m), DAY.replace(hour=h, minute=mm), kwh))
            for p in SITES.values() for suffix, m, (h, mm), kwh in CARS]

        operator = httpx.AsyncClient(base_url=api, timeout=60.0, headers={
            "Authorization": f"Bearer {await _token(csms, 'ops', 'operator')}"})
        vpp = httpx.AsyncClient(base_url=api, timeout=60.0, headers={
            "Authorization": "Bearer " + await _token(csms, "vpp", "aggregator",
                                                      portfolios=("evening",))})
        grid_co = httpx.AsyncClient(base_url=api, timeout=60.0, headers={
            "Authorization": "Bearer " + await _token(csms, "grid", "grid", nodes=tuple(
                f"{s}/transformer" for s in SITES))})
        async with operator, vpp, grid_co:
            made = await operator.post("/api/portfolios", json={
                "id": "evening", "name": "Two streets", "operator": "Suzhou Property Co.",
                "members": [{"site_id": s} for s in SITES]})
            assert made.status_code == 201, made.text

            # 18:30: every car is in and planned; the grid company invites a reduction
            await until(DAY.replace(hour=18, minute=30))
            start, end = WINDOW
            invited = await vpp.post("/api/portfolios/evening/invitations", json={
                "programme": "evening", "direction": "down", "start": start.isoformat(),
                "end": end.isoformat(), "requested_kw": REQUESTED_KW, "price_per_kwh": 1.5,
                "answer_by": start.isoformat(), "reference": "JS-DR-E2E"})
            assert invited.status_code == 201, invited.text
            inv = invited.json()
            offer = (await vpp.get(f"/api/portfolios/evening/invitations/{inv['id']}/offer")
                     ).json()
            assert offer["eligible"], offer
            accepted = await vpp.post(
                f"/api/portfolios/evening/invitations/{inv['id']}/accept", json={})
            assert accepted.status_code == 201, accepted.text
            assert clock.now() < start  # answered in time, on the accelerated clock
            d = accepted.json()
            committed = d["committed_kw"]
            assert committed == offer["quantity_kw"] == REQUESTED_KW
            assert {e["site_id"] for e in d["events"]} == set(SITES)
            assert all(e["kind"] == "target" and e["node"] == "transformer"
                       for e in d["events"])

            await until(end + timedelta(minutes=5))  # the window's last samples are in
            tracked = (await vpp.get(f"/api/portfolios/evening/dispatches/{d['id']}")).json()
            tracking = tracked["tracking"]
            assert tracking["minutes"] == 60
            assert tracking["committed_kwh"] == committed

            # the day before, as meter history: the engine's plan without an event,
            # spread over each site's stations (see the module's docstring)
            for site_id, prefix in SITES.items():
                for suffix, *_ in CARS:
                    await stations[prefix + suffix].call("MeterValues", {
                        "evseId": 1, "meterValue": [{
                            "timestamp": _stamp(datetime.fromisoformat(m["at"])
                                                - timedelta(days=1)),
                            "sampledValue": [{"value": round(1000 * m["members"][site_id][
                                "baseline_kw"] / len(CARS), 1),
                                "measurand": "Power.Active.Import"}]}
                            for m in tracked["minutes"]]})
            settled: dict[str, list[dict[str, Any]]] = {s: [] for s in SITES}
            for e in tracked["events"]:
                got = await grid_co.post(
                    f"/api/sites/{e['site_id']}/events/{e['event_id']}/settlement",
                    json={"committed_kw": tracked["first_shares"][e["member"]],
                          "price_per_kwh": 1.5, "penalty_per_kwh": 3.0,
                          "baseline_days": 1})
                assert got.status_code == 200, got.text
                settled[e["site_id"]].append(got.json())
            assert all(settled.values()), settled
            for figures in settled.values():
                for f in figures:
                    assert f["baseline_days"] == [(DAY - timedelta(days=1)).date().isoformat()]
                    assert f["delivered_kwh"] == pytest.approx(
                        sum(i["delivered_kw"] for i in f["intervals"]) / 4, abs=0.005)
                    for i in f["intervals"]:
                        assert i["delivered_kw"] == pytest.approx(
                            i["baseline_kw"] - i["metered_kw"], abs=0.002)
                    assert f["sessions"] and all(s["driver"] is None or
                                                 not s["driver"].startswith("TOK")
                                                 for s in f["sessions"])

            # the portfolio's own settlement, what the aggregator is paid by: the
            # programme's method (similar days) and the plan without the event; they agree
            # here, since the day before was metered as that plan
            url = f"/api/portfolios/evening/dispatches/{d['id']}/settlement"
            by_days, by_plan = await vpp.post(url, json={}), await vpp.post(
                url, json={"baseline": "plan"})
            assert by_days.status_code == by_plan.status_code == 200, by_days.text
            s_days, s_plan = by_days.json(), by_plan.json()
            assert (s_days["baseline"], s_plan["baseline"]) == ("similar_days", "plan")
            assert s_plan["delivered_kwh"] == pytest.approx(tracking["delivered_kwh"], abs=0.01)
            assert s_days["delivered_kwh"] == pytest.approx(s_plan["delivered_kwh"], abs=0.2)
            for s in (s_days, s_plan):
                delivered, owed = s["delivered_kwh"], s["committed_kwh"]
                assert owed == pytest.approx(committed) and s["price_per_kwh"] == 1.5
                assert s["performance"] == pytest.approx(delivered / owed, abs=1e-3)
                if s["performance"] >= 0.8:  # paid up to 120%, no penalty
                    assert s["payment"] == pytest.approx(1.5 * min(delivered, 1.2 * owed),
                                                         abs=0.01)
                    assert s["penalty"] == 0.0
                else:  # nothing paid, the shortfall penalised
                    assert s["payment"] == 0.0
                    assert s["penalty"] == pytest.approx(3.0 * (owed - max(delivered, 0.0)),
                                                         abs=0.01)
                assert s["net"] == pytest.approx(s["payment"] - s["penalty"], abs=0.01)
                assert sum(m["delivered_kwh"] for m in s["members"]) == pytest.approx(
                    delivered, abs=0.01)
                assert sum(m["share_kwh"] for m in s["members"]) == pytest.approx(
                    committed, abs=0.05)
                assert s["carbon"]["energy_kwh"] > 0
            assert [m["baseline_days"] for m in s_days["members"]] == [
                [(DAY - timedelta(days=1)).date().isoformat()]] * len(SITES)

            await asyncio.gather(*driving)
    finally:
        await asyncio.gather(*(st.stop() for st in stations.values()))
        await csms.stop()

    # every car left with the energy it asked for
    for sid, (ev, wanted) in cars.items():
        assert ev.energy_received_wh / 1000 >= 0.99 * wanted, (sid, ev.energy_received_wh)

    # the audit log: intact, with the acceptance, each dispatch command and settlement
    intact = _verify(config)
    assert intact.returncode == 0, intact.stdout + intact.stderr
    assert "chain intact" in intact.stdout
    db = await asyncpg.connect(config.database.url)
    try:
        kinds = [r["kind"] for r in await db.fetch("SELECT kind FROM audit_log ORDER BY seq")]
        assert kinds.count("offer.accepted") == 1
        assert kinds.count("dispatch.created") >= len(d["events"])
        assert kinds.count("settlement.computed") == sum(map(len, settled.values()))
        assert kinds.count("dispatch.settled") == 2
        # someone lowers the accepted commitment in the database
        seq = await db.fetchval("UPDATE audit_log SET body = jsonb_set(body, "
                                "'{committed_kw}', '1.0') WHERE kind = 'offer.accepted' "
                                "RETURNING seq")
    finally:
        await db.close()
    tampered = _verify(config)
    assert tampered.returncode == 1, tampered.stdout + tampered.stderr
    assert f"entry {seq}: its content does not match its hash (changed)" in tampered.stdout

    # last: the metered reduction against the baseline, over the hour, within a
    # tolerance of the commitment: over it by no more than the whole-amp setpoints can
    # round down under the targets (12 cars x 1 A x 230 V: 35% of 8 kW), and under it by
    # no more than 40%. On this accelerated clock an engine solve of a wall second is
    # 2.5 simulated minutes, and the machine is shared with the other tests: at 150x,
    # 101-116% in four runs (a benchmark beside it or alone) and 77% in CI beside the
    # other pytest worker (2026-12-06); at 600x it was 47-117%. The programme's own
    # 80% threshold is what bench/vpp.py measures, at 10x (94.7-99.4% at
    # 6,000 chargers). A dispatch that is not followed delivers nothing or less.
    rounding = len(CARS) * len(SITES) * 0.23 / REQUESTED_KW
    performance = tracking["delivered_kwh"] / tracking["committed_kwh"]
    assert 0.6 <= performance <= 1.0 + rounding, (
        f"delivered {tracking['delivered_kwh']} kWh of {tracking['committed_kwh']} "
        f"committed; re-splits: {tracked['resplits']}")
