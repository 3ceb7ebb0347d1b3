"""The station's link to the CSMS: one WebSocket, CALLs out and their answers, CSMS calls in
dispatched to the handler table, reconnects with backoff, BootNotification and its retries,
heartbeats, and the offline queue of TransactionEvents with the E13 retries.

`Link` is a base of `Station`: it uses the station's spec, clock, device model and EVSEs, and
calls the station's `_send_status` (after boot) and `_start_aligned_meter` (at start).
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulators import ocppj
from simulators.station.replies import ErrorReply, Reply

log = logging.getLogger("simulators.station")

Handler = Callable[[dict], Awaitable[Reply]]  # one CSMS call's payload -> the reply


class CallFailed(Exception):
    """The CSMS answered a CALL with a CALLERROR."""

    def __init__(self, code: str, description: str = "", details: Any = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.details = details


class ConnectionRefused(ConnectionError):
    """The CSMS refused the WebSocket handshake (status_code None: no usable subprotocol)."""

    def __init__(self, status_code: int | None, reason: str = "") -> None:
        super().__init__(f"handshake refused: {status_code} {reason}".strip())
        self.status_code = status_code
        self.reason = reason


class NotConnected(ConnectionError):
    """A CALL was attempted while the station has no connection."""


class Link:
    """Connection, boot, heartbeat and the ordered delivery of TransactionEvents."""

    def _init_link(self, handlers: dict[str, Handler]) -> None:
        # connection state
        self._ws: ClientConnection | None = None
        self._ids = itertools.count(1)
        self._pending: dict[str, asyncio.Future] = {}
        self._call_lock = asyncio.Lock()
        self._queue: deque[dict] = deque()  # TransactionEvents not yet delivered, oldest first
        self._sender: asyncio.Task | None = None  # the one task that sends from the queue
        self._first_try: dict[int, asyncio.Future] = {}  # id(payload) -> its first attempt ran
        self._retrying = False  # the first queued event failed and waits for its next attempt
        self.discarded_messages = 0  # TransactionEvents given up after MessageAttempts (E13)
        self._raw_waiter: asyncio.Future | None = None
        self._tasks: set[asyncio.Task] = set()
        self._recv_task: asyncio.Task | None = None
        self._heartbeat_task: asyncio.Task | None = None
        self._aligned_task: asyncio.Task | None = None
        self._boot_task: asyncio.Task | None = None
        self._reconnect_task: asyncio.Task | None = None
        self._manual_offline = False
        self._stopping = False
        self.sent_calls = 0
        self.connects = 0  # successful WebSocket connections (1 + reconnects)
        self.received_calls: deque[str] = deque(maxlen=256)  # recent CSMS actions
        self._handlers: dict[str, Handler] = handlers
        # the OCPP version of the current (or last) connection: the subprotocol the CSMS chose
        self.ocpp_version: str = self.spec.ocpp_version

    @property
    def connected(self) -> bool:
        return self._ws is not None

    @property
    def queued_messages(self) -> int:
        return len(self._queue)

    async def start(self) -> None:
        """Connect, send BootNotification and return after its response."""
        self._stopping = False
        self._manual_offline = False
        await self._connect()
        await self._boot("PowerUp")
        if self._heartbeat_task is None:
            self._heartbeat_task = self._spawn(self._heartbeat_loop())
        self._start_aligned_meter()

    async def stop(self) -> None:
        """Close cleanly and cancel every background task."""
        self._stopping = True
        tasks = [self._recv_task, self._heartbeat_task, self._boot_task, self._reconnect_task,
                 self._aligned_task]
        tasks += [e.meter_task for e in self.evses.values()]
        tasks += list(self._tasks)
        for t in tasks:
            if t is not None and not t.done() and t is not asyncio.current_task():
                t.cancel()
        ws, self._ws = self._ws, None
        if ws is not None:
            with contextlib.suppress(Exception):
                await ws.close()
        self._fail_pending(NotConnected("station stopped"))
        await cancel_and_wait([t for t in tasks if t is not None])

    async def disconnect(self) -> None:
        """Simulate network loss: drop the socket; keep charging and queue TransactionEvents."""
        self._manual_offline = True
        ws = self._ws
        self._ws = None
        if ws is not None:
            ws.transport.abort()
            if self._recv_task is not None:
                with contextlib.suppress(BaseException):
                    await self._recv_task
        self._fail_pending(NotConnected("network lost"))

    async def reconnect(self) -> None:
        """Connect again and deliver the queued TransactionEvents in order."""
        self._manual_offline = False
        if self._ws is None:
            await self._connect()
            await self._after_reconnect()

    async def call(self, action: str, payload: dict, timeout: float | None = None) -> dict:
        """Send a CALL and return the CALLRESULT payload; CallFailed on CALLERROR."""
        async with self._call_lock:
            ws = self._ws
            if ws is None:
                raise NotConnected(f"{self.station_id} is not connected")
            message_id = str(next(self._ids))
            fut: asyncio.Future = asyncio.get_running_loop().create_future()
            self._pending[message_id] = fut
            try:
                await ws.send(ocppj.encode_call(message_id, action, payload))
                self.sent_calls += 1
                frame: ocppj.Frame = await asyncio.wait_for(
                    fut, timeout or self.spec.call_timeout_s
                )
            except ConnectionClosed as exc:
                raise NotConnected(str(exc)) from None
            finally:
                self._pending.pop(message_id, None)
        if frame.kind == ocppj.CALLERROR:
            raise CallFailed(frame.error_code, frame.error_description, frame.error_details)
        return frame.payload

    async def send_raw(self, text: str, timeout: float = 2.0) -> str | None:
        """Send any text frame; return the next frame the CSMS sends, or None on timeout."""
        ws = self._ws
        if ws is None:
            raise NotConnected(f"{self.station_id} is not connected")
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._raw_waiter = fut
        await ws.send(text)
        try:
            return await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            return None
        finally:
            self._raw_waiter = None

    # ------------------------------------------------------------------ connection

    def _basic_auth_password(self) -> str | None:
        """SecurityCtrlr.BasicAuthPassword as last set (A01: a new one is used from the next
        connection on); none for a station without one (profile 3, or no auth)."""
        if self.spec.password is None:
            return None
        return self.device_model.value("SecurityCtrlr", "BasicAuthPassword") or None

    async def _connect(self) -> None:
        headers = {}
        if (password := self._basic_auth_password()) is not None:
            raw = f"{self.station_id}:{password}".encode()
            headers["Authorization"] = "Basic " + base64.b64encode(raw).decode()
        try:
            ws = await connect(
                self.url,
                subprotocols=list(self.spec.subprotocols) or None,  # type: ignore[arg-type]
                additional_headers=headers,
                ssl=self.ssl,
                compression=None,
                ping_interval=self.spec.ws_ping_interval_s,
                open_timeout=self.spec.call_timeout_s,
                max_size=2**22,
            )
        except InvalidStatus as exc:
            raise ConnectionRefused(exc.response.status_code, exc.response.reason_phrase) from None
        if self.spec.subprotocols and ws.subprotocol not in self.spec.subprotocols:
            await ws.close()
            raise ConnectionRefused(None, "CSMS selected no OCPP subprotocol")
        self.ocpp_version = ocppj.version_of(ws.subprotocol, self.spec.ocpp_version)
        self._ws = ws
        self.connects += 1
        self._recv_task = self._spawn(self._receive_loop(ws))

    async def _receive_loop(self, ws: ClientConnection) -> None:
        try:
            async for text in ws:
                if self._raw_waiter is not None and not self._raw_waiter.done():
                    self._raw_waiter.set_result(text if isinstance(text, str) else text.decode())
                await self._on_frame(ws, text)
        except ConnectionClosed:
            pass
        finally:
            if self._ws is ws:
                self._ws = None
            self._fail_pending(NotConnected("connection closed"))
            if not self._stopping and not self._manual_offline:
                if self._reconnect_task is None or self._reconnect_task.done():
                    self._reconnect_task = self._spawn(self._reconnect_with_backoff())

    def _fail_pending(self, exc: Exception) -> None:
        for fut in self._pending.values():
            if not fut.done():
                fut.set_exception(exc)
        self._pending.clear()

    async def _on_frame(self, ws: ClientConnection, text: str | bytes) -> None:
        try:
            frame = ocppj.decode(text)
        except ocppj.FrameError as exc:
            await self._reply(ws, ocppj.encode_error(exc.message_id, exc.code, exc.description))
            return
        if frame.kind in (ocppj.CALLRESULT, ocppj.CALLERROR):
            fut = self._pending.get(frame.message_id)
            if fut is not None and not fut.done():
                fut.set_result(frame)
            return
        self.received_calls.append(frame.action)
        handler = self._handlers.get(frame.action)
        if handler is None or not ocppj.has_schema(frame.action, self.ocpp_version):
            await self._reply(
                ws,
                ocppj.encode_error(
                    frame.message_id, "NotImplemented", f"{frame.action} not implemented"
                ),
            )
            return
        errors = ocppj.schema_errors(frame.action, frame.payload, version=self.ocpp_version)
        if errors:
            await self._reply(
                ws, ocppj.encode_error(frame.message_id, "FormatViolation", errors[0][:200])
            )
            return
        try:
            response, after = await handler(frame.payload)
        except ErrorReply as exc:  # a request the handler refuses with a CALLERROR
            await self._reply(ws, ocppj.encode_error(frame.message_id, exc.code,
                                                     exc.description[:200]))
            return
        except Exception as exc:  # a bug here must not kill the connection
            log.exception("handler %s failed", frame.action)
            await self._reply(ws, ocppj.encode_error(frame.message_id, "InternalError", str(exc)))
            return
        if self.response_delay_s:  # delay the answer, not the receive loop
            self._spawn(self._reply_later(ws, frame.message_id, response, after))
            return
        if not self.drop_responses:
            await self._reply(ws, ocppj.encode_result(frame.message_id, response))
        if after is not None:
            self._spawn(after())

    async def _reply_later(
        self,
        ws: ClientConnection,
        message_id: str,
        response: dict,
        after: Callable[[], Awaitable[None]] | None,
    ) -> None:
        await asyncio.sleep(self.response_delay_s)
        if not self.drop_responses:
            await self._reply(ws, ocppj.encode_result(message_id, response))
        if after is not None:
            self._spawn(after())

    async def _reply(self, ws: ClientConnection, text: str) -> None:
        with contextlib.suppress(ConnectionClosed):
            await ws.send(text)

    async def _reconnect_with_backoff(self) -> None:
        low, high = self.spec.reconnect_backoff_s
        delay = low
        while not self._stopping and not self._manual_offline and self._ws is None:
            await self.clock.sleep(delay + self.rng.uniform(0, low))
            try:
                await self._connect()
            except (OSError, ConnectionError, TimeoutError) as exc:
                log.info("%s reconnect failed: %s", self.station_id, exc)
                delay = min(high, delay * 2)
                continue
            except Exception as exc:  # e.g. websockets.InvalidHandshake
                log.info("%s reconnect failed: %s", self.station_id, exc)
                delay = min(high, delay * 2)
                continue
            await self._after_reconnect()

    async def _after_reconnect(self) -> None:
        if self.boot_status != "Accepted" or self.spec.reboot_on_reconnect:
            await self._boot("PowerUp" if self.boot_status != "Accepted" else "Unknown")
        else:
            await self._on_accepted()

    async def _boot(self, reason: str) -> None:
        payload = {
            "reason": reason,
            "chargingStation": {
                "model": self.spec.model,
                "vendorName": self.spec.vendor,
                "serialNumber": self.device_model.value("ChargingStation", "SerialNumber"),
                "firmwareVersion": self.spec.firmware_version,
            },
        }
        response = await self.call("BootNotification", payload)
        self.boot_status = response["status"]
        interval = float(response.get("interval") or 0)
        if self.boot_status == "Accepted":
            if interval > 0:
                self._set_heartbeat_interval(interval)
            self._spawn(self._on_accepted())
        else:
            retry = interval if interval > 0 else self.heartbeat_interval_s
            if self._boot_task is None or self._boot_task.done():
                self._boot_task = self._spawn(self._boot_retry(retry))

    async def _boot_retry(self, interval: float) -> None:
        while not self._stopping and self.boot_status != "Accepted":
            await self.clock.sleep(interval)
            if self.connected and self.boot_status != "Accepted":
                try:
                    await self._boot("PowerUp")
                except (ConnectionError, TimeoutError, CallFailed) as exc:
                    log.info("%s boot retry failed: %s", self.station_id, exc)

    async def _on_accepted(self) -> None:
        """After Accepted (or a reconnect): report connector status, deliver the queue."""
        for evse in self.evses.values():
            try:
                await self._send_status(evse)
            except (ConnectionError, TimeoutError, CallFailed):
                return
        await self._drain_queue()

    def _set_heartbeat_interval(self, seconds: float) -> None:
        self.heartbeat_interval_s = seconds
        self.device_model.put("OCPPCommCtrlr", "HeartbeatInterval", str(int(seconds)))

    async def _heartbeat_loop(self) -> None:
        while not self._stopping:
            interval = self.device_model.number("OCPPCommCtrlr", "HeartbeatInterval")
            await self.clock.sleep(max(1.0, interval))
            if self.connected and self.boot_status == "Accepted":
                try:
                    await self.call("Heartbeat", {})
                except (ConnectionError, TimeoutError, CallFailed) as exc:
                    log.info("%s heartbeat failed: %s", self.station_id, exc)

    async def _reboot(self) -> None:
        """The connection side of a Reset: close, connect again, boot with RemoteReset."""
        self._manual_offline = True
        ws, self._ws = self._ws, None
        if ws is not None:
            await ws.close()
        if self._recv_task is not None:
            with contextlib.suppress(BaseException):
                await self._recv_task
        self._fail_pending(NotConnected("reset"))
        self.boot_status = None
        self._manual_offline = False
        await self._connect()
        await self._boot("RemoteReset")

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    # ------------------------------------------------------------------ offline queue (E13)

    def _enqueue(self, payload: dict) -> None:
        if len(self._queue) >= self.spec.offline_queue_max:
            self._queue.popleft()
        self._queue.append(payload)

    def _kick_sender(self) -> asyncio.Task:
        if self._sender is None or self._sender.done():
            self._sender = self._spawn(self._send_queue())
        return self._sender

    async def _drain_queue(self) -> None:
        """Deliver what queued up while offline (after a reconnect or boot Accepted)."""
        if self._queue:
            await asyncio.wait({self._kick_sender()})

    async def _send_queue(self) -> None:
        """Send the queued TransactionEvents one at a time, oldest first, while connected:
        a later event never overtakes one the CSMS has not yet answered."""
        while self._queue and self.connected and self.boot_status == "Accepted":
            payload = self._queue[0]
            try:
                delivered = await self._deliver(payload)
            finally:
                self._retrying = False
            if not delivered:
                return  # connection lost: it stays first in the queue for the reconnect
            if self._queue and self._queue[0] is payload:
                self._queue.popleft()

    def _transaction_answered(self, payload: dict, response: dict) -> None:
        """What the station does with the CSMS's answer (the station decides; see core)."""

    async def _deliver(self, payload: dict) -> bool:
        """One TransactionEvent with the E13 retries: a CALLERROR or no answer while
        connected is a failure to process; send it again after MessageAttemptInterval x the
        number of attempts so far, up to MessageAttempts in all, then discard it. A lost
        connection is not an attempt: False, and it waits in the queue. True when done."""
        attempt = 0
        while True:
            attempt += 1
            try:
                response = await self.call("TransactionEvent", payload)
                self._transaction_answered(payload, response)
                return True
            except NotConnected:
                return False
            except (TimeoutError, CallFailed) as exc:
                failure = exc
            finally:
                tried = self._first_try.get(id(payload))
                if tried is not None and not tried.done():
                    tried.set_result(None)
            attempts = max(1, int(self.device_model.number("OCPPCommCtrlr", "MessageAttempts")))
            what = (payload["transactionInfo"]["transactionId"], payload["seqNo"])
            if attempt >= attempts:
                self.discarded_messages += 1
                log.warning(
                    "%s TransactionEvent %s discarded after %d attempts: %r",
                    self.station_id, what, attempt, failure,
                )
                return True
            interval = self.device_model.number("OCPPCommCtrlr", "MessageAttemptInterval")
            log.info(
                "%s TransactionEvent %s attempt %d failed (%r); retrying in %.0f s",
                self.station_id, what, attempt, failure, interval * attempt,
            )
            self._retrying = True
            for waiting in self._first_try.values():  # their senders need not wait this out
                if not waiting.done():
                    waiting.set_result(None)
            await self.clock.sleep(interval * attempt)
            if not self.connected:
                return False


async def cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    """Cancel tasks and wait until they are done, re-cancelling any that swallowed it
    (Python 3.11's wait_for can lose a cancellation that races with a result)."""
    current = asyncio.current_task()
    pending = {t for t in tasks if t is not current and not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


def _log_failure(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, (ConnectionError, TimeoutError, CallFailed)):
        log.error("station task failed", exc_info=exc)
