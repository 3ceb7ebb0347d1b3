"""Reading fields the schemas cannot check (they check no formats): a bad one is the
station's error, answered with a CALLERROR, never the CSMS's InternalError."""

from __future__ import annotations

from datetime import datetime

from csms.clock import parse_ocpp
from csms.frames import FrameError


def timestamp(text: str, field: str) -> datetime:
    """An OCPP dateTime field; not RFC 3339: FormatViolation."""
    try:
        return parse_ocpp(text)
    except ValueError:
        raise FrameError("FormatViolation", f"{field}: not an RFC 3339 date-time") from None


def optional_timestamp(text: str | None, field: str) -> datetime | None:
    return None if text is None else timestamp(text, field)


INT32_MAX = 2**31 - 1


def bounded_int(value: int, field: str, minimum: int = 0, maximum: int = INT32_MAX) -> int:
    """An integer id the CSMS stores (evseId, requestId, message id): a 32-bit column."""
    if not minimum <= value <= maximum:
        raise FrameError("PropertyConstraintViolation",
                         f"{field}: {value} is outside {minimum}..{maximum}")
    return value
