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


def encode_event(event: Event, origin: str) -> bytes:
    fields = {f.name: getattr(event, f.name) for f in dataclasses.fields(event)}
    return json.dumps({"origin": origin, "type": type(event).__name__, "fields": fields},
                      default=_default, separators=(",", ":")).encode()


def decode_event(data: bytes) -> tuple[str, Event]:
    """(origin worker, event); WireError if it is not an event this CSMS knows."""
    body = _load(data)
    name, fields, origin = body.get("type"), body.get("fields"), body.get("origin")
    cls = EVENT_TYPES.get(name) if isinstance(name, str) else None
    if cls is None or not isinstance(fields, dict) or not isinstance(origin, str):
        raise WireError(f"not an event: {str(name)[:40]}")
    try:
        values = {k: datetime.fromisoformat(v) if k in _DATETIMES[name] and v is not None
                  else v for k, v in fields.items()}
        return origin, cls(**values)
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
