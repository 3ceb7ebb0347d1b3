"""VPP at portfolio scale (issue 14): a portfolio of simulated residential sites answers a
2-hour reduction event, end to end over OCPP and the HTTP API.

    .venv/bin/python bench/vpp.py --sites 4 --per-site 120 --speed 120
    .venv/bin/python bench/vpp.py --sites 50 --per-site 120 --speed 60 --json out.json

One process holds the CSMS (scheduler, tracker, API, on a fresh database of the embedded
PostgreSQL) and every simulated station, on one accelerated clock. Each site is
config/sites/residential.toml (a 630 kVA transformer with its household load) with its own
station prefix and `--per-site` chargers (7.4 kW, single phase). Cars arrive 17:00-18:30
local time, want 6-10 kWh and leave 22:30-23:30; the transformer's evening headroom (~190 kW
under the household peak) makes part of their energy be drawn before the 21:00 valley:
that is what can be shed. At 18:40 an aggregator token asks the
portfolio's forecast, sends an invitation for 19:00-21:00 (requested: --request-kw, or
--request-share of the forecast's P90 hold when the fleet is too small for it), accepts
the proposed offer, and the sites follow it.

Measured:
- dispatch: wall seconds from the accept's answer until every site has stored a plan made
  after the acceptance (a plan is stored once its profiles are answered), i.e. every
  profile the dispatch causes has been sent; and the accept's own wall time;
- tracking: the dispatch's minute-by-minute tracking (csms/dispatch.py): mean absolute
  error and the worst 5-minute mean shortfall, kW;
- committed energy delivered: metered reduction against the baseline over the window /
  committed kWh;
- drivers' energy: sum of min(received, wanted) / sum of wanted, and cars within 1%;
- forecast vs delivered flexibility: the forecast's holdable shed for the window (P90,
  P50) against the mean delivered kW.

Note the accelerated clock: a compute pause of one wall second is `--speed` seconds of
simulated time, so the engine's and the tracker's lags weigh `--speed` times more than on a
real clock; the re-split grace and window are scaled to it (--grace-minutes,
--resplit-after).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import tempfile
import time
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from csms.api.auth import new_token  # noqa: E402
from csms.app import Csms  # noqa: E402
from csms.clock import AcceleratedClock  # noqa: E402
from csms.config import (  # noqa: E402
    ApiConfig,
    SchedulerConfig,
    ServerConfig,
    VppConfig,
    load,
)
from csms.store.api_tokens import ApiTokenRepo  # noqa: E402
from simulators.ev import EV  # noqa: E402
from simulators.station import EvseSpec, Station, StationSpec  # noqa: E402

CST = timezone(timedelta(hours=8))
DAY = datetime(2026, 11, 25, tzinfo=CST)
START, END = DAY.replace(hour=19), DAY.replace(hour=21)


def site_file(folder: Path, index: int, per_site: int) -> tuple[str, str, str]:
    site_id, prefix = f"vpp-{index:02d}", f"V{index:02d}"
    text = (ROOT / "config/sites/residential.toml").read_text()
    text = text.replace("count = 120", f"count = {per_site}")
    text = text.replace('id_prefix = "RES"', f'id_prefix = "{prefix}"')
    path = folder / f"{site_id}.toml"
    path.write_text(text)
    return site_id, prefix, str(path)


async def main_async(args: argparse.Namespace, database_url: str, folder: Path
                     ) -> dict[str, Any]:
    rng = random.Random(args.seed)
    sites = [site_file(folder, i + 1, args.per_site) for i in range(args.sites)]
    clock = AcceleratedClock(DAY.replace(hour=16, minute=55), speed=args.speed)
    base = load(None, database_url=database_url, data_dir=str(folder / "pg-unused"))
    config = replace(
        base, server=ServerConfig(host="127.0.0.1", port=0, call_timeout_s=30.0),
        api=ApiConfig(enabled=True, host="127.0.0.1", port=0),
        scheduler=SchedulerConfig(enabled=True, sites=tuple(p for _, _, p in sites),
                                  tariffs_dir=str(ROOT / "config/tariffs"),
                                  interval_s=900, debounce_s=30),
        vpp=VppConfig(programmes={"interruptible": {
            "min_kw": args.min_kw, "min_duration_minutes": 120, "confidence": "p90"}},
            track_interval_s=60, grace_minutes=args.grace_minutes,
            resplit_after_minutes=args.resplit_after))
    t0 = time.monotonic()
    csms = await Csms.start(config, clock)
    assert csms.api is not None
    url = f"ws://127.0.0.1:{csms.ocpp.port}/ocpp"
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
        await stations[sid].present_token(1, f"TOK-{sid}")
        await until(leave)
        await stations[sid].unplug(1)

    out: dict[str, Any] = {"sites": args.sites, "per_site": args.per_site,
                           "chargers": args.sites * args.per_site, "speed": args.speed}
    try:
        for _, prefix, _ in sites:
            for k in range(1, args.per_site + 1):
                sid = f"{prefix}{k:03d}"
                await csms.store.stations.add(sid, None, clock.now())
                await csms.store.tokens.add(f"TOK-{sid}", "ISO14443", clock.now())
                stations[sid] = Station(StationSpec(sid, evses=[EvseSpec(
                    1, kind="AC", phases=1, max_current_a=32)],
                    meter_interval_s=args.meter_interval_s), url=url, clock=clock)
        started = [st.start() for st in stations.values()]
        for i in range(0, len(started), 200):
            await asyncio.gather(*started[i:i + 200])
        out["bring_up_wall_s"] = round(time.monotonic() - t0, 1)
        out["clock_at_bring_up"] = clock.now().astimezone(CST).strftime("%H:%M")
        driving = []
        for sid in stations:
            arrive = DAY.replace(hour=17) + timedelta(minutes=rng.uniform(0, 90))
            leave = DAY.replace(hour=22, minute=30) + timedelta(minutes=rng.uniform(0, 60))
            driving.append(asyncio.ensure_future(drive(sid, arrive, leave,
                                                       rng.uniform(6.0, 10.0))))
        token, hashed = new_token()
        await ApiTokenRepo(csms.store.pool).add("vpp", "aggregator", hashed, clock.now(),
                                                portfolios=("fleet",))
        admin_token, admin_hash = new_token()
        await ApiTokenRepo(csms.store.pool).add("ops", "operator", admin_hash, clock.now())
        async with httpx.AsyncClient(base_url=api, timeout=600.0, headers={
                "Authorization": f"Bearer {token}"}) as vpp, httpx.AsyncClient(
                base_url=api, timeout=600.0, headers={
                    "Authorization": f"Bearer {admin_token}"}) as ops:
            made = await ops.post("/api/portfolios", json={
                "id": "fleet", "name": "Bench fleet", "operator": "Bench",
                "members": [{"site_id": s} for s, _, _ in sites]})
            assert made.status_code == 201, made.text
            await until(DAY.replace(hour=18, minute=40))
            w = time.monotonic()
            flex = await vpp.get("/api/portfolios/fleet/flexibility?hold_minutes=120")
            assert flex.status_code == 200, flex.text
            out["forecast_wall_s"] = round(time.monotonic() - w, 2)
            total = flex.json()["total"]
            at = next(i for i in total["intervals"]
                      if datetime.fromisoformat(i["start"]) <= START
                      < datetime.fromisoformat(i["end"]))
            out["forecast_shed_at_start_kw"] = at["shed_kw"]
            out["forecast_baseline_at_start_kw"] = at["baseline_kw"]
            request = args.request_kw or round(args.request_share * at["shed_kw"]["p90"], 1)
            out["requested_kw"] = request
            w = time.monotonic()
            invited = await vpp.post("/api/portfolios/fleet/invitations", json={
                "programme": "interruptible", "direction": "down",
                "start": START.isoformat(), "end": END.isoformat(), "requested_kw": request,
                "price_per_kwh": 1.5, "answer_by": START.isoformat(), "reference": "BENCH"})
            assert invited.status_code == 201, invited.text
            out["invitation_wall_s"] = round(time.monotonic() - w, 2)
            inv = invited.json()
            offer = inv["offer"]
            out["offer"] = {k: offer[k] for k in ("quantity_kw", "eligible", "reasons",
                                                  "holdable_kw")}
            out["clock_at_offer"] = clock.now().astimezone(CST).strftime("%H:%M:%S")
            if not offer["eligible"]:
                return out
            accepted_sim = clock.now()
            w = time.monotonic()
            accepted = await vpp.post(
                f"/api/portfolios/fleet/invitations/{inv['id']}/accept", json={})
            assert accepted.status_code == 201, accepted.text
            answered = time.monotonic()
            out["accept_wall_s"] = round(answered - w, 2)
            d = accepted.json()
            out["committed_kw"] = d["committed_kw"]
            out["grid_events"] = len(d["events"])
            site_ids = [s for s, _, _ in sites]
            while True:
                rows = await csms.store.pool.fetch(
                    "SELECT site_id, count(*) AS n, sum(profiles_sent) AS sent FROM plans "
                    "WHERE planned_at >= $1 AND site_id = ANY($2) GROUP BY site_id",
                    accepted_sim, site_ids)
                if len(rows) == len(site_ids):
                    break
                if time.monotonic() - answered > 600:
                    break
                await asyncio.sleep(0.1)
            out["dispatch_to_all_profiles_wall_s"] = round(time.monotonic() - w, 2)
            out["sites_replanned"] = len(rows)
            out["profiles_sent_in_first_replans"] = sum(int(r["sent"] or 0) for r in rows)

            await until(END + timedelta(minutes=3))
            tracked = (await vpp.get(f"/api/portfolios/fleet/dispatches/{d['id']}")).json()
            t = tracked["tracking"]
            minutes = tracked["minutes"]
            out["tracking"] = t
            out["resplits"] = len(tracked["resplits"])
            out["delivered_mean_kw"] = round(sum(m["delivered_kw"] for m in minutes)
                                             / max(1, len(minutes)), 2)
            out["committed_energy_delivered_pct"] = round(
                100 * t["delivered_kwh"] / t["committed_kwh"], 1) if t["committed_kwh"] else 0
            quarter = [minutes[i:i + 15] for i in range(0, len(minutes), 15)]
            out["delivered_kw_by_quarter"] = [round(sum(m["delivered_kw"] for m in q)
                                                    / len(q), 1) for q in quarter if q]
            out["baseline_kw_by_quarter"] = [round(sum(m["baseline_kw"] for m in q)
                                                   / len(q), 1) for q in quarter if q]
            probe = DAY.replace(hour=19, minute=30)
            out["at_19_30"] = {}
            for site_id in site_ids:
                plan = await csms.store.pool.fetchrow(
                    "SELECT planned_at, inputs->'planned_ev_kw'->0 AS kw FROM plans "
                    "WHERE site_id = $1 AND planned_at <= $2 ORDER BY planned_at DESC "
                    "LIMIT 1", site_id, probe)
                target = await csms.store.pool.fetchval(
                    "SELECT kw FROM grid_events WHERE site_id = $1 AND starts_at <= $2 "
                    "AND ends_at > $2 AND (cancelled_at IS NULL OR cancelled_at > $2) "
                    "ORDER BY id DESC LIMIT 1", site_id, probe)
                metered = next((m["members"][site_id]["metered_kw"] for m in minutes
                                if datetime.fromisoformat(m["at"]) == probe), None)
                out["at_19_30"][site_id] = {
                    "planned_ev_kw": plan and float(plan["kw"]), "target_kw": target,
                    "metered_kw": metered}
            await asyncio.gather(*driving)
    finally:
        await asyncio.gather(*(st.stop() for st in stations.values()),
                             return_exceptions=True)
        await csms.stop()
    wanted = sum(k for _, k in cars.values())
    got = sum(min(ev.energy_received_wh / 1000, k) for ev, k in cars.values())
    out["drivers_energy_pct"] = round(100 * got / wanted, 2) if wanted else 0
    out["cars_within_1pct"] = sum(ev.energy_received_wh / 1000 >= 0.99 * k
                                  for ev, k in cars.values())
    out["cars"] = len(cars)
    out["total_wall_s"] = round(time.monotonic() - t0, 1)
    out["load_average"] = os.getloadavg()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--sites", type=int, default=4)
    p.add_argument("--per-site", type=int, default=120)
    p.add_argument("--speed", type=float, default=120.0)
    p.add_argument("--meter-interval-s", type=float, default=300.0,
                   help="simulated seconds between a station's meter values")
    p.add_argument("--request-kw", type=float, default=0.0,
                   help="the invitation's request; 0: --request-share of the P90 shed")
    p.add_argument("--request-share", type=float, default=0.6)
    p.add_argument("--min-kw", type=float, default=300.0, help="the programme's minimum")
    p.add_argument("--grace-minutes", type=int, default=10)
    p.add_argument("--resplit-after", type=int, default=5)
    p.add_argument("--seed", type=int, default=14)
    p.add_argument("--json", help="write the figures here")
    args = p.parse_args()
    url = os.environ.get("DATABASE_URL")
    with tempfile.TemporaryDirectory(prefix="bench-vpp-") as tmp:
        folder = Path(tmp)
        if url:
            out = asyncio.run(main_async(args, url, folder))
        else:  # the embedded PostgreSQL the tests use
            import warnings

            import pgserver

            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                server = pgserver.get_server(folder / "pg", cleanup_mode="delete")
            try:
                out = asyncio.run(main_async(args, server.get_uri(), folder))
            finally:
                server.cleanup()
    text = json.dumps(out, indent=2, default=str)
    print(text)
    if args.json:
        Path(args.json).write_text(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
