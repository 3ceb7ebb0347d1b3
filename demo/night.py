"""One night of the residential community, end to end, in one process.

The CSMS (with its HTTP API and scheduler) starts on a fresh database in the embedded
PostgreSQL. The stations and tokens are provisioned the way an operator does it (a
generated password per station, as `csms stations add` makes). Then the simulated
stations connect over WebSockets and play the evening: cars arrive, present their
tokens, charge as the CSMS's profiles allow, and leave. Everything runs on one
accelerated clock.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys
import urllib.request
from dataclasses import dataclass, replace
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from csms import log as csms_log
from csms.api.auth import new_token
from csms.app import Csms
from csms.config import ApiConfig, BootConfig, Config, DatabaseConfig, SchedulerConfig, ServerConfig
from csms.passwords import generate_password
from csms.sites import load_site
from csms.store.api_tokens import ApiTokenRepo
from csms.store.database import embedded_url
from demo import report
from demo.baseline import uncontrolled_peak
from demo.clock import NightClock
from demo.drivers import DriverApp
from simulators.fleet import Fleet, Summary
from simulators.scenario import Scenario, draw_sessions, load_scenario

DATABASE = "csms_demo"  # recreated on every run, inside the demo's own data folder
ADMIN_TOKEN_NAME = "demo-admin"
APP_TOKEN_NAME = "demo-driver-app"  # operator role: may set a session's needs
# The clock stops a minute after the night, so the fleet's own end of night comes first.
CLOCK_MARGIN = timedelta(minutes=1)
# A simulated hour: the default 300 s would be ~100 heartbeats a second at 240x that show
# nothing; meter values still come every 5 simulated minutes.
HEARTBEAT_S = 3600
CATCH_UP_S = 15.0  # wall seconds the CSMS gets after the night to read the last messages


class DemoError(Exception):
    """A problem the user can fix (a port in use, files that do not match)."""


@dataclass(frozen=True)
class Options:
    scenario: Path
    site: Path
    speed: float = 240.0
    start: time = time(17)
    end: time = time(9)
    host: str = "127.0.0.1"
    port: int = 9000
    api_port: int = 8080
    data_dir: Path = Path("data/demo")
    exit_at_end: bool = False


def night_of(scenario: Scenario, start: time, end: time) -> tuple[datetime, datetime]:
    """The scenario's first evening from `start` to `end` (next day if not later)."""
    day = scenario.local(scenario.start).date()
    t0 = datetime.combine(day, start, tzinfo=scenario.utc_offset)
    t1 = datetime.combine(day, end, tzinfo=scenario.utc_offset)
    if t1 <= t0:
        t1 += timedelta(days=1)
    return t0, t1


def check_same_stations(scenario: Scenario, site_path: Path) -> str:
    """The site the CSMS plans must be the stations the simulator plays; returns its id."""
    site, _ = load_site(site_path)
    planned = {(e.station_id, e.ocpp_evse_id) for e in site.evses}
    played = {(spec.station_id, e.evse_id) for spec, _ in scenario.station_specs()
              for e in spec.evses}
    if planned != played:
        missing = sorted(played - planned)[:3]
        raise DemoError(f"{site_path} does not plan the scenario's EVSEs (e.g. {missing})")
    return site.id


async def fresh_database(data_dir: Path) -> tuple[str, object]:
    """The embedded server in `data_dir`, with an empty demo database; (url, handle)."""
    url, handle = await asyncio.to_thread(embedded_url, data_dir)
    admin = await asyncpg.connect(url)
    try:
        await admin.execute(f"DROP DATABASE IF EXISTS {DATABASE} WITH (FORCE)")
        await admin.execute(f"CREATE DATABASE {DATABASE}")
    finally:
        await admin.close()
    return urlunsplit(urlsplit(url)._replace(path="/" + DATABASE)), handle


