"""A simulated OCPP 2.0.1 charging station: one WebSocket, a device model, EVSEs with meters,
transactions (block E), charging profiles it obeys (block K), offline queueing, and fault
injection for tests.

Nothing here decides smart-charging policy: the station only keeps what the CSMS sets and
lets each EV draw no more than the composite schedule allows.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import itertools
import logging
import random
import uuid
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from simulators import ocppj
from simulators.clock import Clock, SystemClock, to_ocpp
from simulators.device_model import DeviceModel, standard_device_model
from simulators.ev import EV
from simulators.profiles import (
    ChargingProfile,
    Electrical,
    ProfileRules,
    ProfileStore,
    Transaction,
    composite_schedule,
    limit_at,
    next_change,
    validate,
)

log = logging.getLogger(__name__)

MAX_CONTROL_STEP_S = 60.0  # re-evaluate taper and limits at least this often while charging


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


@dataclass
class EvseSpec:
    evse_id: int
    kind: str = "AC"  # "AC" or "DC"
    phases: int = 3
    max_current_a: float = 32.0
    min_current_a: float = 6.0
    voltage_v: float = 230.0
    max_power_w: float | None = None  # DC: required; AC: derived from current and phases

    def __post_init__(self) -> None:
        if self.kind not in ("AC", "DC"):
            raise ValueError("kind must be AC or DC")
        if self.max_power_w is None:
            if self.kind == "DC":
                raise ValueError("a DC EVSE needs max_power_w")
            self.max_power_w = self.max_current_a * self.voltage_v * self.phases


@dataclass
class StationSpec:
    station_id: str
    password: str | None = None
    evses: list[EvseSpec] = field(default_factory=lambda: [EvseSpec(1)])
    vendor: str = "SimCo"
    model: str = "Sim-22"
    serial_number: str | None = None
    firmware_version: str = "1.0.0"
    meter_interval_s: float = 60.0
    heartbeat_interval_s: float = 300.0  # until the CSMS gives one in the boot response
    rate_units: tuple[str, ...] = ("A", "W")
    periods_per_schedule: int = 24
    max_stack_level: int = 8
    max_entries: int = 16
    phases3to1: bool = False
    subprotocols: tuple[str, ...] = ("ocpp2.0.1",)
    call_timeout_s: float = 30.0  # wall-clock seconds to wait for a CALLRESULT
    reconnect_backoff_s: tuple[float, float] = (5.0, 180.0)  # station-clock seconds
    reboot_on_reconnect: bool = False
    ws_ping_interval_s: float | None = None
    offline_queue_max: int = 100_000
    # E13: OCPPCommCtrlr.MessageAttempts / MessageAttemptInterval for TransactionEvent
    tx_message_attempts: int = 3
    tx_message_attempt_interval_s: float = 10.0  # station-clock seconds, x attempt number


@dataclass
class TxState:
    transaction_id: str
    started: datetime
    seq_no: int = 0
    id_token: dict | None = None
    remote_start_id: int | None = None
    charging_state: str = "EVConnected"
    authorized: bool = False
    ended: bool = False


@dataclass
class EvseState:
    spec: EvseSpec
    status: str = "Available"
    operative: bool = True
    ev: EV | None = None
    tx: TxState | None = None
    energy_wh: float = 0.0
    power_w: float = 0.0
    current_a: float = 0.0
    phases_in_use: int = 0
    last_update: datetime | None = None
    pending_remote_start: dict | None = None
    meter_task: asyncio.Task | None = None
    sleeper: asyncio.Task | None = None  # the meter loop's current sleep; cancel to wake it


Handler = Callable[[dict], Awaitable[tuple[dict, Callable[[], Awaitable[None]] | None]]]


class Station:
    def __init__(
        self,
        spec: StationSpec,
        url: str,
        clock: Clock | None = None,
        ssl: Any = None,
        rng: random.Random | None = None,
    ) -> None:
        self.spec = spec
        self.url = url.rstrip("/") + "/" + spec.station_id
        self.clock: Clock = clock or SystemClock()
        self.ssl = ssl
        self.rng = rng or random.Random()
        self.boot_status: str | None = None
        self.heartbeat_interval_s = spec.heartbeat_interval_s
        self.profiles = ProfileStore()
        self.evses: dict[int, EvseState] = {e.evse_id: EvseState(e) for e in spec.evses}
        self.device_model: DeviceModel = standard_device_model(
            station_id=spec.station_id,
            vendor=spec.vendor,
            model=spec.model,
            serial_number=spec.serial_number or f"SN-{spec.station_id}",
            firmware_version=spec.firmware_version,
            evses=[(e.evse_id, e.kind, e.phases, e.max_power_w or 0.0) for e in spec.evses],
            meter_interval_s=spec.meter_interval_s,
            heartbeat_interval_s=spec.heartbeat_interval_s,
            rate_units=spec.rate_units,
            periods_per_schedule=spec.periods_per_schedule,
            max_stack_level=spec.max_stack_level,
            max_entries=spec.max_entries,
            phases3to1=spec.phases3to1,
            password=spec.password,
            tx_message_attempts=spec.tx_message_attempts,
            tx_message_attempt_interval_s=spec.tx_message_attempt_interval_s,
        )
        # fault injection
        self.ignore_profiles = False
        self.drop_responses = False
        self.response_delay_s = 0.0
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
        self._handlers: dict[str, Handler] = {
            "GetVariables": self._on_get_variables,
            "SetVariables": self._on_set_variables,
            "GetBaseReport": self._on_get_base_report,
            "SetChargingProfile": self._on_set_charging_profile,
            "ClearChargingProfile": self._on_clear_charging_profile,
            "GetChargingProfiles": self._on_get_charging_profiles,
            "GetCompositeSchedule": self._on_get_composite_schedule,
            "RequestStartTransaction": self._on_request_start_transaction,
            "RequestStopTransaction": self._on_request_stop_transaction,
            "Reset": self._on_reset,
            "ChangeAvailability": self._on_change_availability,
            "TriggerMessage": self._on_trigger_message,
            "UnlockConnector": self._on_unlock_connector,
            "GetTransactionStatus": self._on_get_transaction_status,
            "ClearCache": self._on_clear_cache,
            "SendLocalList": self._on_send_local_list,
            "GetLocalListVersion": self._on_get_local_list_version,
            "DataTransfer": self._on_data_transfer,
        }
        self._local_list_version = 0

    # ------------------------------------------------------------------ public surface

    @property
    def station_id(self) -> str:
        return self.spec.station_id

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

    async def status(self, evse_id: int, status: str) -> None:
        """StatusNotification for connector 1 of `evse_id` (held until boot is Accepted)."""
        evse = self._evse(evse_id)
        evse.status = status
        self.device_model.put("EVSE", "AvailabilityState", status, evse_id)
        if self.connected and self.boot_status == "Accepted":
            await self._send_status(evse)

    async def plug_in(self, evse_id: int, ev: EV) -> None:
        """Cable plugged in: Occupied, TransactionEvent Started, NotifyEVChargingNeeds."""
        evse = self._evse(evse_id)
        if evse.ev is not None:
            raise RuntimeError(f"EVSE {evse_id} already has an EV")
        self._advance(evse)
        evse.ev = ev
        await self.status(evse_id, "Occupied")
        if evse.tx is None:
            await self._start_transaction(evse, "CablePluggedIn")
        else:  # started by RequestStartTransaction before the cable
            evse.tx.charging_state = self._charging_state(evse, self._draw(evse)[0])
            await self._tx_event(evse, "Updated", "CablePluggedIn")
        if ev.iso15118:
            await self._notify_charging_needs(evse)
        self._recompute_all()

    async def present_token(self, evse_id: int, token: str, token_type: str = "ISO14443") -> str:
        """Authorize an idToken; if Accepted, authorize the transaction and start charging."""
        evse = self._evse(evse_id)
        id_token = {"idToken": token, "type": token_type}
        if self.connected and self.boot_status == "Accepted":
            try:
                response = await self.call("Authorize", {"idToken": id_token})
                status = response["idTokenInfo"]["status"]
            except (NotConnected, TimeoutError):
                status = self._offline_auth()
        else:
            status = self._offline_auth()
        if status != "Accepted":
            return status
        if evse.tx is None:
            await self._start_transaction(evse, "Authorized", id_token=id_token)
        else:
            evse.tx.id_token = id_token
            await self._authorize_transaction(evse, "Authorized")
        return status

    async def unplug(self, evse_id: int) -> None:
        """EV leaves: stop charging, TransactionEvent Ended, StatusNotification Available."""
        evse = self._evse(evse_id)
        self._advance(evse)
        self._set_power(evse, 0.0, 0.0, 0)
        evse.pending_remote_start = None
        if evse.tx is not None:
            await self._end_transaction(evse, "EVDeparted", "EVDisconnected", cable_gone=True)
        evse.ev = None
        self._recompute_all()  # a station-wide limit is shared by fewer EVs now
        await self.status(evse_id, "Available" if evse.operative else "Unavailable")

    def transaction_id(self, evse_id: int) -> str | None:
        tx = self._evse(evse_id).tx
        return tx.transaction_id if tx is not None else None

    def energy_wh(self, evse_id: int) -> float:
        evse = self._evse(evse_id)
        self._advance(evse)
        return evse.energy_wh

    def power_w(self, evse_id: int) -> float:
        evse = self._evse(evse_id)
        self._advance(evse)
        return evse.power_w

    def soc(self, evse_id: int) -> float | None:
        ev = self._evse(evse_id).ev
        return None if ev is None else ev.soc

    def ev(self, evse_id: int) -> EV | None:
        return self._evse(evse_id).ev

    def composite_limit(self, evse_id: int) -> tuple[float, str] | None:
        """The composite limit now, in the unit of the profile that sets it."""
        evse = self._evse(evse_id)
        now = self.clock.now()
        self.profiles.expire(now)
        unit = self._natural_unit(evse, now)
        if unit is None:
            return None
        got = limit_at(self.profiles, evse_id, now, unit, self._electrical(evse), self._tx(evse))
        return None if got is None else (got[0], unit)

    def limit_w(self, evse_id: int) -> float:
        """What the EVSE offers now in W: the composite limit capped by the hardware."""
        evse = self._evse(evse_id)
        hardware = evse.spec.max_power_w or 0.0
        got = limit_at(
            self.profiles, evse_id, self.clock.now(), "W", self._electrical(evse), self._tx(evse)
        )
        return hardware if got is None else min(hardware, got[0])

    def meter_jump(self, evse_id: int, energy_wh: float) -> None:
        """Fault injection: the energy register jumps by `energy_wh`."""
        evse = self._evse(evse_id)
        self._advance(evse)
        evse.energy_wh += energy_wh

    # ------------------------------------------------------------------ connection

    async def _connect(self) -> None:
        headers = {}
        if self.spec.password is not None:
            raw = f"{self.station_id}:{self.spec.password}".encode()
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
        if handler is None:
            await self._reply(
                ws,
                ocppj.encode_error(
                    frame.message_id, "NotImplemented", f"{frame.action} not implemented"
                ),
            )
            return
        errors = ocppj.schema_errors(frame.action, frame.payload)
        if errors:
            await self._reply(
                ws, ocppj.encode_error(frame.message_id, "FormatViolation", errors[0][:200])
            )
            return
        try:
            response, after = await handler(frame.payload)
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

    def _start_aligned_meter(self) -> None:
        """Run the aligned meter loop while AlignedDataCtrlr.Interval > 0 (no task when it
        is 0, the default: thousands of idle stations must cost nothing)."""
        running = self._aligned_task is not None and not self._aligned_task.done()
        if not running and self.device_model.number("AlignedDataCtrlr", "Interval") > 0:
            self._aligned_task = self._spawn(self._aligned_meter_loop())

    async def _aligned_meter_loop(self) -> None:
        """Clock-aligned MeterValues, as a station reports its meters on the quarter hour
        whether or not a transaction runs."""
        while not self._stopping:
            interval = self.device_model.number("AlignedDataCtrlr", "Interval")
            if interval <= 0:
                return
            now = self.clock.now().timestamp()
            await self.clock.sleep(interval - now % interval or interval)
            if not (self.connected and self.boot_status == "Accepted"):
                continue
            for evse in self.evses.values():
                self._advance(evse)
                try:
                    await self.call("MeterValues", {
                        "evseId": evse.spec.evse_id,
                        "meterValue": [self._meter_value(evse, "Sample.Clock")],
                    })
                except (ConnectionError, TimeoutError, CallFailed) as exc:
                    log.info("%s aligned meter values failed: %s", self.station_id, exc)

    def _spawn(self, coro: Awaitable[Any]) -> asyncio.Task:
        task = asyncio.ensure_future(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        task.add_done_callback(_log_failure)
        return task

    # ------------------------------------------------------------------ messages out

    async def _send_status(self, evse: EvseState) -> None:
        await self.call(
            "StatusNotification",
            {
                "timestamp": to_ocpp(self.clock.now()),
                "connectorStatus": evse.status,
                "evseId": evse.spec.evse_id,
                "connectorId": 1,
            },
        )

    def _offline_auth(self) -> str:
        if self.device_model.flag("AuthCtrlr", "LocalAuthorizeOffline"):
            return "Accepted"
        return "Invalid"

    async def _start_transaction(
        self,
        evse: EvseState,
        trigger: str,
        id_token: dict | None = None,
        remote_start_id: int | None = None,
    ) -> None:
        now = self.clock.now()
        evse.tx = TxState(
            transaction_id=uuid.uuid4().hex,
            started=now,
            id_token=id_token,
            remote_start_id=remote_start_id,
            charging_state="EVConnected" if evse.ev is not None else "Idle",
            authorized=id_token is not None,
        )
        evse.last_update = now
        if evse.pending_remote_start is not None:
            self._install_remote_profile(evse)
        tx = evse.tx
        tx.charging_state = self._charging_state(evse, self._draw(evse)[0])
        await self._tx_event(evse, "Started", trigger, context="Transaction.Begin")
        evse.meter_task = self._spawn(self._meter_loop(evse, tx))
        self._recompute_all()

    async def _authorize_transaction(self, evse: EvseState, trigger: str) -> None:
        tx = evse.tx
        assert tx is not None
        tx.authorized = True
        self._advance(evse)
        state = self._charging_state(evse, *self._draw(evse))
        tx.charging_state = state
        await self._tx_event(evse, "Updated", trigger)
        self._recompute_all()

    async def _end_transaction(
        self, evse: EvseState, trigger: str, stopped_reason: str, cable_gone: bool = False
    ) -> None:
        tx = evse.tx
        if tx is None or tx.ended:
            return
        self._advance(evse)
        tx.ended = True
        self._set_power(evse, 0.0, 0.0, 0)
        tx.charging_state = "Idle" if cable_gone or evse.ev is None else "EVConnected"
        _wake(evse)  # the meter loop sees the end and returns
        await self._tx_event(
            evse, "Ended", trigger, context="Transaction.End", stopped_reason=stopped_reason
        )
        self.profiles.end_transaction(tx.transaction_id)
        evse.tx = None

    def _meter_value(self, evse: EvseState, context: str) -> dict:
        sampled = [
            {
                "value": round(evse.energy_wh, 1),
                "context": context,
                "measurand": "Energy.Active.Import.Register",
                "unitOfMeasure": {"unit": "Wh"},
            },
            {
                "value": round(evse.power_w, 1),
                "context": context,
                "measurand": "Power.Active.Import",
                "unitOfMeasure": {"unit": "W"},
            },
        ]
        if evse.spec.kind == "AC":
            for i in range(1, evse.spec.phases + 1):
                amps = evse.current_a if i <= evse.phases_in_use else 0.0
                sampled.append(
                    {
                        "value": round(amps, 2),
                        "context": context,
                        "measurand": "Current.Import",
                        "phase": f"L{i}",
                        "unitOfMeasure": {"unit": "A"},
                    }
                )
        ev = evse.ev
        if ev is not None and (evse.spec.kind == "DC" or ev.iso15118):
            sampled.append(
                {
                    "value": round(ev.soc * 100.0, 1),
                    "context": context,
                    "measurand": "SoC",
                    "unitOfMeasure": {"unit": "Percent"},
                }
            )
        return {"timestamp": to_ocpp(self.clock.now()), "sampledValue": sampled}

    async def _tx_event(
        self,
        evse: EvseState,
        event_type: str,
        trigger: str,
        context: str = "Sample.Periodic",
        stopped_reason: str | None = None,
        with_meter: bool = True,
    ) -> None:
        """Queue one TransactionEvent with its seqNo and have it sent in order (E13)."""
        tx = evse.tx
        assert tx is not None
        info: dict = {"transactionId": tx.transaction_id, "chargingState": tx.charging_state}
        if stopped_reason is not None:
            info["stoppedReason"] = stopped_reason
        if tx.remote_start_id is not None:
            info["remoteStartId"] = tx.remote_start_id
        payload: dict = {
            "eventType": event_type,
            "timestamp": to_ocpp(self.clock.now()),
            "triggerReason": trigger,
            "seqNo": tx.seq_no,
            "transactionInfo": info,
            "evse": {"id": evse.spec.evse_id, "connectorId": 1},
        }
        tx.seq_no += 1
        if tx.id_token is not None and (
            event_type == "Started" or trigger in ("Authorized", "RemoteStart")
        ):
            payload["idToken"] = tx.id_token
        if with_meter:
            payload["meterValue"] = [self._meter_value(evse, context)]
        if not self.connected:
            payload["offline"] = True
        self._enqueue(payload)
        if not (self.connected and self.boot_status == "Accepted"):
            return  # delivered in order after the reconnect (or boot Accepted)
        if self._retrying:  # an earlier event waits to be sent again: this one follows it
            self._kick_sender()
            return
        # return once this event had its first attempt, as a station that sends it at once
        # would; retries go on in the background, in order
        tried: asyncio.Future = asyncio.get_running_loop().create_future()
        self._first_try[id(payload)] = tried
        try:
            await asyncio.wait({tried, self._kick_sender()}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._first_try.pop(id(payload), None)

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

    async def _deliver(self, payload: dict) -> bool:
        """One TransactionEvent with the E13 retries: a CALLERROR or no answer while
        connected is a failure to process; send it again after MessageAttemptInterval x the
        number of attempts so far, up to MessageAttempts in all, then discard it. A lost
        connection is not an attempt: False, and it waits in the queue. True when done."""
        attempt = 0
        while True:
            attempt += 1
            try:
                await self.call("TransactionEvent", payload)
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

    async def _notify_charging_needs(self, evse: EvseState) -> None:
        ev = evse.ev
        assert ev is not None
        needs: dict
        if evse.spec.kind == "DC":
            needs = {
                "requestedEnergyTransfer": "DC",
                "dcChargingParameters": {
                    "evMaxCurrent": int(ev.max_dc_power_w / 400),
                    "evMaxVoltage": 500,
                    "energyAmount": int(ev.energy_needed_wh),
                    "evMaxPower": int(ev.max_dc_power_w),
                    "stateOfCharge": int(ev.soc * 100),
                    "evEnergyCapacity": int(ev.battery_kwh * 1000),
                },
            }
        else:
            phases = min(ev.ac_phases, evse.spec.phases)
            needs = {
                "requestedEnergyTransfer": {1: "AC_single_phase", 2: "AC_two_phase"}.get(
                    phases, "AC_three_phase"
                ),
                "acChargingParameters": {
                    "energyAmount": int(ev.energy_needed_wh),
                    "evMinCurrent": int(evse.spec.min_current_a),
                    "evMaxCurrent": int(ev.max_ac_current_a),
                    "evMaxVoltage": int(evse.spec.voltage_v),
                },
            }
        if ev.departure is not None:
            needs["departureTime"] = to_ocpp(ev.departure)
        try:
            await self.call(
                "NotifyEVChargingNeeds", {"evseId": evse.spec.evse_id, "chargingNeeds": needs}
            )
        except (ConnectionError, TimeoutError, CallFailed) as exc:
            log.info("%s NotifyEVChargingNeeds failed: %s", self.station_id, exc)

    # ------------------------------------------------------------------ physics

    def _evse(self, evse_id: int) -> EvseState:
        try:
            return self.evses[evse_id]
        except KeyError:
            raise ValueError(f"{self.station_id} has no EVSE {evse_id}") from None

    def _tx(self, evse: EvseState) -> Transaction | None:
        tx = evse.tx
        return None if tx is None else Transaction(tx.transaction_id, tx.started)

    def _electrical(self, evse: EvseState) -> Electrical:
        spec = evse.spec
        phases = spec.phases
        if spec.kind == "AC" and evse.ev is not None:
            phases = min(phases, evse.ev.ac_phases)
        return Electrical(spec.kind, phases, spec.voltage_v)

    def _natural_unit(self, evse: EvseState, now: datetime) -> str | None:
        """Unit of the profile that governs this EVSE now (Tx level first, then caps)."""
        tx = self._tx(evse)
        order = (
            "TxProfile",
            "TxDefaultProfile",
            "ChargingStationMaxProfile",
            "ChargingStationExternalConstraints",
        )
        for purpose in order:
            for entry in self.profiles:
                p = entry.profile
                if p.purpose != purpose:
                    continue
                if limit_at([entry], evse.spec.evse_id, now, "W", self._electrical(evse), tx):
                    return p.schedule.charging_rate_unit
        return None

    def _draw(self, evse: EvseState) -> tuple[float, float, int]:
        """(power W, current A per phase, phases) the EV draws under the composite limit."""
        ev = evse.ev
        tx = evse.tx
        spec = evse.spec
        if ev is None or tx is None or not tx.authorized or tx.ended or not evse.operative:
            return 0.0, 0.0, 0
        now = self.clock.now()
        electrical = self._electrical(evse)
        if spec.kind == "AC":
            offered = spec.max_current_a
            if not self.ignore_profiles:
                got = limit_at(self.profiles, spec.evse_id, now, "A", electrical, self._tx(evse))
                if got is not None:
                    offered = min(offered, got[0])
                    if got[1] is not None:
                        electrical = Electrical(
                            "AC", min(electrical.phases, got[1]), spec.voltage_v
                        )
            share_w = self._station_share_w(now)
            if share_w is not None:
                offered = min(offered, share_w / (spec.voltage_v * electrical.phases))
            if offered < spec.min_current_a:
                offered = 0.0  # IEC 61851: below 6 A the EVSE pauses
            amps = ev.ac_current_a(offered)
            phases = electrical.phases
            return amps * spec.voltage_v * phases, amps, phases
        offered_w = spec.max_power_w or 0.0
        if not self.ignore_profiles:
            got = limit_at(self.profiles, spec.evse_id, now, "W", electrical, self._tx(evse))
            if got is not None:
                offered_w = min(offered_w, got[0])
        share_w = self._station_share_w(now)
        if share_w is not None:
            offered_w = min(offered_w, share_w)
        watts = ev.dc_power_w(offered_w)
        return watts, watts / 400.0, 1

    def _station_share_w(self, now: datetime) -> float | None:
        """Equal share of the station-wide limit (max profile, external constraints) for each
        EVSE that is charging, so that together they stay under it; None if no such limit."""
        if self.ignore_profiles or len(self.evses) < 2:
            return None
        electrical = Electrical(
            "AC" if self._all_ac() else "DC",
            max(e.phases for e in self.spec.evses),
            self.spec.evses[0].voltage_v,
        )
        got = limit_at(self.profiles, 0, now, "W", electrical)
        if got is None:
            return None
        charging = sum(
            1
            for e in self.evses.values()
            if e.ev is not None and e.tx is not None and e.tx.authorized and not e.tx.ended
        )
        return got[0] / max(1, charging)

    def _advance(self, evse: EvseState) -> None:
        """Integrate energy at the current power up to now."""
        now = self.clock.now()
        last = evse.last_update
        evse.last_update = now
        if last is None or evse.power_w <= 0:
            return
        dt = (now - last).total_seconds()
        if dt <= 0:
            return
        energy = evse.power_w * dt / 3600.0
        if evse.ev is not None:
            energy = min(energy, evse.ev.energy_needed_wh)
            evse.ev.charge(energy)
        evse.energy_wh += energy

    def _set_power(self, evse: EvseState, watts: float, amps: float, phases: int) -> None:
        evse.power_w = watts
        evse.current_a = amps
        evse.phases_in_use = phases

    def _charging_state(self, evse: EvseState, watts: float, *_: Any) -> str:
        ev = evse.ev
        tx = evse.tx
        if ev is None:
            return "Idle"
        if tx is None or not tx.authorized:
            return "EVConnected"
        if watts > 0:
            return "Charging"
        if ev.satisfied:
            return "SuspendedEV"
        return "SuspendedEVSE"

    def _recompute(self, evse: EvseState) -> None:
        """Bring the meter up to now and set the power for the limits in force now."""
        self._advance(evse)
        watts, amps, phases = self._draw(evse)
        old = evse.power_w
        self._set_power(evse, watts, amps, phases)
        tx = evse.tx
        if tx is not None and not tx.ended:
            state = self._charging_state(evse, watts)
            if state != tx.charging_state:
                tx.charging_state = state
                self._spawn(self._tx_event(evse, "Updated", "ChargingStateChanged"))
            elif state == "Charging" and abs(watts - old) > 0.1 * max(old, 1.0):
                pass  # the next periodic sample shows the new rate
        _wake(evse)

    async def _meter_loop(self, evse: EvseState, tx: TxState) -> None:
        """While `tx` runs: follow the schedule, send periodic meter values."""
        next_sample = self.clock.now() + timedelta(seconds=self._meter_interval())
        while not tx.ended and not self._stopping:
            now = self.clock.now()
            wake_at = min(next_sample, now + timedelta(seconds=MAX_CONTROL_STEP_S))
            change = next_change(
                self.profiles, evse.spec.evse_id, now, MAX_CONTROL_STEP_S, self._tx(evse)
            )
            if change is not None:
                wake_at = min(wake_at, change)
            await self._sleep_until(evse, wake_at)
            if tx.ended:
                return
            self.profiles.expire(self.clock.now())
            self._recompute(evse)
            now = self.clock.now()
            if now >= next_sample:
                interval = self._meter_interval()
                next_sample += timedelta(seconds=interval)
                if next_sample <= now:
                    next_sample = now + timedelta(seconds=interval)
                # sent aside: the power control above must not wait for the CSMS's answer
                # (a slow round trip would make the EVSE miss a schedule step)
                self._spawn(self._periodic_sample(evse, tx))

    async def _periodic_sample(self, evse: EvseState, tx: TxState) -> None:
        if evse.tx is tx and not tx.ended:
            await self._tx_event(evse, "Updated", "MeterValuePeriodic")

    def _meter_interval(self) -> float:
        return max(1.0, self.device_model.number("SampledDataCtrlr", "TxUpdatedInterval"))

    async def _sleep_until(self, evse: EvseState, t: datetime) -> None:
        seconds = (t - self.clock.now()).total_seconds()
        if seconds <= 0:
            return
        sleeper = asyncio.ensure_future(self.clock.sleep(seconds))
        evse.sleeper = sleeper
        try:
            await asyncio.wait((sleeper,))  # returns early when _wake cancels the sleep
        finally:
            evse.sleeper = None
            sleeper.cancel()

    def _recompute_all(self) -> None:
        for evse in self.evses.values():
            self._recompute(evse)

    # ------------------------------------------------------------------ CSMS-initiated calls

    async def _on_get_variables(self, req: dict):
        results = [self.device_model.get_variable(r) for r in req["getVariableData"]]
        return {"getVariableResult": results}, None

    async def _on_set_variables(self, req: dict):
        results = [self.device_model.set_variable(r) for r in req["setVariableData"]]
        self._start_aligned_meter()
        return {"setVariableResult": results}, None

    async def _on_get_base_report(self, req: dict):
        base = req["reportBase"]
        request_id = req["requestId"]
        data = self.device_model.report(base)
        if not data:
            return {"status": "EmptyResultSet"}, None
        per_message = int(self.device_model.number("DeviceDataCtrlr", "ItemsPerMessageGetReport"))

        async def send_report() -> None:
            generated = to_ocpp(self.clock.now())
            chunks = [data[i : i + per_message] for i in range(0, len(data), per_message)]
            for seq, chunk in enumerate(chunks):
                payload = {
                    "requestId": request_id,
                    "generatedAt": generated,
                    "seqNo": seq,
                    "tbc": seq < len(chunks) - 1,
                    "reportData": chunk,
                }
                await self.call("NotifyReport", payload)

        return {"status": "Accepted"}, send_report

    def _rules(self) -> ProfileRules:
        dm = self.device_model
        return ProfileRules(
            rate_units=tuple(dm.value("SmartChargingCtrlr", "RateUnit").split(",")),
            periods_per_schedule=int(dm.number("SmartChargingCtrlr", "PeriodsPerSchedule")),
            max_stack_level=int(dm.number("SmartChargingCtrlr", "ProfileStackLevel")),
            max_entries=int(dm.number("SmartChargingCtrlr", "Entries")),
            phases3to1=dm.flag("SmartChargingCtrlr", "Phases3to1"),
        )

    async def _on_set_charging_profile(self, req: dict):
        evse_id = req["evseId"]
        try:
            profile = ChargingProfile.from_ocpp(req["chargingProfile"])
        except (KeyError, ValueError, TypeError) as exc:
            return _rejected("InvalidProfile", str(exc)), None
        if not self.device_model.flag("SmartChargingCtrlr", "Enabled"):
            return _rejected("NotEnabled", "SmartChargingCtrlr.Enabled is false"), None
        now = self.clock.now()
        self.profiles.expire(now)
        rejection = validate(
            profile,
            evse_id,
            evse_ids=self.evses.keys(),
            transactions={e.spec.evse_id: e.tx.transaction_id for e in self.evses.values() if e.tx},
            installed=self.profiles,
            rules=self._rules(),
            now=now,
        )
        if rejection is not None:
            return _rejected(rejection.reason_code, rejection.additional_info), None
        self.profiles.install(evse_id, profile)
        self._recompute_all()
        return {"status": "Accepted"}, None

    async def _on_clear_charging_profile(self, req: dict):
        criteria = req.get("chargingProfileCriteria") or {}
        cleared = self.profiles.clear(
            profile_id=req.get("chargingProfileId"),
            evse_id=criteria.get("evseId"),
            purpose=criteria.get("chargingProfilePurpose"),
            stack_level=criteria.get("stackLevel"),
        )
        self._recompute_all()
        return {"status": "Accepted" if cleared else "Unknown"}, None

    async def _on_get_charging_profiles(self, req: dict):
        crit = req.get("chargingProfile") or {}
        self.profiles.expire(self.clock.now())
        found = self.profiles.select(
            evse_id=req.get("evseId"),
            ids=crit.get("chargingProfileId"),
            purpose=crit.get("chargingProfilePurpose"),
            stack_level=crit.get("stackLevel"),
            sources=crit.get("chargingLimitSource"),
        )
        if not found:
            return {"status": "NoProfiles"}, None
        groups: dict[tuple[int, str], list] = {}
        for e in found:
            groups.setdefault((e.evse_id, e.source), []).append(e.profile.to_ocpp())
        request_id = req["requestId"]

        async def report() -> None:
            items = list(groups.items())
            for i, ((evse_id, source), profiles) in enumerate(items):
                await self.call(
                    "ReportChargingProfiles",
                    {
                        "requestId": request_id,
                        "chargingLimitSource": source,
                        "evseId": evse_id,
                        "chargingProfile": profiles,
                        "tbc": i < len(items) - 1,
                    },
                )

        return {"status": "Accepted"}, report

    async def _on_get_composite_schedule(self, req: dict):
        evse_id = req["evseId"]
        if evse_id != 0 and evse_id not in self.evses:
            return _rejected("UnknownEVSE", f"no EVSE {evse_id}"), None
        unit = req.get("chargingRateUnit") or ("A" if self._all_ac() else "W")
        if unit not in self._rules().rate_units:
            return _rejected("UnsupportedRateUnit", unit), None
        now = self.clock.now()
        self.profiles.expire(now)
        if evse_id == 0:
            electrical = Electrical(
                "AC" if self._all_ac() else "DC", max(e.phases for e in self.spec.evses), 230.0
            )
            total_w = sum(e.max_power_w or 0.0 for e in self.spec.evses)
            default = electrical.to_unit(total_w, "W", unit, None)
            tx = None
        else:
            evse = self.evses[evse_id]
            electrical = self._electrical(evse)
            default = electrical.to_unit(evse.spec.max_power_w or 0.0, "W", unit, None)
            tx = self._tx(evse)
        schedule = composite_schedule(
            self.profiles,
            evse_id,
            now,
            int(req["duration"]),
            unit,
            electrical,
            tx,
            default_limit=round(default, 1),
        )
        return {"status": "Accepted", "schedule": schedule.to_ocpp()}, None

    def _all_ac(self) -> bool:
        return all(e.kind == "AC" for e in self.spec.evses)

    async def _on_request_start_transaction(self, req: dict):
        evse_id = req.get("evseId")
        if evse_id is None:
            free = [e for e in self.evses.values() if e.operative and e.tx is None]
            occupied = [e for e in free if e.ev is not None]
            pick = (occupied or free or [None])[0]
            if pick is None:
                return {"status": "Rejected"}, None
            evse_id = pick.spec.evse_id
        evse = self.evses.get(evse_id)
        if evse is None or not evse.operative:
            return {"status": "Rejected"}, None
        if evse.tx is not None and evse.tx.authorized:
            return {"status": "Rejected"}, None
        profile = req.get("chargingProfile")
        if profile is not None and profile.get("chargingProfilePurpose") != "TxProfile":
            return {"status": "Rejected"}, None
        evse.pending_remote_start = req
        response: dict = {"status": "Accepted"}
        if evse.tx is not None:
            response["transactionId"] = evse.tx.transaction_id

        async def start() -> None:
            tx = evse.tx
            if tx is None:
                await self._start_transaction(
                    evse,
                    "RemoteStart",
                    id_token=req["idToken"],
                    remote_start_id=req["remoteStartId"],
                )
            else:
                tx.id_token = req["idToken"]
                tx.remote_start_id = req["remoteStartId"]
                self._install_remote_profile(evse)
                await self._authorize_transaction(evse, "RemoteStart")
            evse.pending_remote_start = None

        return response, start

    def _install_remote_profile(self, evse: EvseState) -> None:
        req = evse.pending_remote_start or {}
        data = req.get("chargingProfile")
        if data is None or evse.tx is None:
            return
        try:
            profile = ChargingProfile.from_ocpp({**data, "transactionId": evse.tx.transaction_id})
        except (KeyError, ValueError, TypeError):
            return
        rejection = validate(
            profile,
            evse.spec.evse_id,
            evse_ids=self.evses.keys(),
            transactions={evse.spec.evse_id: evse.tx.transaction_id},
            installed=self.profiles,
            rules=self._rules(),
            now=self.clock.now(),
        )
        if rejection is None:
            self.profiles.install(evse.spec.evse_id, profile)

    async def _on_request_stop_transaction(self, req: dict):
        tx_id = req["transactionId"]
        for evse in self.evses.values():
            if evse.tx is not None and evse.tx.transaction_id == tx_id and not evse.tx.ended:
                return {"status": "Accepted"}, lambda e=evse: self._end_transaction(
                    e, "RemoteStop", "Remote"
                )
        return {"status": "Rejected"}, None

    async def _on_reset(self, req: dict):
        busy = any(e.tx is not None for e in self.evses.values())
        if req["type"] == "OnIdle" and busy:
            return {"status": "Scheduled"}, None

        async def reset() -> None:
            for evse in self.evses.values():
                if evse.tx is not None:
                    await self._end_transaction(evse, "ResetCommand", "ImmediateReset")
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

        return {"status": "Accepted"}, reset

    async def _on_change_availability(self, req: dict):
        operative = req["operationalStatus"] == "Operative"
        evse_ref = req.get("evse")
        targets = (
            [self.evses[evse_ref["id"]]]
            if evse_ref and evse_ref.get("id") in self.evses
            else list(self.evses.values())
            if not evse_ref or evse_ref.get("id") == 0
            else []
        )
        if not targets:
            return _rejected("UnknownEVSE", "no such EVSE", status="Rejected"), None
        scheduled = not operative and any(e.tx is not None for e in targets)
        for e in targets:
            e.operative = operative

        async def announce() -> None:
            for e in targets:
                if e.tx is None:
                    new = "Available" if operative else "Unavailable"
                    if e.ev is not None and operative:
                        new = "Occupied"
                    await self.status(e.spec.evse_id, new)

        return {"status": "Scheduled" if scheduled else "Accepted"}, announce

    async def _on_trigger_message(self, req: dict):
        what = req["requestedMessage"]
        evse_ref = req.get("evse") or {}
        evse_id = evse_ref.get("id")
        if evse_id is not None and evse_id not in self.evses:
            return {"status": "Rejected"}, None
        targets = [self.evses[evse_id]] if evse_id else list(self.evses.values())

        async def boot() -> None:
            await self._boot("Triggered")

        async def heartbeat() -> None:
            await self.call("Heartbeat", {})

        async def status() -> None:
            for e in targets:
                await self._send_status(e)

        async def meter() -> None:
            for e in targets:
                self._advance(e)
                await self.call(
                    "MeterValues",
                    {"evseId": e.spec.evse_id, "meterValue": [self._meter_value(e, "Trigger")]},
                )

        async def tx_event() -> None:
            for e in targets:
                if e.tx is not None:
                    self._advance(e)
                    await self._tx_event(e, "Updated", "Trigger", context="Trigger")

        actions = {
            "BootNotification": boot,
            "Heartbeat": heartbeat,
            "StatusNotification": status,
            "MeterValues": meter,
            "TransactionEvent": tx_event,
        }
        if what not in actions:
            return {"status": "NotImplemented"}, None
        if what == "BootNotification" and self.boot_status == "Accepted":
            return {"status": "Rejected"}, None
        return {"status": "Accepted"}, actions[what]

    async def _on_unlock_connector(self, req: dict):
        evse = self.evses.get(req["evseId"])
        if evse is None or req["connectorId"] != 1:
            return {"status": "UnknownConnector"}, None
        if evse.tx is not None and evse.tx.authorized:
            return {"status": "OngoingAuthorizedTransaction"}, None
        return {"status": "Unlocked"}, None

    async def _on_get_transaction_status(self, req: dict):
        tx_id = req.get("transactionId")
        if tx_id is None:
            return {"messagesInQueue": bool(self._queue)}, None
        ongoing = any(
            e.tx is not None and e.tx.transaction_id == tx_id for e in self.evses.values()
        )
        queued = any(p["transactionInfo"]["transactionId"] == tx_id for p in self._queue)
        return {"ongoingIndicator": ongoing, "messagesInQueue": queued}, None

    async def _on_clear_cache(self, req: dict):
        return {"status": "Accepted"}, None

    async def _on_send_local_list(self, req: dict):
        self._local_list_version = req["versionNumber"]
        return {"status": "Accepted"}, None

    async def _on_get_local_list_version(self, req: dict):
        return {"versionNumber": self._local_list_version}, None

    async def _on_data_transfer(self, req: dict):
        return {"status": "UnknownVendorId"}, None


def _wake(evse: EvseState) -> None:
    sleeper = evse.sleeper
    if sleeper is not None and not sleeper.done() and sleeper is not asyncio.current_task():
        sleeper.cancel()


async def cancel_and_wait(tasks: list[asyncio.Task]) -> None:
    """Cancel tasks and wait until they are done, re-cancelling any that swallowed it
    (Python 3.11's wait_for can lose a cancellation that races with a result)."""
    current = asyncio.current_task()
    pending = {t for t in tasks if t is not current and not t.done()}
    while pending:
        for t in pending:
            t.cancel()
        _, pending = await asyncio.wait(pending, timeout=0.5)


def _rejected(reason_code: str, info: str, status: str = "Rejected") -> dict:
    return {
        "status": status,
        "statusInfo": {"reasonCode": reason_code, "additionalInfo": info[:512]},
    }


def _log_failure(task: asyncio.Task) -> None:
    if task.cancelled():
        return
    exc = task.exception()
    if exc is not None and not isinstance(exc, (ConnectionError, TimeoutError, CallFailed)):
        log.error("station task failed", exc_info=exc)
