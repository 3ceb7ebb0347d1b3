"""What one client may cost the OCPP server before it is a station: the process's file
limit, a cap on sockets and on handshakes in progress, and the throttle on failed logins.

Kept apart from csms/server.py (which calls it from two small methods) so the handshake's
rules and these limits can change independently. Decisions:
docs/decisions/0021-csms-input-bounds.md (Connections and logins).
"""

from __future__ import annotations

import resource
from dataclasses import dataclass

import structlog

log = structlog.get_logger()


def raise_open_file_limit() -> tuple[int, int]:
    """Raise this process's soft RLIMIT_NOFILE to its hard limit (every socket is a file;
    a soft limit of 1,024 or 20,000 would stop the server long before the machine does).
    Returns the (soft, hard) limits now in force."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY or soft < hard:
        target = hard if hard != resource.RLIM_INFINITY else max(soft, 1 << 20)
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
        except (ValueError, OSError) as exc:  # e.g. a container that forbids it
            log.warning("rlimit.not_raised", soft=soft, hard=hard, error=str(exc))
    return soft, hard


@dataclass
class _Failures:
    count: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class AuthThrottle:
    """Failed logins per station id and per source address: after `free_failures` a key is
    locked for `base_s`, doubling with each further failure up to `max_s`; a key's record
    is forgotten `forget_s` after its last failure.

    A (station id, address) pair whose last login succeeded is trusted: it skips both
    locks, so a station keeps reconnecting at full speed while someone else guesses its
    password. A failure of the pair ends its trust. Times are monotonic seconds, passed in
    (security timing follows real time even when the CSMS's clock is simulated)."""

    def __init__(self, free_failures: int = 5, base_s: float = 1.0, max_s: float = 300.0,
                 forget_s: float = 3600.0, max_keys: int = 100_000) -> None:
        self.free_failures = free_failures
        self.base_s = base_s
        self.max_s = max_s
        self.forget_s = forget_s
        self.max_keys = max_keys
        self._failures: dict[str, _Failures] = {}
        self._trusted: dict[tuple[str, str], float] = {}

    def locked_for(self, station_id: str, address: str, now: float) -> float:
        """Seconds until this login may be tried (0: try it now)."""
        if (station_id, address) in self._trusted:
            return 0.0
        waits = [f.locked_until - now for key in (f"id:{station_id}", f"addr:{address}")
                 if (f := self._failures.get(key)) is not None]
        return max([0.0, *waits])

    def failed(self, station_id: str | None, address: str, now: float) -> int:
        """Record a failed login; returns the address's failures so far."""
        if station_id is not None:
            self._trusted.pop((station_id, address), None)
            self._fail(f"id:{station_id}", now)
        return self._fail(f"addr:{address}", now)

    def succeeded(self, station_id: str, address: str, now: float) -> None:
        self._trusted.pop((station_id, address), None)
        self._trusted[(station_id, address)] = now
        while len(self._trusted) > self.max_keys:  # the oldest trust goes first
            del self._trusted[next(iter(self._trusted))]

    def _fail(self, key: str, now: float) -> int:
        record = self._failures.pop(key, None)
        if record is None or now - record.last > self.forget_s:
            record = _Failures()
        record.count += 1
        record.last = now
        beyond = record.count - self.free_failures
        if beyond > 0:
            delay = min(self.max_s, self.base_s * 2 ** min(beyond - 1, 30))
            record.locked_until = max(record.locked_until, now + delay)
        self._failures[key] = record  # re-inserted: the dict stays in order of last failure
        while len(self._failures) > self.max_keys:
            del self._failures[next(iter(self._failures))]
        return record.count
