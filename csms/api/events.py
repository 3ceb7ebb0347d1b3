"""The live feed: server-sent events of station status, transactions, charging needs and
power samples, as JSON, for the dashboard and for integrations.

Server-sent events rather than a WebSocket: the feed only flows one way, a browser's
EventSource reconnects by itself, and any HTTP client or proxy can read it.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Annotated, Any, get_args

from fastapi import APIRouter, Depends, HTTPException, Query, status
from fastapi.sse import EventSourceResponse, ServerSentEvent
from pydantic import TypeAdapter

from csms.api.auth import Permission, require
from csms.api.deps import PartsDep
from csms.events import Event

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


@router.get("/api/events", response_class=EventSourceResponse,
            dependencies=[require(Permission.READ)])
async def live_feed(
    parts: PartsDep, wanted: Annotated[set[str], Depends(wanted_types)]
) -> AsyncIterator[ServerSentEvent]:
    """`event: ready` first (the subscription is live), then one event per change, named by
    its type, with the event as JSON in `data`. A client that falls behind by 10,000
    events loses the oldest (see csms/events.py)."""
    queue = parts.events.subscribe()
    stopping = asyncio.create_task(parts.stopping.wait())
    getting: asyncio.Task[Event] | None = None
    try:
        yield ServerSentEvent(event="ready", data={"types": sorted(wanted)})
        while True:
            getting = asyncio.create_task(queue.get())
            await asyncio.wait({getting, stopping}, return_when=asyncio.FIRST_COMPLETED)
            if not getting.done():
                return  # the server is stopping: end the stream so it can close
            batch = [getting.result()]
            while not queue.empty():
                batch.append(queue.get_nowait())
            for event in batch:
                name = type(event).__name__
                if name in wanted:
                    yield ServerSentEvent(event=name, data=event_json(event))
    finally:
        stopping.cancel()
        if getting is not None:
            getting.cancel()
        parts.events.unsubscribe(queue)
