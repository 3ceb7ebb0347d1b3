"""VPP at portfolio scale (issue 14): a portfolio of simulated residential sites answers a
2-hour reduction event, end to end over OCPP and the HTTP API.

    .venv/bin/python bench/vpp.py --sites 4 --per-site 120 --speed 120
    .venv/bin/python bench/vpp.py --scenario workplace --sites 50 --per-site 120 \
        --speed 20 --station-processes 1 --request-kw 1000 --json out.json

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

`--scenario workplace` is the daytime counterpart that has a megawatt to offer: each site
is a 1,000 kVA office transformer (its own load peaking at 350 kW) with `--per-site`
chargers and no time-of-use tariff, so the sites' plans charge through the morning; cars
arrive 07:30-09:30, want 8-16 kWh and leave 12:30-13:30; the event is 10:00-12:00, asked
for at 09:40. `--station-processes N` plays the stations and cars in N other processes on
the same simulated clock (a wall-clock anchor), so the CSMS's process has a core to
itself; the cars' energy comes back when they have left.

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
import multiprocessing
import os
import queue
import random
import sys
import tempfile
import time
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402

from csms.api.auth import new_token  # noqa: E402
from csms.app import Csms  # noqa: E402
from csms.config import (  # noqa: E402
    ApiConfig,
    SchedulerConfig,
    ServerConfig,
    VppConfig,
    load,
)
from csms.store.api_tokens import ApiTokenRepo  # noqa: E402
from simulators.clock import AcceleratedClock  # noqa: E402
from simulators.ev import EV  # noqa: E402
from simulators.station import EvseSpec, Station, StationSpec  # noqa: E402

CST = timezone(timedelta(hours=8))
DAY = datetime(2026, 11, 25, tzinfo=CST)
WORKPLACE = """# A workplace (bench/vpp.py --scenario workplace): office load under a 1,000 kVA
# transformer, no time-of-use tariff.
[site]
utc_offset = "+08:00"
default_departure = "17:30"
default_energy_kwh = 12.0

[[nodes]]
id = "transformer"
kind = "transformer"
rating_kva = 1000
loading_factor = 0.9
power_factor = 1.0
voltage_ln_v = 230
load_kw_daily = [
  60, 60, 60, 60, 60, 60, 70, 120, 250, 320, 340, 350,
  330, 340, 350, 330, 300, 220, 150, 100, 80, 70, 60, 60,
]

