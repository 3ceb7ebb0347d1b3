"""The scheduler: which sites this process plans, and the events that make them re-plan.

Each configured site is planned by one process at a time: the one holding its lease
(`leases`). At start this process takes every site no other holds; every `lease_retry_s`
it checks its lease connection and tries again for the sites nobody holds, so when an
owner dies another process takes its sites within about that long and re-plans them from
what is stored. An owned site gets a `SitePlanner` and its task (one plan at a time, every
`interval_s` on the CSMS clock and, debounced, after an event); a lost one is cancelled at
once. Why: docs/decisions/0008-scheduler.md, docs/decisions/0023-scheduler-site-leases.md.
"""

from __future__ import annotations

import asyncio
import math
import os
import socket
from collections.abc import Awaitable
from dataclasses import dataclass, field
from datetime import timedelta

import structlog

from csms import metrics
from csms.clock import Clock
from csms.commands import Commands
from csms.config import SchedulerConfig
from csms.connection import Connections
from csms.events import (
    ChargingNeedsChanged,
    ChargingProfilesCleared,
    Event,
    EventBus,
    ExternalLimitChanged,
    GridEventChanged,
    PowerSampled,
    ReservationChanged,
    SiteSettingsChanged,
    StationConnected,
    StationDisconnected,
    TransactionChanged,
)
from csms.scheduling.gateway import Gateway
from csms.scheduling.leases import Leases
from csms.scheduling.site import SitePlanner
from csms.sites import SiteFile, Sites
from csms.store import Store

log = structlog.get_logger()

PRUNE_EVERY_S = 3600.0


def default_node_name() -> str:
    """host:pid: which process holds a lease, as operators see it."""
    return f"{socket.gethostname()}:{os.getpid()}"