def csms_config(options: Options, database_url: str) -> Config:
    return Config(
        server=ServerConfig(host=options.host, port=options.port),
        boot=BootConfig(heartbeat_interval_s=HEARTBEAT_S),
        database=DatabaseConfig(url=database_url),
        api=ApiConfig(host=options.host, port=options.api_port),
        scheduler=SchedulerConfig(enabled=True, sites=(str(options.site),)),
    )


@dataclass(frozen=True)
class Provisioned:
    passwords: dict[str, str]  # station id -> password, to configure the station with
    admin_token: str  # for the person watching
    app_token: str  # for the drivers' app


async def provision(csms: Csms, scenario: Scenario) -> Provisioned:
    """Stations with generated passwords, the drivers' tokens and API tokens, as
    `csms stations add`, `csms tokens add` and `csms api-tokens add` do."""
    now = csms.clock.now()
    passwords = {}
    for spec, _node in scenario.station_specs():
        password, hashed = generate_password()
        await csms.store.stations.add(spec.station_id, hashed, now)
        passwords[spec.station_id] = password
    for id_token in sorted({s.token for s in draw_sessions(scenario)}):
        await csms.store.tokens.add(id_token, "ISO14443", now)
    repo = ApiTokenRepo(csms.store.pool)
    tokens = {}
    for name, role in ((ADMIN_TOKEN_NAME, "admin"), (APP_TOKEN_NAME, "operator")):
        tokens[name], hashed = new_token()
        await repo.add(name, role, hashed, now, ())
    return Provisioned(passwords, tokens[ADMIN_TOKEN_NAME], tokens[APP_TOKEN_NAME])


def _answers(url: str) -> bool:
    """Does this URL serve a page (this version of the CSMS has a dashboard at /)?"""
    try:
        with urllib.request.urlopen(url, timeout=10) as page:  # follows a sign-in redirect
            return bool(page.status == 200)
    except OSError:  # HTTPError 404 included
        return False


def _shown_host(host: str) -> str:
    return "localhost" if host in ("", "0.0.0.0", "::") else host


async def _hourly(fleet: Fleet, clock: NightClock, out: TextIO) -> None:
    scenario = fleet.scenario
    roots = [n for n in scenario.nodes if n.parent is None]
    while True:
        now = scenario.local(clock.now())
        ev_kw = sum(st.power_w(e) for st in fleet.stations.values() for e in st.evses) / 1e3
        charged = sum(st.energy_wh(e) for st in fleet.stations.values() for e in st.evses) / 1e3
        house = sum(n.household_at(now) for n in roots)
        limit = sum(n.limit_kw or n.rating_kva or 0.0 for n in roots)
        print(report.hourly(now, ev_kw, house, limit, len(fleet.active), charged), file=out,
              flush=True)
        after = now.replace(minute=0, second=0, microsecond=0) + timedelta(hours=1)
        await clock.sleep((after - now).total_seconds())


