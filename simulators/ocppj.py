"""OCPP-J framing (Part 4): CALL, CALLRESULT, CALLERROR as JSON arrays, and schema checks.

A thin layer of its own rather than `ocpp.ChargePoint`: a simulated station needs to send
malformed frames on purpose, see every raw frame, and stay cheap enough to run thousands of
stations in one process. The JSON schemas shipped with the `ocpp` package are the authority
for payload shapes.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from typing import Any

CALL = 2
CALLRESULT = 3
CALLERROR = 4


@dataclass(frozen=True)
class Frame:
    kind: int
    message_id: str
    action: str = ""
    payload: Any = None
    error_code: str = ""
    error_description: str = ""
    error_details: Any = None


class FrameError(ValueError):
    """Not a usable OCPP-J message; carries the CALLERROR code to answer with."""

    def __init__(self, code: str, description: str, message_id: str = "-1") -> None:
        super().__init__(description)
        self.code = code
        self.description = description
        self.message_id = message_id


def encode_call(message_id: str, action: str, payload: dict) -> str:
    return json.dumps([CALL, message_id, action, payload], separators=(",", ":"))


def encode_result(message_id: str, payload: dict) -> str:
    return json.dumps([CALLRESULT, message_id, payload], separators=(",", ":"))


def encode_error(message_id: str, code: str, description: str = "", details: Any = None) -> str:
    return json.dumps(
        [CALLERROR, message_id, code, description, details or {}], separators=(",", ":")
    )


def decode(text: str | bytes) -> Frame:
    """Parse one frame; raise FrameError with the code the spec asks for."""
    try:
        msg = json.loads(text)
    except ValueError as exc:
        raise FrameError("RpcFrameworkError", f"not JSON: {exc}") from None
    if not isinstance(msg, list) or len(msg) < 3 or not isinstance(msg[1], str):
        raise FrameError("RpcFrameworkError", "not an OCPP-J array with a messageId")
    kind, message_id = msg[0], msg[1]
    if kind == CALL:
        if len(msg) != 4 or not isinstance(msg[2], str) or not isinstance(msg[3], dict):
            raise FrameError("FormatViolation", "CALL needs [2, id, action, {payload}]", message_id)
        return Frame(CALL, message_id, action=msg[2], payload=msg[3])
    if kind == CALLRESULT:
        return Frame(CALLRESULT, message_id, payload=msg[2])
    if kind == CALLERROR:
        return Frame(
            CALLERROR,
            message_id,
            error_code=str(msg[2]),
            error_description=str(msg[3]) if len(msg) > 3 else "",
            error_details=msg[4] if len(msg) > 4 else None,
        )
    raise FrameError("MessageTypeNotSupported", f"message type {kind!r}", message_id)


@cache
def _validator(name: str):
    import jsonschema

    text = resources.files("ocpp.v201").joinpath("schemas", f"{name}.json").read_text()
    schema = json.loads(text)
    schema.pop("$id", None)
    return jsonschema.validators.validator_for(schema)(schema)


def schema_errors(action: str, payload: dict, response: bool = False) -> list[str]:
    """Messages of every way `payload` breaks the 2.0.1 schema of `action` (empty = valid)."""
    name = f"{action}{'Response' if response else 'Request'}"
    try:
        validator = _validator(name)
    except FileNotFoundError:
        return [f"no schema {name}"]
    return [e.message for e in validator.iter_errors(payload)]


def has_schema(action: str) -> bool:
    try:
        _validator(f"{action}Request")
    except FileNotFoundError:
        return False
    return True
