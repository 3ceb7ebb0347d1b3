"""Site leases: two CSMS processes (here two apps in one test process) on one database,
both with the scheduler on. Only the one holding a site's lease plans it and sends
profiles; when it stops, or its lease connection is killed, the other takes over."""

from __future__ import annotations

import asyncio
import re
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import asyncpg
import structlog

from csms.app import Csms
from csms.config import Config, SchedulerConfig
from csms.scheduling.leases import holders
from simulators.station import EvseSpec, Station, StationSpec
from tests.support import eventually

SITE_FILE = Path(__file__).resolve().parents[2] / "config/sites/test-small.toml"
SITE = "test-small"
RETRY_S = 0.5
TAKEOVER_S = 15.0  # the target; RETRY_S makes it ~1 s here, the rest is slack for load


def node_config(config: Config, node: str) -> Config:
    return replace(config, scheduler=SchedulerConfig(
        sites=(str(SITE_FILE),), interval_s=3600, debounce_s=0.2, lease_retry_s=RETRY_S,
        node_name=node))


@asynccontextmanager
async def two_nodes(config: Config) -> AsyncIterator[tuple[Csms, Csms, dict[str, Station]]]:
    """node-a (started first, so it owns the site) with TS001, node-b with TS002."""
    a = await Csms.start(node_config(config, "node-a"))
    b = await Csms.start(node_config(config, "node-b"))
    stations: dict[str, Station] = {}
    try:
        for sid, app in (("TS001", a), ("TS002", b)):
            await a.store.stations.add(sid, None, a.clock.now())
            spec = StationSpec(sid, evses=[EvseSpec(1, kind="AC", phases=1, max_current_a=32)])
            stations[sid] = Station(spec, url=f"ws://127.0.0.1:{app.ocpp.port}/ocpp")
        await asyncio.gather(*(s.start() for s in stations.values()))
        yield a, b, stations
    finally:
        await asyncio.gather(*(s.stop() for s in stations.values()))
        await b.stop()
        await a.stop()


def profiles(station: Station) -> int:
    return list(station.received_calls).count("SetChargingProfile")


def planned_by(logs: list[dict[str, Any]]) -> list[str]:
    return [e["node"] for e in logs if e["event"] == "scheduler.planned"]


def owners(*apps: Csms) -> list[str]:
    return [app.scheduler.node for app in apps
            if app.scheduler is not None and SITE in app.scheduler.sites]