def _log_to(file: TextIO) -> None:
    """The CSMS's and the simulators' log lines go to `file`, keeping the terminal for the
    story. The file stays open until the process ends: loggers keep it (a GC pause can
    still be logged on the way out)."""
    csms_log.configure("info", file=file)
    logging.basicConfig(handlers=[logging.StreamHandler(file)], level=logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s %(message)s", force=True)


async def _catch_up(csms: Csms) -> int:
    """Wait (wall time) until the CSMS has every session the stations ended; returns how
    many it still has open. Each station sends one message at a time, so a CSMS that
    cannot keep up with the speed-up falls behind the stations it serves."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + CATCH_UP_S
    while open_ := len(await csms.store.transactions.list(active=True, limit=10_000)):
        if loop.time() > deadline:
            return open_
        await asyncio.sleep(0.5)
    return 0


async def _first(job: asyncio.Future, stopped: asyncio.Future) -> bool:
    """Wait for `job` unless stopped first; True if it finished."""
    await asyncio.wait({job, stopped}, return_when=asyncio.FIRST_COMPLETED)
    return job.done()


async def run(options: Options, out: TextIO = sys.stdout) -> int:
    scenario = load_scenario(options.scenario)
    site_id = check_same_stations(scenario, options.site)
    start, end = night_of(scenario, options.start, options.end)
    scenario = replace(scenario, start=start, end=end, trace_interval_s=60.0)
    options.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = options.data_dir / "demo.log"
    _log_to(log_path.open("w"))
    print(f"Starting the embedded PostgreSQL in {options.data_dir / 'postgres'} ...",
          file=out, flush=True)
    database_url, _pg = await fresh_database(options.data_dir / "postgres")
    clock = NightClock(start, end + CLOCK_MARGIN, options.speed)
    try:
        csms = await Csms.start(csms_config(options, database_url), clock)
    except OSError as exc:
        raise DemoError(f"cannot listen ({exc}); is `csms serve` running? "
                        "Choose other ports with --port and --api-port") from exc
    try:
        return await _night(options, scenario, site_id, csms, clock, log_path, out)
    finally:
        await csms.stop()


async def _night(options: Options, scenario: Scenario, site_id: str, csms: Csms,
                 clock: NightClock, log_path: Path, out: TextIO) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    provisioned = await provision(csms, scenario)
    host = _shown_host(options.host)
    assert csms.api is not None
    base = f"http://{host}:{csms.api.port}/"
    connect_host = "127.0.0.1" if host == "localhost" else host
    local_api = f"http://{connect_host}:{csms.api.port}/"
    has_page = await asyncio.to_thread(_answers, local_api)
    print(report.welcome(report.Welcome(
        scenario.name, scenario.description or scenario.name,
        scenario.local(scenario.start), scenario.local(scenario.end), options.speed,
        api=base, dashboard=base if has_page else None, docs=base + "docs",
        token=provisioned.admin_token, log=str(log_path),
        ocpp=f"ws://{host}:{csms.ocpp.port}/ocpp/<stationId>")), file=out, flush=True)
    fleet = Fleet(scenario, f"ws://{connect_host}:{csms.ocpp.port}/ocpp", clock,
                  passwords=provisioned.passwords)
    app = DriverApp(local_api, provisioned.app_token, fleet, clock)
    stopped = asyncio.ensure_future(stop.wait())
    connecting = asyncio.ensure_future(fleet.connect())
    playing: asyncio.Future[Summary] | None = None
    helpers: list[asyncio.Future[None]] = []
    try:
        if await _first(connecting, stopped):
            connecting.result()
            connected = fleet.summary.stations - fleet.summary.stations_failed
            print(f"  {connected} stations connected; the evening begins.", file=out, flush=True)
            clock.begin()
            began = loop.time()
            playing = asyncio.ensure_future(fleet.run(disconnect=False))
            helpers += [asyncio.ensure_future(_hourly(fleet, clock, out)),
                        asyncio.ensure_future(app.run())]
            await _first(playing, stopped)
        for task in helpers:
            task.cancel()
        if playing is None or not playing.done():
            print("Stopped before the end of the night.", file=out, flush=True)
            return 0
        behind = await _catch_up(csms)
        totals = await csms.store.plans.totals(site_id)
        offset = scenario.utc_offset.utcoffset(None)
        wall = timedelta(seconds=loop.time() - began)
        avoided = uncontrolled_peak(scenario, fleet.sessions)
        print("\n" + report.summary(playing.result(), totals, offset, wall, avoided), file=out,
              flush=True)
        if behind:
            print(f"  note: {behind} sessions the stations had ended were still open in the CSMS "
                  f"{CATCH_UP_S:g} s later: this machine cannot keep up at {options.speed:g}x "
                  "(try a lower --speed)", file=out, flush=True)
        if not options.exit_at_end:
            print(f"\nThe clock stopped at {scenario.local(scenario.end):%H:%M}, so the night "
                  f"stays on view at {base}. Ctrl-C to stop.", file=out, flush=True)
            await stop.wait()
        return 0
    finally:
        tasks = [t for t in (connecting, playing, stopped, *helpers) if t is not None]
        for task in tasks:
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await asyncio.gather(*tasks, return_exceptions=True)
        await fleet.stop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
