"""OCPP-J framing (OCPP 2.0.1 and 2.1 Part 4): parse and build CALL / CALLRESULT / CALLERROR,
and 2.1's SEND and CALLRESULTERROR (which a 2.0.1 connection refuses: connection.py).

The one place that knows the wire format. A frame that cannot be parsed raises `FrameError`
carrying the error code the spec names and, when one could be read, the message id, so the
connection can answer with a CALLERROR and keep going.

JSON the CSMS cannot hold (csms/jsontext.py: NaN, Infinity, numbers no double holds,
integers of more than 20 digits, nesting deeper than `MAX_DEPTH`, strings holding NUL or
a lone UTF-16 surrogate) is a FormatViolation. See docs/decisions/0021-csms-input-bounds.md.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from csms import jsontext

CALL = 2
CALLRESULT = 3
CALLERROR = 4
CALLRESULTERROR = 7  # OCPP 2.1: the answer to a CALLRESULT the receiver could not process
SEND = 6  # OCPP 2.1: a CALL that gets no answer (NotifyPeriodicEventStream)
MAX_MESSAGE_ID_LENGTH = 36
# The deepest OCPP 2.0.1 payload nests about 8 levels (NotifyEVChargingSchedule); the
# rest is headroom for customData and DataTransfer's free-form data.
MAX_DEPTH = jsontext.MAX_DEPTH
_HEAD_ID = re.compile(r'^\s*\[\s*\d+\s*,\s*"([^"\\]{1,36})"')

Payload = dict[str, Any]


@dataclass(frozen=True)
class Call:
    message_id: str
    action: str
    payload: Payload


@dataclass(frozen=True)
class CallResult:
    message_id: str
    payload: Payload


@dataclass(frozen=True)
class CallError:
    message_id: str
    code: str
    description: str = ""
    details: Payload = field(default_factory=dict)


@dataclass(frozen=True)
class Send:
    message_id: str
    action: str
    payload: Payload


@dataclass(frozen=True)
class CallResultError:
    message_id: str
    code: str
    description: str = ""
    details: Payload = field(default_factory=dict)


Frame = Call | CallResult | CallError | Send | CallResultError


class FrameError(Exception):
    """A frame the receiver cannot process; answered with a CALLERROR when it has an id."""

    def __init__(self, code: str, description: str, message_id: str | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.message_id = message_id


def parse(text: str | bytes) -> Frame:
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise FrameError("RpcFrameworkError", f"not valid UTF-8: {exc}") from None
    try:
        data = jsontext.loads(text, MAX_DEPTH)
    except jsontext.Unholdable as exc:
        raise FrameError("FormatViolation", exc.problem,
                         _message_id(exc.data) or _head_id(text)) from None
    except ValueError as exc:
        raise FrameError("RpcFrameworkError", f"not valid JSON: {exc}") from None
    if not isinstance(data, list) or len(data) < 3:
        raise FrameError("RpcFrameworkError", "an OCPP-J frame is a JSON array of 3 to 5 items")
    type_id, message_id = data[0], data[1]
    if not isinstance(message_id, str) or not 0 < len(message_id) <= MAX_MESSAGE_ID_LENGTH:
        raise FrameError("RpcFrameworkError", "messageId must be a string of 1-36 characters")
    if type_id in (CALL, SEND):
        if len(data) != 4 or not isinstance(data[2], str):
            raise FrameError("RpcFrameworkError", f"[{type_id}, id, action, payload] expected",
                             message_id)
        if not isinstance(data[3], dict):
            raise FrameError("FormatViolation", "payload must be a JSON object", message_id)
        kind = Call if type_id == CALL else Send
        return kind(message_id, data[2], data[3])
    if type_id == CALLRESULT:
        if len(data) != 3 or not isinstance(data[2], dict):
            raise FrameError("RpcFrameworkError", "CALLRESULT is [3, id, payload]", message_id)
        return CallResult(message_id, data[2])
    if type_id in (CALLERROR, CALLRESULTERROR):
        if len(data) not in (4, 5):
            raise FrameError("RpcFrameworkError", f"[{type_id}, id, code, desc, details] expected")
        details = data[4] if len(data) == 5 and isinstance(data[4], dict) else {}
        error = CallError if type_id == CALLERROR else CallResultError
        return error(message_id, str(data[2])[:64], str(data[3])[:512], details)
    raise FrameError("MessageTypeNotSupported", f"message type {type_id!r} is unknown", message_id)


def _message_id(data: Any) -> str | None:
    if isinstance(data, list) and len(data) > 1 and isinstance(data[1], str) \
            and 0 < len(data[1]) <= MAX_MESSAGE_ID_LENGTH \
            and not jsontext.unstorable(data[1]):
        return data[1]
    return None


def _head_id(text: str) -> str | None:
    """The message id of a frame json could not finish parsing, read from its start."""
    match = _HEAD_ID.match(text)
    return match.group(1) if match and not jsontext.unstorable(match.group(1)) else None


def dump(frame: Frame) -> str:
    if isinstance(frame, Call | Send):
        data: list[Any] = [CALL if isinstance(frame, Call) else SEND, frame.message_id,
                           frame.action, frame.payload]
    elif isinstance(frame, CallResult):
        data = [CALLRESULT, frame.message_id, frame.payload]
    else:
        data = [CALLERROR if isinstance(frame, CallError) else CALLRESULTERROR,
                frame.message_id, frame.code, frame.description, frame.details]
    return json.dumps(data, separators=(",", ":"))