async def test_only_the_lease_holder_plans_and_the_other_takes_over_when_it_stops(
    config: Config,
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with two_nodes(config) as (a, b, stations):
            assert owners(a, b) == ["node-a"]
            lease = (await holders(a.store.pool, [SITE]))[SITE]
            assert lease is not None and lease.node == "node-a"
            # node-a sends TS001 (on its socket) its TxDefaultProfile; node-b, whose
            # station TS002 boots just the same, sends nothing and plans nothing
            await eventually(lambda: _async(profiles(stations["TS001"]) >= 1), timeout=20)
            await asyncio.sleep(3 * RETRY_S)
            assert profiles(stations["TS002"]) == 0
            assert planned_by(logs) and set(planned_by(logs)) == {"node-a"}
            assert owners(a, b) == ["node-a"]

            stopped = time.monotonic()
            await a.stop()
            await eventually(lambda: _async(owners(b) == ["node-b"]), timeout=TAKEOVER_S)
            took = time.monotonic() - stopped
            # it re-plans from what is stored: TS002 now gets its TxDefaultProfile
            await eventually(lambda: _async(profiles(stations["TS002"]) >= 1), timeout=20)
            await eventually(lambda: _async("node-b" in planned_by(logs)), timeout=20)
            lease = (await holders(b.store.pool, [SITE]))[SITE]
            assert lease is not None and lease.node == "node-b"
    assert took < TAKEOVER_S
    taken = [e for e in logs if e["event"] == "scheduler.site_taken"]
    assert [e["node"] for e in taken] == ["node-a", "node-b"]


async def test_a_node_whose_lease_connection_is_killed_stops_planning_at_once(
    config: Config,
) -> None:
    with structlog.testing.capture_logs() as logs:
        async with two_nodes(config) as (a, b, _):
            assert a.scheduler is not None and a.scheduler.leases is not None
            planner = a.scheduler.sites[SITE]
            task = a.scheduler._site_tasks[SITE]
            pid = a.scheduler.leases.backend_pid()
            killed_at = len(logs)
            admin = await asyncpg.connect(config.database.url)
            try:
                assert await admin.fetchval("SELECT pg_terminate_backend($1)", pid)
            finally:
                await admin.close()
            # node-a notices the closed connection and cancels the site's task
            await eventually(lambda: _async(task.done()), timeout=5)
            assert SITE not in a.scheduler.sites and planner is not None
            assert any(e["event"] == "scheduler.site_lost" and e["node"] == "node-a"
                       for e in logs)
            # someone owns it again (either node may win the retry), never both at once
            deadline = time.monotonic() + TAKEOVER_S
            while not owners(a, b):
                assert time.monotonic() < deadline, "no node took the site over"
                await asyncio.sleep(0.05)
            for _ in range(int(4 * RETRY_S / 0.05)):
                assert len(owners(a, b)) == 1, owners(a, b)
                await asyncio.sleep(0.05)
            winner = owners(a, b)[0]
            lease = (await holders(a.store.pool, [SITE]))[SITE]
            assert lease is not None and lease.node == winner
            # and plans it, from what is stored
            await eventually(lambda: _async(winner in planned_by(logs[killed_at:])),
                             timeout=20)


async def test_a_process_that_starts_later_is_given_its_share_of_the_sites(
    config: Config, tmp_path: Path,
) -> None:
    """Three sites: node-a, alone, plans all three; once node-b is up, node-a gives back
    the surplus (stops planning it first) and node-b takes it, one planner per site."""
    files = []
    for name, prefix in (("north", "N"), ("south", "S"), ("east", "E")):
        path = tmp_path / f"{name}.toml"
        text = SITE_FILE.read_text().replace('id_prefix = "TS"', f'id_prefix = "{prefix}"')
        path.write_text(re.sub(r"(?m)^tariff = .*$", "", text))  # no tariff folder here
        files.append(str(path))

    def with_sites(node: str) -> Config:
        return replace(config, scheduler=SchedulerConfig(
            sites=tuple(files), interval_s=3600, debounce_s=0.2, lease_retry_s=0.3,
            node_name=node))

    def planned(*apps: Csms) -> list[str]:
        return sorted(site for app in apps if app.scheduler is not None
                      for site in app.scheduler.sites)

    with structlog.testing.capture_logs() as logs:
        a = await Csms.start(with_sites("node-a"))
        try:
            assert planned(a) == ["east", "north", "south"]
            b = await Csms.start(with_sites("node-b"))
            try:
                await eventually(lambda: _async(
                    b.scheduler is not None and len(b.scheduler.sites) == 1), timeout=15)
                assert a.scheduler is not None and len(a.scheduler.sites) == 2
                assert planned(a, b) == ["east", "north", "south"]  # each once
                locks = await holders(a.store.pool, ["east", "north", "south"])
                assert {s: h.node for s, h in locks.items() if h} == {
                    **dict.fromkeys(a.scheduler.sites, "node-a"),
                    **dict.fromkeys(b.scheduler.sites, "node-b")}
                await asyncio.sleep(1.5)  # 5 rounds: no churn once shared
                assert len(a.scheduler.sites) == 2 and len(b.scheduler.sites) == 1
            finally:
                await b.stop()
            # node-b gone: node-a takes its site back
            await eventually(lambda: _async(planned(a) == ["east", "north", "south"]),
                             timeout=15)
        finally:
            await a.stop()
    released = [e for e in logs if e["event"] == "scheduler.site_released"]
    assert [e["node"] for e in released] == ["node-a"]


async def _async(value: Any) -> Any:
    return value


async def test_a_stopping_scheduler_takes_no_site_again(config: Config) -> None:
    """A lease round that runs on while the scheduler stops (a cancellation that
    asyncio.wait_for swallowed) must not start the sites again: stop would then wait on
    them forever. Here the round runs after stop began; nothing is taken, and a second
    stop returns at once."""
    app = await Csms.start(node_config(config, "node-a"))
    scheduler = app.scheduler
    assert scheduler is not None and set(scheduler.sites) == {SITE}
    stopping = asyncio.create_task(scheduler.stop())
    await asyncio.sleep(0)  # stop() has begun: its sites dropped, its tasks cancelled
    await scheduler._take_free_sites()  # what a round that missed its cancellation does
    assert scheduler.sites == {}
    await asyncio.wait_for(stopping, 10)
    assert scheduler.sites == {} and scheduler._site_tasks == {}
    await asyncio.wait_for(app.stop(), 10)
