"""What a handler of a CSMS-initiated call returns: the CALLRESULT payload and, optionally,
what the station does after it has answered (a report, a reboot, a transaction start)."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

After = Callable[[], Awaitable[None]]
Reply = tuple[dict, After | None]


def rejected(reason_code: str, info: str, status: str = "Rejected") -> dict:
    return {
        "status": status,
        "statusInfo": {"reasonCode": reason_code, "additionalInfo": info[:512]},
    }


class ErrorReply(Exception):
    """Raised by a handler to answer with a CALLERROR of this code (e.g. a request with more
    items than ItemsPerMessage...: OccurrenceConstraintViolation)."""

    def __init__(self, code: str, description: str) -> None:
        super().__init__(description)
        self.code = code
        self.description = description
