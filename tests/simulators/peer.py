"""A scripted CSMS peer for the station's socket tests: a test double of the other end.

It accepts one station at a time over a real WebSocket, answers the station's CALLs with
defaults a test can override, sends CSMS-initiated CALLs on demand, and checks every
payload that crosses the wire against the JSON schemas of its OCPP version (2.0.1 or 2.1).
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

from simulators.ocppj import SUBPROTOCOL, schema_errors, version_of

Answer = dict | Callable[[dict], dict]


class ScriptedCsms:
    def __init__(
        self,
        password: str | None = None,
        boot_status: str = "Accepted",
        interval: int = 300,
        version: str = "2.0.1",
        also: tuple[str, ...] = (),
    ) -> None:
        """`version` is the OCPP version it prefers; `also` more it accepts (each
        connection's payloads are checked against the version its station chose)."""
        self.version = version
        self.versions = (version, *also)
        self.by_station: dict[str, ServerConnection] = {}  # the latest socket per station
        self.password = password
        self.boot_status = boot_status
        self.interval = interval
        self.answers: dict[str, Answer] = {}
        self.received: list[tuple[str, dict]] = []  # station CALLs in arrival order
        self.schema_problems: list[str] = []
        self.ws: ServerConnection | None = None
        self.paths: list[str] = []
        self.connections = 0
        self._ids = itertools.count(1)
        self._pending: dict[str, tuple[str, asyncio.Future]] = {}
        self._arrived = asyncio.Condition()
        self._server = None
        self.url = ""

    async def start(self) -> str:
        self._server = await serve(
            self._handle,
            "127.0.0.1",
            0,
            subprotocols=[SUBPROTOCOL[v] for v in self.versions],  # type: ignore[misc]
            process_request=self._check_auth,
            compression=None,
        )
        port = self._server.sockets[0].getsockname()[1]
        self.url = f"ws://127.0.0.1:{port}/ocpp"
        return self.url

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def _check_auth(self, connection, request):
        if self.password is None:
            return None
        station_id = request.path.rsplit("/", 1)[-1]
        expected = base64.b64encode(f"{station_id}:{self.password}".encode()).decode()
        if request.headers.get("Authorization") != f"Basic {expected}":
            return connection.respond(401, "bad credentials\n")
        return None

    async def _handle(self, ws: ServerConnection) -> None:
        self.ws = ws
        self.connections += 1
        self.paths.append(ws.request.path)
        self.by_station[ws.request.path.rsplit("/", 1)[-1]] = ws
        try:
            async for text in ws:
                try:
                    msg = json.loads(text)
                except ValueError:
                    await ws.send(json.dumps([4, "-1", "RpcFrameworkError", "not JSON", {}]))
                    continue
                await self._on_message(ws, msg)
        except ConnectionClosed:
            pass
        finally:
            if self.ws is ws:
                self.ws = None

    async def _on_message(self, ws: ServerConnection, msg: list) -> None:
        if msg[0] == 2:
            _, message_id, action, payload = msg
            for problem in schema_errors(action, payload, version=_version(ws)):
                self.schema_problems.append(f"{action} request: {problem}")
            async with self._arrived:
                self.received.append((action, payload))
                self._arrived.notify_all()
            answer = self.answers.get(action) or self._default(action)
            if answer is None:
                await ws.send(json.dumps([4, message_id, "NotImplemented", "", {}]))
                return
            response = answer(payload) if callable(answer) else answer
            if response is None:  # stay silent
                return
            if isinstance(response, tuple):  # ("error", code)
                await ws.send(json.dumps([4, message_id, response[1], "", {}]))
                return
            await ws.send(json.dumps([3, message_id, response]))
        elif msg[0] in (3, 4):
            action, fut = self._pending.pop(msg[1], ("", None))
            if fut is None:
                return
            if msg[0] == 3:
                for problem in schema_errors(action, msg[2], response=True, version=_version(ws)):
                    self.schema_problems.append(f"{action} response: {problem}")
                fut.set_result(("result", msg[2]))
            else:
                fut.set_result(("error", msg[2]))

    def _default(self, action: str) -> Answer | None:
        now = datetime.now(UTC).isoformat()
        defaults: dict[str, Answer] = {
            "BootNotification": lambda p: {
                "currentTime": now,
                "interval": self.interval,
                "status": self.boot_status,
            },
            "Heartbeat": {"currentTime": now},
            "StatusNotification": {},
            "Authorize": lambda p: {
                "idTokenInfo": {
                    "status": "Accepted" if p["idToken"]["idToken"] != "BLOCKED" else "Blocked"
                }
            },
            "TransactionEvent": {},
            "MeterValues": {},
            "NotifyReport": {},
            "ReportChargingProfiles": {},
            "NotifyEVChargingNeeds": {"status": "Accepted"},
        }
        return defaults.get(action)

    async def call(
        self, action: str, payload: dict, timeout: float = 5.0, station_id: str | None = None
    ) -> tuple[str, Any]:
        """Send a CSMS-initiated CALL (to the latest station, or `station_id`);
        ('result', payload) or ('error', code)."""
        ws = self.ws if station_id is None else self.by_station.get(station_id)
        assert ws is not None, "no station connected"
        message_id = f"csms-{next(self._ids)}"
        fut: asyncio.Future = asyncio.get_running_loop().create_future()
        self._pending[message_id] = (action, fut)
        await ws.send(json.dumps([2, message_id, action, payload]))
        return await asyncio.wait_for(fut, timeout)

    async def result(self, action: str, payload: dict, station_id: str | None = None) -> dict:
        kind, body = await self.call(action, payload, station_id=station_id)
        assert kind == "result", f"{action} answered with CALLERROR {body}"
        return body

    def of(self, action: str) -> list[dict]:
        return [p for a, p in self.received if a == action]

    async def wait_for(
        self,
        action: str,
        count: int = 1,
        timeout: float = 5.0,
        where: Callable[[dict], bool] = lambda p: True,
    ) -> list[dict]:
        """Wait until `count` CALLs of `action` matching `where` have arrived; return them."""

        def matching() -> list[dict]:
            return [p for p in self.of(action) if where(p)]

        async with self._arrived:
            await asyncio.wait_for(
                self._arrived.wait_for(lambda: len(matching()) >= count), timeout
            )
        return matching()


def _version(ws: ServerConnection) -> str:
    return version_of(ws.subprotocol)
