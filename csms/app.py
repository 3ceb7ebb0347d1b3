"""The CSMS as one object: database, store, OCPP server and commands, started and stopped
together. The CLI, the demo and the end-to-end tests all start it the same way."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import structlog

from csms.api.app import build_app
from csms.api.deps import Parts
from csms.api.server import ApiServer
from csms.audit import load_key
from csms.ca import CertificateAuthority
from csms.ca import load_or_create as load_ca
from csms.certificates import CertificateRenewal
from csms.clock import Clock, SystemClock
from csms.cluster.member import Member
from csms.cluster.registry import Registry
from csms.collector import Collector
from csms.commands import Commands
from csms.config import Config
from csms.connection import Connections
from csms.cost_updates import CostUpdates
from csms.diagnostics import Diagnostics
from csms.dispatch import Tracker
from csms.events import EventBus
from csms.firmware import FirmwareUpdates
from csms.invitations import Context as InvitationContext
from csms.iso15118 import Iso15118
from csms.lag import LagProbe
from csms.ocpp.deps import Deps
from csms.ocpp.routes import Router, routes
from csms.openadr import Ven
from csms.scheduling.leases import SINGLETON_SPACE, Leases
from csms.scheduling.scheduler import Scheduler
from csms.server import OcppServer
from csms.sites import Sites
from csms.store import Database, Store, open_database
from csms.store.api_tokens import ApiTokenRepo
from csms.tariffs import load_catalog

log = structlog.get_logger()


@dataclass
class Csms:
    config: Config
    clock: Clock
    db: Database
    store: Store
    events: EventBus
    connections: Connections
    commands: Commands
    ocpp: OcppServer
    scheduler: Scheduler | None = None
    api: ApiServer | None = None
    collector: Collector | None = None
    lag: LagProbe | None = None
    ca: CertificateAuthority | None = None
    renewal: CertificateRenewal | None = None
    cost_updates: CostUpdates | None = None
    firmware: FirmwareUpdates | None = None
    diagnostics: Diagnostics | None = None
    iso15118: Iso15118 | None = None
    sites: Sites = field(default_factory=Sites)  # as configured, planned here or not
    cluster: Member | None = None  # one worker of several (csms/cluster/); None: alone
    openadr: Ven | None = None  # the OpenADR VEN, where `[openadr] vtn_url` is set
    tracker: Tracker | None = None  # follows running VPP dispatches (issue 14)

    @classmethod
    async def start(cls, config: Config, clock: Clock | None = None) -> Csms:
        clock = clock or SystemClock()
        ca = station_ca(config, clock)  # first: a bad CA or site file stops the start
        sites = Sites.load(config.scheduler.sites, config.scheduler.tariffs_dir)
        db = await open_database(config.database.url, Path(config.database.data_dir))
        store = Store(db.pool)
        clustered = bool(config.cluster.broker_url)
        if not clustered:  # in a cluster, other workers hold stations (csms/cluster/)
            await store.stations.mark_all_offline(clock.now())
        events = EventBus()
        connections = Connections()
        member = None
        if clustered:  # before the OCPP server: every socket is shared from the first
            member = Member(config.cluster, connections, events, Registry(db.pool), clock,
                            config.server.call_timeout_s)
            await member.start()
        iso15118 = Iso15118(config.iso15118)
        router = Router(routes(Deps(store, clock, events, config.boot, ca=ca, iso15118=iso15118)))
        ocpp = OcppServer(config.server, store, clock, router, connections, events,
                          client_cas=client_cas(config, ca))
        commands = Commands(connections, store, clock)
        scheduler = None
        # in a cluster, every worker that `plans_here` takes its share of the sites; the
        # per-site leases (csms/scheduling/leases.py) keep each site to one planner
        if config.scheduler.on and plans_here(config):
            scheduler = Scheduler(config.scheduler, store, commands, connections, events, clock,
                                  sites, db.url, node=member.worker_id if member else "")
            await scheduler.start()
        await ocpp.start()
        csms = cls(config, clock, db, store, events, connections, commands, ocpp, scheduler,
                   ca=ca, sites=sites, cluster=member)
        csms.renewal = CertificateRenewal(config.security, store, commands, connections, clock)
        csms.renewal.start()
        csms.firmware = FirmwareUpdates(store, commands, clock, events,
                                        config.firmware.rollout_tick_s)
        csms.firmware.start()
        csms.diagnostics = Diagnostics(store, commands, clock, config.diagnostics)
        csms.iso15118 = iso15118
        csms.collector = Collector(config.gc, connections)
        csms.collector.start()
        csms.lag = LagProbe()
        csms.lag.start()
        if config.billing.cost_updated_interval_s > 0:
            csms.cost_updates = CostUpdates(store, commands, connections, clock,
                                            config.billing.cost_updated_interval_s)
            csms.cost_updates.start()
        if config.openadr.vtn_url and plans_here(config):
            csms.openadr = Ven(  # one VEN per installation: in a cluster, the lock's holder
                config.openadr, store, clock, events, sites.models(),
                load_key(config.audit_dir()), answer=InvitationContext(
                    store, sites.models(), load_catalog(sites, config.scheduler.slot_minutes),
                    config.vpp, config.scheduler),
                lease=_singleton_lease(db.url, member) if clustered else None)
            await csms.openadr.start()
        if plans_here(config):  # where sites are planned: re-splits of VPP dispatches
            csms.tracker = Tracker(  # in a cluster, the lock's holder tracks
                store, load_key(config.audit_dir()), sites.models(), events, clock, config.vpp,
                lease=_singleton_lease(db.url, member) if clustered else None)
            csms.tracker.start()
        if config.api.enabled:
            await csms._start_api()
        return csms

    async def stop(self) -> None:
        if self.api is not None:  # first: no request finds the store closed
            await self.api.stop()
        if self.openadr is not None:
            await self.openadr.stop()
        if self.tracker is not None:
            await self.tracker.stop()
        if self.scheduler is not None:
            await self.scheduler.stop()
        if self.renewal is not None:
            await self.renewal.stop()
        if self.cost_updates is not None:
            await self.cost_updates.stop()
        if self.firmware is not None:
            await self.firmware.stop()
        await self.ocpp.stop()
        if self.cluster is not None:  # after the sockets closed: their ends are shared
            await self.cluster.stop()
        await self.store.close()
        await self.db.close()
        if self.lag is not None:
            await self.lag.stop()
        if self.collector is not None:
            await self.collector.stop()
        log.info("csms.stopped")

    async def _start_api(self) -> None:
        parts = Parts(self.clock, self.store, self.events, self.connections, self.commands,
                      ApiTokenRepo(self.store.pool), sites=self.sites.models(),
                      tariffs=load_catalog(self.sites, self.config.scheduler.slot_minutes),
                      ca=self.ca, firmware=self.firmware,
                      diagnostics=self.diagnostics, iso15118=self.iso15118,
                      audit_key=load_key(self.config.audit_dir()),
                      carbon=self.sites.carbon(), vpp=self.config.vpp,
                      energy=self.sites.energy(), scheduler=self.config.scheduler,
                      cluster=self.cluster.registry if self.cluster else None)
        api = ApiServer(self.config.api, build_app(parts), parts.stopping)
        try:
            await api.start()
        except BaseException:
            await self.stop()
            raise
        self.api = api
        if self.diagnostics is not None:
            self.diagnostics.serve_uploads_at(self.config.api.host, api.port)


# application_name of the lock connection of what a cluster runs once (the VEN, the VPP
# tracker), then the node; not counted as a planner
SINGLETON_HOLDER = "csms-singleton "


def _singleton_lost(why: str) -> None:
    log.warning("cluster.singleton_lock_lost", why=why)  # its holder notices at its next try


def _singleton_lease(url: str, member: Member | None) -> Leases:
    """A lock connection for what a cluster runs once (each its own connection)."""
    return Leases(url, member.worker_id if member else "", _singleton_lost,
                  prefix=SINGLETON_HOLDER, space=SINGLETON_SPACE)


def plans_here(config: Config) -> bool:
    """Whether this process runs the scheduler: always alone; in a cluster where
    `[cluster] plans` says so (every worker by default; the site leases decide which
    process plans which site)."""
    return not config.cluster.broker_url or config.cluster.plans


def station_ca(config: Config, clock: Clock) -> CertificateAuthority:
    """The CA that signs station certificates: the operator's, or the CSMS's own (made in
    the data folder on the first start)."""
    sec = config.security
    return load_ca(sec.ca_cert, sec.ca_key, config.ca_dir(), clock.now(),
                   organization=sec.organization, days=sec.certificate_days)


def client_cas(config: Config, ca: CertificateAuthority) -> list[str]:
    """The CAs whose station certificates a TLS connection accepts (Security Profile 3)."""
    extra = config.server.tls_client_ca
    return [ca.root_pem] + ([Path(extra).read_text()] if extra else [])