@dataclass
class Scheduler:
    """The sites this process plans, the event feed that triggers them, and their leases.

    `sites` holds the planners of the sites this process owns now (by id); `site_files`
    every configured site. `database_url` is where the lease connection goes (the same
    database as the store)."""

    config: SchedulerConfig
    store: Store
    commands: Commands
    connections: Connections
    events: EventBus
    clock: Clock
    site_files: Sites = field(default_factory=Sites)
    database_url: str = ""
    sites: dict[str, SitePlanner] = field(default_factory=dict)
    gateway: Gateway = field(init=False)
    leases: Leases | None = None
    node: str = ""  # who holds a lease, as operators see it: [scheduler] node_name, else
                   # the cluster worker (node/worker), else host:pid
    _by_station: dict[str, SitePlanner] = field(default_factory=dict)
    _site_tasks: dict[str, asyncio.Task[None]] = field(default_factory=dict)
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _helpers: set[asyncio.Task[None]] = field(default_factory=set)
    _queue: asyncio.Queue[Event] | None = None
    _free: set[str] = field(default_factory=set)  # sites seen free, not taken, last round
    _planners: int = 0  # planners alive at the last round
    _given: set[str] = field(default_factory=set)  # sites this process just released
    _stopping: bool = False  # no site is taken once stop() has begun

    def __post_init__(self) -> None:
        self.gateway = Gateway(self.commands, self.connections, self.store,
                               self.config.max_concurrent_calls)
        self.node = self.config.node_name or self.node or default_node_name()

    def add_site(self, site_file: SiteFile) -> SitePlanner:
        """A planner for the site, fed its stations' events (its task is not started)."""
        planner = SitePlanner(site_file.site, site_file.prices, self.config, self.clock,
                              self.store, self.gateway, node=self.node,
                              energy=site_file.energy)
        self.sites[site_file.site.id] = planner
        for station_id in planner.station_ids:
            self._by_station[station_id] = planner
        return planner

    async def start(self) -> None:
        self._queue = self.events.subscribe()
        self._tasks = [asyncio.create_task(self._feed(), name="scheduler-events")]
        if self.database_url:
            self.leases = Leases(self.database_url, self.node, self._lost,
                                 timeout_s=max(self.config.lease_retry_s, 1.0))
        await self._take_free_sites()
        if self.leases is not None:
            self._tasks.append(asyncio.create_task(self._hold_leases(), name="scheduler-leases"))
        if self.config.keep_plans_days > 0:
            self._tasks.append(asyncio.create_task(self._prune_plans(), name="scheduler-prune"))

    async def stop(self) -> None:
        """Stop planning first, then release the leases: no profile goes out after another
        process may have taken a site. Nothing is taken once stopping: a lease round that
        a cancellation missed (asyncio.wait_for on 3.11 can return a result it was
        cancelled over) would start every site again and never end, and stop would wait
        on it forever (seen at the end of a 6,000-station benchmark)."""
        self._stopping = True
        planning = list(self._site_tasks.values())
        for site_id in list(self._site_tasks):
            self._drop_site(site_id)
        tasks = [*planning, *self._tasks, *self._helpers]
        while not all(t.done() for t in tasks):
            for task in tasks:
                task.cancel()
            await asyncio.wait(tasks, timeout=1.0)
            for site_id in list(self._site_tasks):  # started by a round that ran on
                tasks.append(self._site_tasks[site_id])
                self._drop_site(site_id)
        self._tasks.clear()
        if self.leases is not None:
            await self.leases.close()
        if self._queue is not None:
            self.events.unsubscribe(self._queue)
            self._queue = None

    # ----------------------------------------------------------------- leases

    async def _take_free_sites(self) -> None:
        """Take the free sites, up to this process's fair share of them while other
        planners are alive (sites / planners, rounded up), so the sites' solves spread over
        the processes; a site seen free twice in a row is taken whatever the share, so
        none waits for a count that is off."""
        if self._stopping:
            return
        share = len(self.site_files)
        if self.leases is not None and self.leases.connected:
            share = math.ceil(len(self.site_files) / await self.leases.planners())
        seen_free, self._free = self._free, set()
        given, self._given = self._given, set()
        for site_id, site_file in self.site_files.items():
            if site_id in self.sites:
                continue
            if len(self.sites) >= share and site_id not in seen_free:
                if site_id not in given:  # just given back: for others first, a round
                    self._free.add(site_id)  # probe it next round: still free, take it
                continue
            if self.leases is not None and not await self.leases.take(site_id):
                continue
            if self._stopping:
                return
            self._start_site(site_file)
        metrics.scheduler_sites_owned.set(len(self.sites))

    def _start_site(self, site_file: SiteFile) -> None:
        planner = self.add_site(site_file)
        site_id = site_file.site.id
        self._site_tasks[site_id] = asyncio.create_task(planner.run(),
                                                        name=f"scheduler-{site_id}")
        metrics.scheduler_leases.labels(site_id, "taken").inc()
        log.info("scheduler.site_taken", site_id=site_id, node=self.node,
                 evses=len(site_file.site.evses))

    async def _give_back_surplus(self) -> None:
        """Hold no more than the fair share when more planners are alive than when the
        sites were taken (a worker or node that started later): stop planning the surplus,
        then release its locks, so a process under its share takes them at its next try.
        Only after the planner count stayed the same for one round: no churn at start."""
        assert self.leases is not None
        planners = await self.leases.planners()
        steady, self._planners = planners == self._planners, planners
        share = math.ceil(len(self.site_files) / planners)
        if not steady or len(self.sites) <= share:
            return
        for site_id in sorted(self.sites)[share:]:
            task = self._site_tasks.get(site_id)
            self._drop_site(site_id)
            if task is not None:
                await asyncio.gather(task, return_exceptions=True)
            await self.leases.release(site_id)
            self._given.add(site_id)
            metrics.scheduler_leases.labels(site_id, "released").inc()
            log.info("scheduler.site_released", site_id=site_id, node=self.node,
                     planners=planners)
        metrics.scheduler_sites_owned.set(len(self.sites))

    async def _hold_leases(self) -> None:
        """Every `lease_retry_s` (wall time, not the CSMS clock: it is about connections,
        and an accelerated clock must not make it a busy loop): check the lease
        connection, then try the sites nobody holds."""
        assert self.leases is not None
        while not self._stopping:
            await asyncio.sleep(self.config.lease_retry_s)
            try:
                if self.leases.connected:
                    await self.leases.check()
                if self.leases.connected:
                    await self._give_back_surplus()
                await self._take_free_sites()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler.lease_failed")

    def _lost(self, why: str) -> None:
        """The lease connection is gone: another process may own these sites now, so stop
        planning every one of them at once (their tasks are cancelled, mid-plan too)."""
        for site_id in list(self._site_tasks):
            self._drop_site(site_id)
            metrics.scheduler_leases.labels(site_id, "lost").inc()
            log.warning("scheduler.site_lost", site_id=site_id, node=self.node, why=why)
        metrics.scheduler_sites_owned.set(len(self.sites))

    def _drop_site(self, site_id: str) -> None:
        task = self._site_tasks.pop(site_id, None)
        if task is not None:
            task.cancel()
        planner = self.sites.pop(site_id, None)
        for station_id in planner.station_ids if planner else []:
            if self._by_station.get(station_id) is planner:
                del self._by_station[station_id]

    # ----------------------------------------------------------------- housekeeping

    async def _prune_plans(self) -> None:
        """Delete plans older than `keep_plans_days`, at start and every hour of the CSMS
        clock: one row per site every few minutes would otherwise grow without end."""
        keep = timedelta(days=self.config.keep_plans_days)
        while True:
            try:
                gone = await self.store.plans.prune(self.clock.now() - keep)
                if gone:
                    log.info("scheduler.plans_pruned", deleted=gone)
            except asyncio.CancelledError:
                raise
            except Exception:
                log.exception("scheduler.prune_failed")
            await self.clock.sleep(PRUNE_EVERY_S)

    # ----------------------------------------------------------------- events

    async def _feed(self) -> None:
        assert self._queue is not None
        while True:
            event = await self._queue.get()
            try:
                self._on_event(event)
            except Exception:
                log.exception("scheduler.event_failed", event=type(event).__name__)

    def _on_event(self, event: Event) -> None:
        """Events of sites this process does not own are dropped: their owner sees its own
        (and re-plans on its interval what it cannot see)."""
        if isinstance(event, GridEventChanged | SiteSettingsChanged):
            by_site = self.sites.get(event.site_id)
            if by_site is not None:
                by_site.trigger(f"grid event {event.change}"
                                if isinstance(event, GridEventChanged) else f"{event.what} set")
            return
        site = self._by_station.get(event.station_id)
        if site is None:
            return
        if isinstance(event, PowerSampled):
            site.on_power(event)
        elif isinstance(event, TransactionChanged):
            if event.event_type in ("Started", "Ended"):
                site.trigger(f"transaction {event.event_type.lower()}")
            elif event.identified:  # the driver is known now: their vehicle's V2G terms
                site.trigger("driver identified")
        elif isinstance(event, ChargingNeedsChanged):
            site.trigger("charging needs")
        elif isinstance(event, ReservationChanged):
            site.trigger(f"reservation {event.status.lower()}")
        elif isinstance(event, StationConnected):
            self.gateway.forget(event.station_id)
            self._spawn(self._after_boot(site, event.station_id))
        elif isinstance(event, StationDisconnected):
            site.trigger("station disconnected")
        elif isinstance(event, ExternalLimitChanged):
            site.trigger(f"external limit {event.change}")
        elif isinstance(event, ChargingProfilesCleared):
            site.forget_profiles(event)
            site.trigger("profiles cleared")

    async def _after_boot(self, site: SitePlanner, station_id: str) -> None:
        """Re-plan once a connecting station is booted (its TxDefaultProfile goes first)."""
        for _ in range(30):
            if self.gateway.booted(station_id):
                break
            await self.clock.sleep(2.0)
        site.trigger("station connected")

    def _spawn(self, job: Awaitable[None]) -> None:
        task = asyncio.ensure_future(job)
        self._helpers.add(task)
        task.add_done_callback(self._helpers.discard)
