"""What travels over the broker: subjects, events and routed CALLs as JSON, decided here
and nowhere else, so both ends of a message read it the same way.

Events are the dataclasses of csms/events.py, written field by field (datetimes as ISO
text) and read back by their type name: a new event type needs no code here.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from datetime import datetime
from typing import Any, get_args

from csms.events import Event
from csms.frames import Payload

PREFIX = "csms"
EVENTS = f"{PREFIX}.events"
CLAIMS = f"{PREFIX}.claims"  # a worker took a station's socket: others drop theirs
RELEASES = f"{PREFIX}.releases"  # a worker's socket for a station ended
STATUS = f"{PREFIX}.status"  # scatter-gather: every worker answers what it holds
MAX_MESSAGE_BYTES = 1024 * 1024  # nats-server's default max_payload
MAX_STATION_ID = 48  # as the handshake allows (csms/server.py)

EVENT_TYPES: dict[str, type[Any]] = {cls.__name__: cls for cls in get_args(Event)}


class WireError(ValueError):
    """A message that is not one of ours, or too big: dropped and logged, never raised on."""


def call_subject(station_id: str) -> str:
    """One subject per station: only the worker holding its socket subscribes, so the
    broker routes a CALL there, and "no responders" means no process holds it. Hex, since
    an identity may contain '.', '*' or '>', which subjects reserve."""
    return f"{PREFIX}.station.{station_id.encode().hex()}.call"


def _datetime_fields(cls: type[Any]) -> frozenset[str]:
    hints = typing.get_type_hints(cls)
    found = set()
    for f in dataclasses.fields(cls):
        hint = hints[f.name]
        options = get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
        if datetime in options:
            found.add(f.name)
    return frozenset(found)


_DATETIMES = {name: _datetime_fields(cls) for name, cls in EVENT_TYPES.items()}


def _default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON: {type(value).__name__}")


def encode_events(events: list[Event], origin: str) -> list[bytes]:
    """The events published here since the last send, as few broker messages as fit under
    the broker's limit: a broker message costs a publish, a delivery and a callback in
    every other worker, far more than a 140-byte event itself. An event too big on its
    own is left out (WireError only when none fits)."""
    parts = []
    for event in events:
        fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
        part = json.dumps({"type": type(event).__name__, "fields": fields},
                          default=_default, separators=(",", ":")).encode()
        if len(part) < MAX_MESSAGE_BYTES - 1024:
            parts.append(part)
    if events and not parts:
        raise WireError("no event fits in a message")
    head = b'{"origin":' + json.dumps(origin).encode() + b',"events":['
    messages, batch, size = [], [], len(head) + 2
    for part in parts:
        if batch and size + len(part) + 1 > MAX_MESSAGE_BYTES:
            messages.append(head + b",".join(batch) + b"]}")
            batch, size = [], len(head) + 2
        batch.append(part)
        size += len(part) + 1
    if batch:
        messages.append(head + b",".join(batch) + b"]}")
    return messages


def decode_events(data: bytes) -> tuple[str, list[Event], int]:
    """(origin worker, the events that read back, how many did not); WireError if the
    message is not one of ours. A single event (the form before batches) reads as one,
    so nodes of both versions share events during a rolling upgrade."""
    body = _load(data)
    origin = body.get("origin")
    items = body.get("events") if "events" in body else [body]
    if not isinstance(origin, str) or not isinstance(items, list):
        raise WireError("not events")
    events: list[Event] = []
    for item in items:
        try:
            events.append(_event(item))
        except WireError:
            continue
    return origin, events, len(items) - len(events)


def _event(item: Any) -> Event:
    name = item.get("type") if isinstance(item, dict) else None
    fields = item.get("fields") if isinstance(item, dict) else None
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(fields, dict):
        raise WireError(f"not an event: {str(name)[:40]}")
    try:
        values = {k: datetime.fromisoformat(v) if k in _DATETIMES[name] and v is not None
                  else v for k, v in fields.items()}
        event: Event = cls(**values)
        return event
    except (TypeError, ValueError) as exc:
        raise WireError(f"bad {name}: {exc}") from None


def encode(body: dict[str, Any]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError(f"message of {len(data)} bytes over {MAX_MESSAGE_BYTES}")
    return data


def _load(data: bytes) -> dict[str, Any]:
    if len(data) > MAX_MESSAGE_BYTES:
        raise WireError("message too big")
    try:
        body = json.loads(data)
    except (ValueError, UnicodeDecodeError):
        raise WireError("not JSON") from None
    if not isinstance(body, dict):
        raise WireError("not an object")
    return body


def decode(data: bytes, *required: str) -> dict[str, Any]:
    """A JSON object with the `required` keys; WireError otherwise."""
    body = _load(data)
    if missing := [k for k in required if k not in body]:
        raise WireError(f"missing {', '.join(missing)}")
    return body


def call_request(action: str, payload: Payload, timeout: float | None) -> bytes:
    return encode({"action": action, "payload": payload, "timeout": timeout})


def call_answer(outcome: str, **fields: Any) -> bytes:
    """outcome: ok (with payload) | offline | timeout | failed (code, description,
    details) | invalid (our request refused by the schema: description)."""
    return encode({"outcome": outcome, **fields})