[[evse_groups]]
count = 120
id_prefix = "RES"
node = "transformer"
wiring = "wye"
phases = "rotate"
voltage_v = 230
min_current_a = 6
max_current_a = 32
rate_unit = "A"
ocpp_evse_id = 1
"""


@dataclass(frozen=True)
class Scenario:
    clock_start: datetime
    arrive: datetime  # cars arrive over the next `arrive_minutes`
    arrive_minutes: float
    leave: datetime  # and leave over the `leave_minutes` after this
    leave_minutes: float
    kwh: tuple[float, float]
    ask: datetime  # when the aggregator reads the forecast and is invited
    start: datetime  # the event's window
    end: datetime
    site_text: str


SCENARIOS = {
    "residential": Scenario(
        DAY.replace(hour=16, minute=55), DAY.replace(hour=17), 90,
        DAY.replace(hour=22, minute=30), 60, (6.0, 10.0), DAY.replace(hour=18, minute=40),
        DAY.replace(hour=19), DAY.replace(hour=21),
        (ROOT / "config/sites/residential.toml").read_text()),
    "workplace": Scenario(
        DAY.replace(hour=7, minute=20), DAY.replace(hour=7, minute=30), 120,
        DAY.replace(hour=12, minute=30), 60, (8.0, 16.0), DAY.replace(hour=9, minute=40),
        DAY.replace(hour=10), DAY.replace(hour=12), WORKPLACE),
}


@dataclass(frozen=True)
class Car:
    station_id: str
    arrive: datetime
    leave: datetime
    kwh: float


def site_file(folder: Path, scenario: Scenario, index: int, per_site: int
              ) -> tuple[str, str, str]:
    site_id, prefix = f"vpp-{index:02d}", f"V{index:02d}"
    text = scenario.site_text.replace("count = 120", f"count = {per_site}")
    text = text.replace('id_prefix = "RES"', f'id_prefix = "{prefix}"')
    path = folder / f"{site_id}.toml"
    path.write_text(text)
    return site_id, prefix, str(path)


async def play(cars: list[Car], url: str, clock: Any, meter_interval_s: float,
               ready: Any = None) -> dict[str, tuple[float, float]]:
    """Bring up one station per car, plug each car in when it arrives, unplug it when it
    leaves; each car's (received, wanted) kWh. `ready()` is called once all are up."""
    stations = {c.station_id: Station(StationSpec(c.station_id, evses=[EvseSpec(
        1, kind="AC", phases=1, max_current_a=32)], meter_interval_s=meter_interval_s),
        url=url, clock=clock) for c in cars}
    evs: dict[str, EV] = {}

    async def until(t: datetime) -> None:
        await clock.sleep((t - clock.now()).total_seconds())

    failed: list[str] = []

    async def drive(car: Car) -> None:
        await until(car.arrive)
        ev = EV(battery_kwh=60, soc=0.2, max_ac_current_a=32, ac_phases=1,
                energy_wanted_wh=car.kwh * 1000, departure=car.leave, iso15118=True)
        evs[car.station_id] = ev
        station = stations[car.station_id]
        try:
            await station.plug_in(1, ev)
            await station.present_token(1, f"TOK-{car.station_id}")
            await until(car.leave)
            await station.unplug(1)
        except Exception as exc:  # a CSMS too slow to answer: counted, the others go on
            failed.append(f"{car.station_id}: {exc!r}")

    try:
        started = [st.start() for st in stations.values()]
        for i in range(0, len(started), 200):
            await asyncio.gather(*started[i:i + 200])
        if ready is not None:
            ready()
        await asyncio.gather(*(drive(c) for c in cars))
    finally:
        await asyncio.gather(*(st.stop() for st in stations.values()),
                             return_exceptions=True)
    if failed:
        print(f"{len(failed)} cars failed, e.g. {failed[:3]}", file=sys.stderr)
    return {c.station_id: (evs[c.station_id].energy_received_wh / 1000 if c.station_id in evs
                           else 0.0, c.kwh) for c in cars}


def _stations_child(cars: list[Car], url: str, start: datetime, speed: float, anchor: float,
                    meter_interval_s: float, out: Any, index: int) -> None:
    """One station process: its share of the cars on the parent's simulated clock."""
    clock = AcceleratedClock(start, speed, anchor=anchor)
    result = asyncio.run(play(cars, url, clock, meter_interval_s,
                              ready=lambda: out.put(("ready", index, None))))
    out.put(("done", index, result))


