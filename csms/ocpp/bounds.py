"""Bounds on the numbers a station sends, before they reach the database.

The OCPP 2.0.1 schemas type ids, sequence numbers and counts as "integer" with no range;
OCPP-J implementations (and our PostgreSQL columns) hold them as 32-bit signed integers.
A larger one is refused with PropertyConstraintViolation rather than failing in storage.
"""

from __future__ import annotations

from typing import Any

from csms.frames import FrameError, Payload

INT32_MAX = 2**31 - 1


def require_int32(value: Any, where: str = "payload") -> None:
    """Raise PropertyConstraintViolation if any integer in `value` is outside int32."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        if not -INT32_MAX - 1 <= value <= INT32_MAX:
            raise FrameError("PropertyConstraintViolation",
                             f"{where}: {value} is outside the 32-bit integer range")
    elif isinstance(value, dict):
        for key, item in value.items():
            require_int32(item, f"{where}/{key}")
    elif isinstance(value, list):
        for i, item in enumerate(value):
            require_int32(item, f"{where}/{i}")


def request_id_of(req: Payload) -> int | None:
    """The notification's requestId if it can name one of our requests (row ids from 1)."""
    value = req.get("requestId")
    return value if isinstance(value, int) and 0 < value <= INT32_MAX else None
