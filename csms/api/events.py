"""The live feed: server-sent events of station status, transactions, charging needs and
power samples, as JSON, for the dashboard and for integrations.

Server-sent events rather than a WebSocket: the feed only flows one way, a browser's
EventSource reconnects by itself, and any HTTP client or proxy can read it.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

import structlog
from fastapi import APIRouter, Depends, HTTPException, Query, Request, status
from fastapi.sse import EventSourceResponse, format_sse_event
from pydantic import TypeAdapter

from csms.api.auth import Permission, require
from csms.api.deps import Parts, PartsDep
from csms.events import Event

log = structlog.get_logger()
router = APIRouter(tags=["live feed"])

EVENT_TYPES = {cls.__name__: cls for cls in get_args(Event)}
_json: TypeAdapter[Any] = TypeAdapter(Event)


def event_json(event: Event) -> dict[str, Any]:
    data: dict[str, Any] = _json.dump_python(event, mode="json")
    return {"type": type(event).__name__, **data}


def wanted_types(
    types: Annotated[str | None, Query(description="comma-separated event types to send "
                                       f"(default all): {', '.join(EVENT_TYPES)}")] = None,
) -> set[str]:
    """Checked before the stream starts, so an unknown type is a plain 422."""
    wanted = set(EVENT_TYPES) if types is None else {t.strip() for t in types.split(",")}
    if unknown := wanted - set(EVENT_TYPES):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["query", "types"], "type": "value_error",
            "msg": f"unknown event type(s): {', '.join(sorted(unknown))}",
        }])
    return wanted


KEEPALIVE_S = 15.0  # a comment line this often keeps proxies from closing an idle feed
KEEPALIVE = b": ping\n\n"


@router.get("/api/events", dependencies=[require(Permission.READ)],
            responses={200: {"content": {"text/event-stream": {}},
                             "description": "server-sent events"}})
async def live_feed(
    request: Request, parts: PartsDep, wanted: Annotated[set[str], Depends(wanted_types)]
) -> EventSourceResponse:
    """`event: ready` first (the subscription is live), then one event per change, named by
    its type, with the event as JSON in `data`. A client that falls behind by 10,000
    events loses the oldest (see csms/events.py)."""
    # Our own stream, not FastAPI's generator-endpoint SSE: its keepalive task writes into
    # a memory stream the response has already closed when a client leaves mid-write, and
    # the resulting anyio.BrokenResourceError is logged as an application error on every
    # ordinary disconnect.
    return EventSourceResponse(_feed(request, parts, wanted),
                               headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _feed(request: Request, parts: Parts, wanted: set[str]) -> AsyncIterator[bytes]:
    """The stream until the client leaves or the server stops; both are a normal end."""
    queue = parts.events.subscribe()
    stopping = asyncio.create_task(parts.stopping.wait())
    gone = asyncio.create_task(_client_gone(request))
    getting: asyncio.Task[Event] | None = None
    try:
        yield _frame("ready", {"types": sorted(wanted)})
        while True:
            if getting is None:
                getting = asyncio.create_task(queue.get())
            await asyncio.wait({getting, stopping, gone}, timeout=KEEPALIVE_S,
                               return_when=asyncio.FIRST_COMPLETED)
            if gone.done() or stopping.done():
                log.debug("api.events.closed", client_left=gone.done())
                return
            if not getting.done():
                yield KEEPALIVE
                continue
            batch = [getting.result()]
            getting = None
            while not queue.empty():
                batch.append(queue.get_nowait())
            for event in batch:
                name = type(event).__name__
                if name in wanted:
                    yield _frame(name, event_json(event))
    finally:
        for task in (stopping, gone, getting):
            if task is not None:
                task.cancel()
        parts.events.unsubscribe(queue)


async def _client_gone(request: Request) -> None:
    """Return when the client disconnects (a GET has no body to read meanwhile)."""
    while (await request.receive())["type"] != "http.disconnect":
        pass


def _frame(event: str, data: Any) -> bytes:
    return format_sse_event(data_str=json.dumps(data), event=event)
