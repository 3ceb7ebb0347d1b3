"""This process as one worker of a cluster: it answers CALLs routed to the stations whose
sockets it holds, routes its own CALLs to the others, shares its events, drops a socket
when its station reconnected elsewhere, and keeps the registry of who holds what.

Hooks, not a wrapper: `Connections.elsewhere` and `EventBus.forward` are set here, so the
rest of the CSMS calls `connections.get(...).call(...)` and `events.publish(...)` as in a
single process. Without a broker URL no Member is made and no hook is set.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

import nats
import nats.errors
import structlog
from nats.aio.client import Client as Nats
from nats.aio.msg import Msg
from nats.aio.subscription import Subscription

from csms.clock import Clock
from csms.cluster import wire
from csms.cluster.registry import Registry, Swept
from csms.config import ClusterConfig
from csms.connection import (
    CallFailed,
    Connection,
    Connections,
    StationContext,
    StationOffline,
)
from csms.events import Event, EventBus, StationDisconnected
from csms.frames import FrameError, Payload
from csms.ocpp.schemas import VERSION, VERSIONS, validate_request

log = structlog.get_logger()

RECONCILE_BATCH = 500  # socket changes shared per registry statement
OUTBOX_LIMIT = 10_000  # events waiting for the broker; more are dropped (as a slow subscriber's)
EVENTS_PER_SEND = 1_000  # at most, in one publish
EVENTS_LINGER_S = 0.01  # the live feed may lag this; the broker sees 100 messages/s at most
GONE = f"{wire.PREFIX}.gone"  # workers swept as dead: forget what they held


def worker_id(config: ClusterConfig) -> str:
    return f"{node_name(config)}/{config.worker}"


def node_name(config: ClusterConfig) -> str:
    return config.node or os.uname().nodename


@dataclass
class RemoteStation:
    """A station whose socket another worker holds: a CALL goes there over the broker and
    comes back as the same answer or exception a local Connection gives."""

    station_id: str
    worker_id: str
    connected_at: datetime
    ctx: StationContext
    _request: Callable[[str, bytes, float], Awaitable[Msg]]
    call_timeout: float
    margin: float

    async def call(self, action: str, payload: Payload, timeout: float | None = None) -> Payload:
        # a bad request is our bug: fail before sending
        validate_request(action, payload, version=self.ctx.ocpp_version)
        wait = (timeout or self.call_timeout) + self.margin
        answer = await self._ask(wire.call_request(action, payload, timeout), wait)
        outcome = answer.get("outcome")
        if outcome == "ok" and isinstance(answer.get("payload"), dict):
            payload_back: Payload = answer["payload"]
            return payload_back
        if outcome == "timeout":
            raise TimeoutError(f"station {self.station_id} did not answer {action}")
        if outcome == "failed":
            raise CallFailed(str(answer.get("code", "GenericError"))[:64],
                             str(answer.get("description", ""))[:512],
                             answer.get("details") if isinstance(answer.get("details"), dict)
                             else None)
        if outcome == "invalid":
            raise FrameError(str(answer.get("code", "FormatViolation"))[:64],
                             str(answer.get("description", ""))[:512])
        raise StationOffline(self.station_id)

    async def close(self, code: int = 1000, reason: str = "") -> None:
        """Best effort, as a local close is: a holder that does not answer holds nothing."""
        try:
            await self._ask(wire.encode({"close": {"code": code, "reason": reason[:120]}}),
                            self.margin)
        except (StationOffline, TimeoutError) as exc:
            log.info("cluster.close_unanswered", station_id=self.station_id, error=str(exc))

    async def _ask(self, data: bytes, wait: float) -> dict[str, object]:
        try:
            msg = await self._request(wire.call_subject(self.station_id), data, wait)
        except nats.errors.NoRespondersError:
            raise StationOffline(self.station_id) from None
        except nats.errors.TimeoutError:
            raise TimeoutError(f"no answer from {self.worker_id} in {wait:.0f} s") from None
        except nats.errors.Error as exc:  # the broker is unreachable: so is the station
            log.warning("cluster.call_unrouted", station_id=self.station_id, error=str(exc))
            raise StationOffline(self.station_id) from None
        try:
            return wire.decode(msg.data, "outcome")
        except wire.WireError:
            raise StationOffline(self.station_id) from None


@dataclass
class _Held:
    """A station this worker holds: when its socket opened, and its call subscription."""

    connection: Connection
    at: datetime
    subscription: Subscription | None = None
    claimed_boot: str | None = None  # the boot status the last claim told the others


@dataclass
class Member:
    config: ClusterConfig
    connections: Connections
    events: EventBus
    registry: Registry
    clock: Clock
    call_timeout: float
    worker_id: str = ""
    node: str = ""
    _nc: Nats | None = None
    _elsewhere: dict[str, RemoteStation] = field(default_factory=dict)
    _held: dict[str, _Held] = field(default_factory=dict)
    _dirty: dict[str, None] = field(default_factory=dict)
    _sharing: bool = False  # a batch taken from _dirty is being shared
    _wake: asyncio.Event = field(default_factory=asyncio.Event)
    _outbox: asyncio.Queue[Event] = field(default_factory=lambda: asyncio.Queue(OUTBOX_LIMIT))
    _tasks: list[asyncio.Task[None]] = field(default_factory=list)
    _closing: set[asyncio.Task[None]] = field(default_factory=set)

    def __post_init__(self) -> None:
        self.worker_id = self.worker_id or worker_id(self.config)
        self.node = self.node or node_name(self.config)

    # -- start, stop ---------------------------------------------------------------------

    async def start(self) -> None:
        self._nc = await nats.connect(
            servers=self.config.broker_url.split(","), name=self.worker_id,
            max_reconnect_attempts=-1, reconnect_time_wait=1, connect_timeout=5,
            allow_reconnect=True)
        now = self.clock.now()
        dropped = await self.registry.join(self.worker_id, self.node, self.config.worker,
                                           os.getpid(), now)
        # an earlier process of this name (crashed, restarted) held these: others forget it
        await self._nc.publish(GONE, wire.encode({"workers": [self.worker_id]}))
        for h in await self.registry.holdings():
            if h.worker_id != self.worker_id:
                self._elsewhere[h.station_id] = self._remote(
                    h.station_id, h.worker_id, h.connected_at, h.boot_status, h.ocpp_version)
        await self._nc.subscribe(wire.EVENTS, cb=self._on_event)
        await self._nc.subscribe(wire.CLAIMS, cb=self._on_claim)
        await self._nc.subscribe(wire.RELEASES, cb=self._on_release)
        await self._nc.subscribe(GONE, cb=self._on_gone)
        self.connections.elsewhere = self
        self.events.forward = self._forward
        for station_id in dropped:
            self.events.publish(StationDisconnected(station_id, now))
        for job, name in ((self._reconcile, "cluster-sockets"),
                          (self._send_events, "cluster-events"),
                          (self._heartbeat, "cluster-heartbeat")):
            self._tasks.append(asyncio.create_task(job(), name=name))
        log.info("cluster.joined", worker_id=self.worker_id, broker=self.config.broker_url,
                 others_hold=len(self._elsewhere))

    async def stop(self) -> None:
        """After the OCPP server stopped: its disconnects are shared, then we leave."""
        await self._settle()
        self.events.forward = None
        self.connections.elsewhere = None
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        try:
            await self.registry.leave(self.worker_id)
        except Exception as exc:  # the database may be gone first; the sweep cleans up
            log.warning("cluster.leave_failed", error=str(exc))
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.drain()
        log.info("cluster.left", worker_id=self.worker_id)

    async def _settle(self, timeout: float = 5.0) -> None:
        """Let queued claims, releases and events go out (bounded)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while ((self._dirty or self._sharing or not self._outbox.empty())  # noqa: ASYNC110
               and loop.time() < deadline):
            await asyncio.sleep(0.02)  # two queues drain on their own: polling is simplest

    # -- Connections.elsewhere -------------------------------------------------------------

    def link(self, station_id: str) -> RemoteStation | None:
        return self._elsewhere.get(station_id)

    def ids(self) -> list[str]:
        return list(self._elsewhere)

    def added(self, conn: Connection) -> None:
        self._held[conn.station_id] = _Held(conn, self.clock.now(), self._subscription(conn))
        self._elsewhere.pop(conn.station_id, None)
        self._mark(conn.station_id)

    def removed(self, conn: Connection) -> None:
        self._mark(conn.station_id)

    def _subscription(self, conn: Connection) -> Subscription | None:
        held = self._held.get(conn.station_id)
        return held.subscription if held is not None else None

    def _mark(self, station_id: str) -> None:
        self._dirty[station_id] = None
        self._wake.set()

    def _remote(self, station_id: str, worker: str, at: datetime,
                boot_status: str | None, version: object = None) -> RemoteStation:
        """The stand-in; `version` as the holder said (one we speak, else 2.0.1's)."""
        assert self._nc is not None
        ctx = StationContext(station_id, boot_status,
                             ocpp_version=str(version) if version in VERSIONS else VERSION)
        return RemoteStation(station_id, worker, at, ctx,
                             self._nc.request, self.call_timeout, self.config.call_margin_s)

    # -- sockets: subscribe, claim, release (in order per station; rows a batch at a time) -

    async def _reconcile(self) -> None:
        """Share this worker's socket changes: per station in order (subscribe, claim;
        or unsubscribe, release), the registry's rows a batch at a time (a node that
        takes 10,000 reconnecting stations writes them in 20 statements, not 10,000)."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._dirty:
                batch = list(itertools.islice(self._dirty, RECONCILE_BATCH))
                for station_id in batch:  # a change while this batch is shared: the next
                    self._dirty.pop(station_id, None)
                self._sharing = True
                try:
                    await self._share(batch)
                finally:
                    self._sharing = False

    async def _share(self, batch: list[str]) -> None:
        holds: list[tuple[str, datetime]] = []
        releases: list[str] = []
        for station_id in batch:
            try:
                await self._reconcile_one(station_id, holds, releases)
            except Exception as exc:  # broker away: logged, not retried
                log.warning("cluster.socket_not_shared", station_id=station_id,
                            error=str(exc))
        try:
            await self.registry.hold_many(holds, self.worker_id)
            await self.registry.release_many(releases, self.worker_id)
        except Exception as exc:  # database away: logged, not retried
            log.warning("cluster.sockets_not_recorded", stations=len(batch), error=str(exc))

    async def _reconcile_one(self, station_id: str, holds: list[tuple[str, datetime]],
                             releases: list[str]) -> None:
        """Tell the others, and note the registry row to write (`holds`, `releases`)."""
        assert self._nc is not None
        held = self._held.get(station_id)
        local = self.connections.local(station_id)
        if held is None:
            return
        if local is None or local is not held.connection:
            if local is not None:  # replaced on this worker: `added` made a new entry
                return
            del self._held[station_id]
            if held.subscription is not None:
                await held.subscription.unsubscribe()
            await self._nc.publish(wire.RELEASES, wire.encode(
                {"station": station_id, "worker": self.worker_id}))
            releases.append(station_id)
            return
        if held.subscription is None:
            held.subscription = await self._nc.subscribe(
                wire.call_subject(station_id), cb=self._answerer(station_id))
        held.claimed_boot = local.ctx.boot_status
        await self._nc.publish(wire.CLAIMS, wire.encode({
            "station": station_id, "worker": self.worker_id, "at": held.at.isoformat(),
            "boot_status": held.claimed_boot, "ocpp_version": local.ctx.ocpp_version}))
        holds.append((station_id, held.at))

    async def _on_claim(self, msg: Msg) -> None:
        """Another worker took a station's socket: the later socket wins; ours, if older,
        is closed without being reported as a disconnection (the station is online)."""
        try:
            body = wire.decode(msg.data, "station", "worker", "at")
            station_id, worker = str(body["station"]), str(body["worker"])
            at = datetime.fromisoformat(str(body["at"]))
        except (wire.WireError, ValueError) as exc:
            log.warning("cluster.bad_claim", error=str(exc))
            return
        if worker == self.worker_id or len(station_id) > wire.MAX_STATION_ID:
            return
        held = self._held.get(station_id)
        if held is not None and (held.at, self.worker_id) > (at, worker):
            return  # ours is the newer socket: the other worker drops its own
        boot = body.get("boot_status")
        boot = boot[:32] if isinstance(boot, str) else None
        known = self._elsewhere.get(station_id)
        if known is not None and (known.worker_id, known.connected_at) == (worker, at):
            known.ctx.boot_status = boot  # the same socket, booted since: same stand-in
            return
        self._elsewhere[station_id] = self._remote(station_id, worker, at, boot,
                                                   body.get("ocpp_version"))
        local = self.connections.local(station_id)
        if local is not None and self.connections.detach(local):
            log.info("station.moved", station_id=station_id, to=worker)
            closing = asyncio.create_task(local.close(1000, "reconnected to another worker"))
            self._closing.add(closing)  # not awaited here: claims keep flowing meanwhile
            closing.add_done_callback(self._closing.discard)

    async def _on_release(self, msg: Msg) -> None:
        try:
            body = wire.decode(msg.data, "station", "worker")
        except wire.WireError:
            return
        remote = self._elsewhere.get(str(body["station"]))
        if remote is not None and remote.worker_id == body["worker"]:
            del self._elsewhere[remote.station_id]

    async def _on_gone(self, msg: Msg) -> None:
        try:
            workers = set(wire.decode(msg.data, "workers")["workers"])
        except (wire.WireError, TypeError):
            return
        for station_id, remote in list(self._elsewhere.items()):
            if remote.worker_id in workers:
                del self._elsewhere[station_id]

    # -- CALLs routed to this worker --------------------------------------------------------

    def _answerer(self, station_id: str) -> Callable[[Msg], Awaitable[None]]:
        async def answer(msg: Msg) -> None:
            try:
                reply = await self._answer(station_id, msg.data)
            except wire.WireError as exc:
                reply = wire.call_answer("invalid", code="FormatViolation",
                                         description=str(exc)[:200])
            with contextlib.suppress(Exception):
                await msg.respond(reply)
        return answer

    async def _answer(self, station_id: str, data: bytes) -> bytes:
        body = wire.decode(data)
        conn = self.connections.local(station_id)
        if conn is None:
            return wire.call_answer("offline")
        if isinstance(close := body.get("close"), dict):
            code = close.get("code")
            await conn.close(code if isinstance(code, int) and 1000 <= code < 5000 else 1000,
                             str(close.get("reason", ""))[:120])
            return wire.call_answer("ok", payload={})
        action, payload, timeout = body.get("action"), body.get("payload"), body.get("timeout")
        if not isinstance(action, str) or not isinstance(payload, dict):
            raise wire.WireError("not a CALL")
        wait = float(timeout) if isinstance(timeout, int | float) and 0 < timeout <= 3600 \
            else None
        try:
            return wire.call_answer("ok", payload=await conn.call(action, payload, wait))
        except StationOffline:
            return wire.call_answer("offline")
        except TimeoutError:
            return wire.call_answer("timeout")
        except CallFailed as exc:
            return wire.call_answer("failed", code=exc.code, description=exc.description,
                                    details=exc.details)
        except FrameError as exc:
            return wire.call_answer("invalid", code=exc.code, description=exc.description)

    # -- events ------------------------------------------------------------------------------

    def _forward(self, event: Event) -> None:
        try:
            self._outbox.put_nowait(event)
        except asyncio.QueueFull:
            log.warning("cluster.event_dropped", event=type(event).__name__)

    async def _send_events(self) -> None:
        """An event and what follows it within EVENTS_LINGER_S go as one batch (wire.py)."""
        assert self._nc is not None
        while True:
            batch = [await self._outbox.get()]
            await asyncio.sleep(EVENTS_LINGER_S)
            while len(batch) < EVENTS_PER_SEND and not self._outbox.empty():
                batch.append(self._outbox.get_nowait())
            try:
                for data in wire.encode_events(batch, self.worker_id):
                    await self._nc.publish(wire.EVENTS, data)
            except Exception as exc:
                log.warning("cluster.events_not_sent", events=len(batch), error=str(exc))

    async def _on_event(self, msg: Msg) -> None:
        try:
            origin, events, bad = wire.decode_events(msg.data)
        except wire.WireError as exc:
            log.warning("cluster.bad_event", error=str(exc))
            return
        if bad:
            log.warning("cluster.bad_event", unread=bad, origin=origin[:80])
        if origin != self.worker_id:
            for event in events:
                self.events.deliver(event)

    # -- liveness -----------------------------------------------------------------------------

    async def _heartbeat(self) -> None:
        """Refresh this worker's row; sweep workers that stopped refreshing theirs (a node
        that died): their stations are offline until they reconnect somewhere."""
        assert self._nc is not None
        while True:
            await self.clock.sleep(self.config.heartbeat_s)
            now = self.clock.now()
            for station_id, held in self._held.items():  # booted since its claim: tell them
                if held.connection.ctx.boot_status != held.claimed_boot:
                    self._mark(station_id)
            try:
                if not await self.registry.heartbeat(self.worker_id, now):
                    await self._rejoin(now)
                swept: Swept = await self.registry.sweep(now, self.config.worker_ttl_s)
            except Exception as exc:
                log.warning("cluster.heartbeat_failed", error=str(exc))
                continue
            if swept.workers:
                log.warning("cluster.workers_gone", workers=swept.workers,
                            stations=len(swept.stations))
                await self._nc.publish(GONE, wire.encode({"workers": swept.workers}))
                for station_id in swept.stations:
                    if station_id not in self._held:
                        self.events.publish(StationDisconnected(station_id, now))

    async def _rejoin(self, now: datetime) -> None:
        """Swept while alive (a long pause): register again, with what we hold."""
        log.warning("cluster.rejoined", worker_id=self.worker_id)
        await self.registry.join(self.worker_id, self.node, self.config.worker, os.getpid(), now)
        await self.registry.mark_online(list(self._held), now)
        for station_id in self._held:
            self._mark(station_id)

