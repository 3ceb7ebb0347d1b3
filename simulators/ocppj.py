"""OCPP-J framing (Part 4): CALL, CALLRESULT, CALLERROR as JSON arrays, and schema checks.

A thin layer of its own rather than `ocpp.ChargePoint`: a simulated station needs to send
malformed frames on purpose, see every raw frame, and stay cheap enough to run thousands of
stations in one process. The JSON schemas shipped with the `ocpp` package are the authority
for payload shapes: `ocpp.v201` for OCPP 2.0.1, `ocpp.v21` for 2.1 (a connection's version is
the subprotocol the CSMS selected, and each payload is judged by that version's schemas only).
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

VERSIONS = ("2.0.1", "2.1")
SUBPROTOCOL = {"2.0.1": "ocpp2.0.1", "2.1": "ocpp2.1"}  # OCPP version -> WebSocket subprotocol
_SCHEMA_PACKAGE = {"2.0.1": "ocpp.v201", "2.1": "ocpp.v21"}


def version_of(subprotocol: str | None, default: str = "2.0.1") -> str:
    """The OCPP version a negotiated subprotocol stands for (`default` when none or unknown)."""
    for version, name in SUBPROTOCOL.items():
        if name == subprotocol:
            return version
    return default


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
def _validator(name: str, version: str = "2.0.1"):
    import jsonschema

    package = _SCHEMA_PACKAGE[version]
    text = resources.files(package).joinpath("schemas", f"{name}.json").read_text()
    schema = json.loads(text)
    schema.pop("$id", None)
    return jsonschema.validators.validator_for(schema)(schema)


def schema_errors(
    action: str, payload: dict, response: bool = False, version: str = "2.0.1"
) -> list[str]:
    """Messages of every way `payload` breaks `version`'s schema of `action` (empty = valid)."""
    name = f"{action}{'Response' if response else 'Request'}"
    try:
        validator = _validator(name, version)
    except FileNotFoundError:
        return [f"no schema {name}"]
    return [e.message for e in validator.iter_errors(payload)]


def has_schema(action: str, version: str = "2.0.1") -> bool:
    try:
        _validator(f"{action}Request", version)
    except FileNotFoundError:
        return False
    return True