async def main_async(args: argparse.Namespace, database_url: str, folder: Path
                     ) -> dict[str, Any]:
    rng = random.Random(args.seed)
    sc = SCENARIOS[args.scenario]
    sites = [site_file(folder, sc, i + 1, args.per_site) for i in range(args.sites)]
    anchor = time.time()
    clock = AcceleratedClock(sc.clock_start, speed=args.speed, anchor=anchor)
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
    cars: list[Car] = []
    for _, prefix, _ in sites:
        for k in range(1, args.per_site + 1):
            cars.append(Car(f"{prefix}{k:03d}", sc.arrive + timedelta(
                minutes=rng.uniform(0, sc.arrive_minutes)), sc.leave + timedelta(
                minutes=rng.uniform(0, sc.leave_minutes)), rng.uniform(*sc.kwh)))

    async def until(t: datetime) -> None:
        await clock.sleep((t - clock.now()).total_seconds())

    out: dict[str, Any] = {"scenario": args.scenario, "sites": args.sites,
                           "per_site": args.per_site, "chargers": args.sites * args.per_site,
                           "speed": args.speed, "station_processes": args.station_processes}
    procs: list[Any] = []
    received: dict[str, tuple[float, float]] = {}
    playing: asyncio.Future[Any] | None = None
    try:
        for car in cars:
            await csms.store.stations.add(car.station_id, None, clock.now())
            await csms.store.tokens.add(f"TOK-{car.station_id}", "ISO14443", clock.now())
        if args.station_processes:
            ctx = multiprocessing.get_context("spawn")
            results: Any = ctx.Queue()
            n = args.station_processes
            procs = [ctx.Process(target=_stations_child, args=(
                cars[i::n], url, sc.clock_start, args.speed, anchor, args.meter_interval_s,
                results, i)) for i in range(n)]
            for proc in procs:
                proc.start()

            async def collect() -> None:
                waiting = len(procs)
                while waiting:
                    try:
                        kind, _, got = await asyncio.to_thread(results.get, True, 5)
                    except queue.Empty:
                        if not all(p.is_alive() for p in procs):
                            raise RuntimeError("a station process failed") from None
                        continue
                    if kind == "ready":
                        out.setdefault("bring_up_wall_s", []).append(
                            round(time.monotonic() - t0, 1))
                    else:
                        received.update(got)
                        waiting -= 1
            playing = asyncio.ensure_future(collect())
        else:
            def up() -> None:
                out["bring_up_wall_s"] = round(time.monotonic() - t0, 1)
                out["clock_at_bring_up"] = clock.now().astimezone(CST).strftime("%H:%M")

            async def in_process() -> None:
                received.update(await play(cars, url, clock, args.meter_interval_s, up))
            playing = asyncio.ensure_future(in_process())
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
            await until(sc.ask)
            w = time.monotonic()
            flex = await vpp.get("/api/portfolios/fleet/flexibility?hold_minutes=120")
            assert flex.status_code == 200, flex.text
            out["forecast_wall_s"] = round(time.monotonic() - w, 2)
            total = flex.json()["total"]
            at = next(i for i in total["intervals"]
                      if datetime.fromisoformat(i["start"]) <= sc.start
                      < datetime.fromisoformat(i["end"]))
            out["forecast_shed_at_start_kw"] = at["shed_kw"]
            out["forecast_baseline_at_start_kw"] = at["baseline_kw"]
            request = args.request_kw or round(args.request_share * at["shed_kw"]["p90"], 1)
            out["requested_kw"] = request
            w = time.monotonic()
            invited = await vpp.post("/api/portfolios/fleet/invitations", json={
                "programme": "interruptible", "direction": "down",
                "start": sc.start.isoformat(), "end": sc.end.isoformat(),
                "requested_kw": request, "price_per_kwh": 1.5,
                "answer_by": sc.start.isoformat(), "reference": "BENCH"})
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

            await until(sc.end + timedelta(minutes=3))
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
            probe = sc.start + timedelta(minutes=30)
            out["half_an_hour_in"] = {}
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
                out["half_an_hour_in"][site_id] = {
                    "planned_ev_kw": plan and float(plan["kw"]), "target_kw": target,
                    "metered_kw": metered}
            await playing
    finally:
        if playing is not None and not playing.done():
            playing.cancel()
        for proc in procs:
            proc.join(timeout=30)
            if proc.is_alive():
                proc.kill()
        await csms.stop()
    arrived = [(got, kwh) for got, kwh in received.values() if got > 0 or kwh == 0]
    wanted = sum(kwh for _, kwh in received.values())
    out["drivers_energy_pct"] = round(
        100 * sum(min(got, kwh) for got, kwh in received.values()) / wanted, 2) if wanted else 0
    out["cars_within_1pct"] = sum(got >= 0.99 * kwh for got, kwh in received.values())
    out["cars"] = len(received)
    out["cars_charged"] = len(arrived)
    out["total_wall_s"] = round(time.monotonic() - t0, 1)
    out["load_average"] = os.getloadavg()
    return out


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--scenario", choices=sorted(SCENARIOS), default="residential")
    p.add_argument("--station-processes", type=int, default=0,
                   help="play the stations in this many other processes (0: in this one)")
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
