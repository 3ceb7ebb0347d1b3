"""One station's WebSocket: the receive loop, its CALLs handled in order, and the CSMS's
own CALLs to it, one in flight at a time.

The receive loop only parses and routes. A station's CALLs go to a queue worked by one task
(order kept, and a slow database never stalls the loop), while CALLRESULTs for the CSMS's
own CALL are delivered at once. So a charger-initiated call is never blocked behind a CSMS
call, and a handler never awaits a CSMS call (follow-ups run via `after`, once the answer
is sent).
"""

from __future__ import annotations

import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

import structlog
from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from csms import frames, metrics
from csms.frames import Call, CallError, CallResult, CallResultError, FrameError, Payload, Send
from csms.ocpp.schemas import VERSION, validate_request, validate_response

log = structlog.get_logger()

INBOX_LIMIT = 16  # a station may have one CALL outstanding; more is misbehaviour
PING_TIMEOUT_S = 20.0  # as websockets' default: a pong later than this means the station is gone


class StationOffline(Exception):
    def __init__(self, station_id: str) -> None:
        super().__init__(f"station {station_id} is not connected")
        self.station_id = station_id


class CallFailed(Exception):
    """The station answered a CSMS CALL with a CALLERROR (or an invalid CALLRESULT)."""

    def __init__(self, code: str, description: str, details: Payload | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details or {}


@dataclass
class StationContext:
    """What a handler may know and do about the station whose CALL it answers."""

    station_id: str
    boot_status: str | None
    connection: Connection | None = None
    ocpp_version: str = VERSION  # the subprotocol chosen: "2.0.1" or "2.1"
    transaction_evse: dict[str, int] = field(default_factory=dict)
    _after: list[Callable[[], Awaitable[None]]] = field(default_factory=list)

    def after(self, job: Callable[[], Awaitable[None]]) -> None:
        """Run `job` once the current CALL has been answered (e.g. a CSMS CALL in reply)."""
        self._after.append(job)


class Router(Protocol):
    async def dispatch(self, ctx: StationContext, call: Call) -> Payload: ...


class Connection:
    def __init__(
        self,
        ctx: StationContext,
        ws: ServerConnection,
        router: Router,
        *,
        call_timeout: float,
        on_seen: Callable[[str], None],
        ping_interval: float = 0.0,
        max_message_bytes: int | None = None,
    ) -> None:
        self.ctx = ctx
        self.max_message_bytes = max_message_bytes  # what the server refuses above (1009)
        self.ping_interval = ping_interval
        self.station_id = ctx.station_id
        self.ws = ws
        self.router = router
        self.call_timeout = call_timeout
        self.on_seen = on_seen
        self._inbox: asyncio.Queue[Call] = asyncio.Queue(INBOX_LIMIT)
        self._call_lock = asyncio.Lock()
        self._pending: tuple[str, str, asyncio.Future[CallResult | CallError]] | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self.log = log.bind(station_id=self.station_id)
        ctx.connection = self

    # -- receiving ------------------------------------------------------------------------

    async def run(self) -> None:
        worker = asyncio.create_task(self._work(), name=f"calls-{self.station_id}")
        if self.ping_interval > 0:
            keepalive = asyncio.create_task(self._keepalive(), name=f"ping-{self.station_id}")
            self._tasks.add(keepalive)
        try:
            async for raw in self.ws:
                self.on_seen(self.station_id)
                await self._receive(raw)
        except ConnectionClosed as exc:
            if 1009 in {frame.code for frame in (exc.rcvd, exc.sent) if frame}:
                metrics.errors.labels("MessageTooBig").inc()
                self.log.warning("frame.too_large", limit=self.max_message_bytes)
        finally:
            worker.cancel()
            for task in self._tasks:
                task.cancel()
            if self._pending and not self._pending[2].done():
                self._pending[2].set_exception(StationOffline(self.station_id))
            await asyncio.gather(worker, *self._tasks, return_exceptions=True)

    async def _keepalive(self) -> None:
        """Ping the station to notice one that vanished without closing its socket.

        websockets' own keepalive pings a connection a fixed interval after it opened: after
        a reconnect storm that is thousands of pings in the same second, every interval,
        which held the event loop (every station) for up to a second at 10,000 stations.
        A random first delay spreads them evenly over the interval."""
        timeout = min(PING_TIMEOUT_S, self.ping_interval)
        await asyncio.sleep(random.uniform(0.0, self.ping_interval))
        try:
            while True:
                pong = await self.ws.ping()
                try:
                    await asyncio.wait_for(pong, timeout)
                except TimeoutError:
                    self.log.warning("station.ping_timeout", seconds=timeout)
                    self.ws.transport.abort()  # gone: no closing handshake to wait for
                    return
                await asyncio.sleep(self.ping_interval)
        except ConnectionClosed:
            return

    async def _receive(self, raw: str | bytes) -> None:
        try:
            frame = frames.parse(raw)
        except FrameError as exc:
            pending = self._pending
            if pending and exc.message_id == pending[0] and not pending[2].done():
                # the answer to our CALL, unusable: fail the call now (no CALLERROR answers
                # a CALLRESULT), rather than let it time out
                metrics.errors.labels(exc.code).inc()
                pending[2].set_result(CallError(exc.message_id, exc.code, exc.description))
                return
            await self._refuse(exc, raw)
            return
        if isinstance(frame, Send | CallResultError):
            await self._unanswered(frame, raw)
            return
        if isinstance(frame, Call):
            try:
                self._inbox.put_nowait(frame)
            except asyncio.QueueFull:
                await self._refuse(
                    FrameError("GenericError", "too many CALLs outstanding", frame.message_id),
                    raw,
                )
            return
        pending = self._pending
        if pending is None or pending[0] != frame.message_id:
            metrics.errors.labels("UnknownMessageId").inc()
            self.log.warning("frame.unexpected_response", message_id=frame.message_id)
            return
        if not pending[2].done():
            pending[2].set_result(frame)

    async def _unanswered(self, frame: Send | CallResultError, raw: str | bytes) -> None:
        """OCPP 2.1's SEND and CALLRESULTERROR, which nobody answers: logged, and the error
        counted (no SEND is acted on yet: docs/requirements-status.md). On 2.0.1 they are
        unknown message types."""
        if self.ctx.ocpp_version == "2.0.1":
            kind = 6 if isinstance(frame, Send) else 7
            await self._refuse(FrameError("MessageTypeNotSupported",
                                          f"message type {kind} is unknown in OCPP 2.0.1",
                                          frame.message_id), raw)
            return
        if isinstance(frame, Send):
            self.log.info("send.ignored", action=frame.action[:64], message_id=frame.message_id)
        else:
            metrics.errors.labels("CallResultError").inc()
            self.log.warning("frame.callresult_refused", message_id=frame.message_id,
                             code=frame.code, reason=frame.description)

    async def _refuse(self, exc: FrameError, raw: str | bytes) -> None:
        metrics.errors.labels(exc.code).inc()
        self.log.warning(
            "frame.refused", code=exc.code, message_id=exc.message_id, reason=exc.description,
            frame=str(raw)[:200],
        )
        await self._send(CallError(exc.message_id or "-1", exc.code, exc.description))

    async def _work(self) -> None:
        while True:
            call = await self._inbox.get()
            await self._answer(call)

    async def _answer(self, call: Call) -> None:
        self.ctx._after.clear()
        started = time.perf_counter()
        metrics.messages.labels(call.action).inc()
        try:
            payload = await self.router.dispatch(self.ctx, call)
            reply: CallResult | CallError = CallResult(call.message_id, payload)
        except FrameError as exc:
            metrics.errors.labels(exc.code).inc()
            self.log.warning(
                "call.refused", action=call.action, message_id=call.message_id, code=exc.code,
                reason=exc.description,
            )
            reply = CallError(call.message_id, exc.code, exc.description)
        except Exception:
            metrics.errors.labels("InternalError").inc()
            self.log.exception("call.failed", action=call.action, message_id=call.message_id)
            reply = CallError(call.message_id, "InternalError", "the CSMS could not process it")
        await self._send(reply)
        metrics.handle_latency.labels(call.action).observe(time.perf_counter() - started)
        for job in self.ctx._after:
            self.spawn(job())
        self.ctx._after.clear()

    def spawn(self, job: Awaitable[None]) -> None:
        async def guarded() -> None:
            try:
                await job
            except (StationOffline, CallFailed, TimeoutError) as exc:
                self.log.warning("after.failed", error=str(exc))
            except Exception:
                self.log.exception("after.crashed")

        task = asyncio.create_task(guarded())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _send(self, frame: frames.Frame) -> None:
        try:
            await self.ws.send(frames.dump(frame))
        except ConnectionClosed:
            self.log.info("send.closed", message_id=frame.message_id)

    # -- calling the station --------------------------------------------------------------

    async def call(self, action: str, payload: Payload, timeout: float | None = None) -> Payload:
        """Send a CALL and return the station's CALLRESULT payload, validated.

        Raises CallFailed (CALLERROR or invalid answer), TimeoutError, StationOffline.
        """
        version = self.ctx.ocpp_version
        validate_request(action, payload, version=version)  # our bug: fail before sending
        async with self._call_lock:
            message_id = str(uuid.uuid4())
            future: asyncio.Future[CallResult | CallError] = (
                asyncio.get_running_loop().create_future()
            )
            self._pending = (message_id, action, future)
            started = time.perf_counter()
            try:
                try:
                    await self.ws.send(frames.dump(Call(message_id, action, payload)))
                except ConnectionClosed:
                    raise StationOffline(self.station_id) from None
                try:
                    answer = await asyncio.wait_for(future, timeout or self.call_timeout)
                except TimeoutError:
                    metrics.calls.labels(action, "timeout").inc()
                    self.log.warning("call.timeout", action=action, message_id=message_id)
                    raise
            finally:
                self._pending = None
            metrics.call_latency.labels(action).observe(time.perf_counter() - started)
        if isinstance(answer, CallError):
            metrics.calls.labels(action, "error").inc()
            self.log.warning("call.error", action=action, code=answer.code,
                             reason=answer.description)
            raise CallFailed(answer.code, answer.description, answer.details)
        try:
            validate_response(action, answer.payload, version=version)
        except FrameError as exc:
            metrics.calls.labels(action, "invalid").inc()
            raise CallFailed(exc.code, f"invalid {action} response: {exc.description}") from None
        metrics.calls.labels(action, "ok").inc()
        return answer.payload

    async def close(self, code: int = 1000, reason: str = "") -> None:
        await self.ws.close(code, reason)


class StationLink(Protocol):
    """What callers of `Connections.get` use: a local Connection, or (in a cluster) a
    stand-in for a socket another process holds (csms/cluster/)."""

    station_id: str
    ctx: StationContext

    async def call(self, action: str, payload: Payload,
                   timeout: float | None = None) -> Payload: ...

    async def close(self, code: int = 1000, reason: str = "") -> None: ...


class Elsewhere(Protocol):
    """The stations other processes of a cluster hold; None outside a cluster."""

    def link(self, station_id: str) -> StationLink | None: ...

    def ids(self) -> list[str]: ...

    def added(self, conn: Connection) -> None: ...

    def removed(self, conn: Connection) -> None: ...


class Connections:
    """The stations connected to this process, by identity; in a cluster, also those that
    other processes hold (`elsewhere`), so a caller reaches a station wherever it is."""

    def __init__(self) -> None:
        self._by_id: dict[str, Connection] = {}
        self.opened = 0  # connections registered since start
        self.closed = 0  # connections ended since start, replaced ones included
        self.elsewhere: Elsewhere | None = None

    def get(self, station_id: str) -> StationLink:
        conn: StationLink | None = self._by_id.get(station_id)
        if conn is None and self.elsewhere is not None:
            conn = self.elsewhere.link(station_id)
        if conn is None:
            raise StationOffline(station_id)
        return conn

    def local(self, station_id: str) -> Connection | None:
        return self._by_id.get(station_id)

    def is_connected(self, station_id: str) -> bool:
        return station_id in self._by_id or (
            self.elsewhere is not None and self.elsewhere.link(station_id) is not None)

    def add(self, conn: Connection) -> Connection | None:
        """Register `conn`; returns the connection it replaces, if any."""
        self.opened += 1
        old = self._by_id.get(conn.station_id)
        self._by_id[conn.station_id] = conn
        metrics.connected.set(len(self._by_id))
        if self.elsewhere is not None:
            self.elsewhere.added(conn)
        return old

    def remove(self, conn: Connection) -> bool:
        """Unregister `conn` (called once, when it ended) if it is still the current one
        for its station."""
        self.closed += 1
        return self.detach(conn)

    def detach(self, conn: Connection) -> bool:
        """Forget `conn` if it is the current one: its end is then not a disconnection
        (the station moved to another process of the cluster)."""
        if self._by_id.get(conn.station_id) is conn:
            del self._by_id[conn.station_id]
            metrics.connected.set(len(self._by_id))
            if self.elsewhere is not None:
                self.elsewhere.removed(conn)
            return True
        return False

    def __len__(self) -> int:
        return len(self._by_id)

    def ids(self) -> list[str]:
        """Connected stations: this process's, and in a cluster every other's too."""
        if self.elsewhere is None:
            return list(self._by_id)
        return list(dict.fromkeys([*self._by_id, *self.elsewhere.ids()]))

    def local_ids(self) -> list[str]:
        return list(self._by_id)
