"""A station as a bare WebSocket client, for the protocol versions the simulator does not
speak (OCPP 2.1): tests/api/test_ocpp21.py, tests/cluster/test_nodes.py."""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
from collections.abc import Callable
from typing import Any

from websockets.asyncio.client import ClientConnection

from csms.ocpp.schemas import validate_response

Payload = dict[str, Any]


def basic_auth(station_id: str, password: str) -> dict[str, str]:
    token = base64.b64encode(f"{station_id}:{password}".encode()).decode()
    return {"Authorization": f"Basic {token}"}


class Raw:
    """A station as a bare WebSocket: `call` sends a CALL and returns the CSMS's answer
    frame; the CSMS's own CALLs are answered by `replies` (action -> payload, or a function
    of the request giving it) or, for an
    action not there, with a CALLERROR NotSupported, and kept in `received`."""

    def __init__(self, ws: ClientConnection,
                 replies: dict[str, Payload | Callable[[Payload], Payload]]) -> None:
        self.ws = ws
        self.replies = replies
        self.received: list[tuple[str, Payload]] = []
        self.unmatched: list[list[Any]] = []  # answers to no CALL of ours
        self._ids = itertools.count(1)
        self._answers: dict[str, asyncio.Future[list[Any]]] = {}
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        async for raw in self.ws:
            frame = json.loads(raw)
            if frame[0] == 2:
                _, message_id, action, payload = frame
                self.received.append((action, payload))
                if action in self.replies:
                    reply = self.replies[action]
                    answer: list[Any] = [3, message_id,
                                         reply(payload) if callable(reply) else reply]
                else:
                    answer = [4, message_id, "NotSupported", "", {}]
                await self.ws.send(json.dumps(answer))
            elif (future := self._answers.pop(frame[1], None)) is not None:
                future.set_result(frame)
            else:
                self.unmatched.append(frame)

    def stop(self) -> None:
        """Stop answering (the socket is closed by its owner)."""
        self._reader.cancel()

    async def call(self, action: str, payload: Payload) -> list[Any]:
        message_id = f"m{next(self._ids)}"
        return await self.send_raw(json.dumps([2, message_id, action, payload]), message_id)

    async def send_raw(self, text: str, message_id: str) -> list[Any]:
        """Send `text` as it is; the answer whose id is `message_id`."""
        future: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        self._answers[message_id] = future
        await self.ws.send(text)
        return await asyncio.wait_for(future, 10)

    async def ok(self, action: str, payload: Payload, version: str) -> Payload:
        """The CALLRESULT's payload, checked against `version`'s response schema."""
        frame = await self.call(action, payload)
        assert frame[0] == 3, frame
        validate_response(action, frame[2], version=version)
        return dict(frame[2])

    async def boot(self, version: str) -> None:
        reply = await self.ok("BootNotification", {
            "reason": "PowerUp",
            "chargingStation": {"vendorName": "Raw", "model": "V2X-1"},
        }, version)
        assert reply["status"] == "Accepted"
