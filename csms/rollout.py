"""Firmware updates and rollouts: what a status means and which stations update next.

Pure: no I/O and no clock (time is passed in), so the rules can be read and tested alone.
The runner that acts on these decisions is `csms.firmware`.

A station's update ends in one of three outcomes: `installed`, `failed` (a failure the
station reported, or the CSMS could not get the request accepted), or `cancelled` (a newer
UpdateFirmware replaced it: AcceptedCanceled, L01.FR.24). A rollout keeps at most
`max_concurrent` stations updating; a station that failed is tried again after
`retry_after_s` until it has had `max_attempts`; an update that reports nothing for
`stall_timeout_s` counts as failed (the station may have lost it in a reboot).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

Outcome = Literal["in_progress", "installed", "failed", "cancelled"]

# FirmwareStatusEnumType (L01/L02): the statuses that end an update.
INSTALLED = frozenset({"Installed"})
FAILED = frozenset({
    "DownloadFailed", "InstallationFailed", "InstallVerificationFailed", "InvalidSignature",
})
# UpdateFirmwareStatusEnumType: the answers that mean the station took the request.
ACCEPTED_REPLIES = frozenset({"Accepted", "AcceptedCanceled"})


def outcome_of(status: str) -> Outcome:
    """The outcome a reported FirmwareStatus gives an update that is in progress.

    `Idle` says the station is doing nothing (an answer to TriggerMessage): it does not end
    an update by itself; the stall timeout does."""
    if status in INSTALLED:
        return "installed"
    if status in FAILED:
        return "failed"
    return "in_progress"


Phase = Literal["waiting", "updating", "installed", "failed"]


@dataclass(frozen=True)
class RolloutPolicy:
    max_concurrent: int
    max_attempts: int
    retry_after_s: float
    stall_timeout_s: float


@dataclass(frozen=True)
class Target:
    """One station of a rollout as the runner found it.

    phase: `waiting` (never tried), `updating` (its newest update is in progress),
    `installed`, or `failed` (its newest update failed or was cancelled).
    since: when its newest update last changed (None while waiting)."""

    station_id: str
    position: int
    attempts: int
    phase: Phase
    since: datetime | None = None


@dataclass(frozen=True)
class Step:
    """What the runner does now: fail the stalled updates, start the `start` stations (in
    that order); `finished`: nothing is left to do (every station installed or out of
    attempts)."""

    stalled: tuple[str, ...]
    start: tuple[str, ...]
    finished: bool


def next_step(policy: RolloutPolicy, targets: Iterable[Target], now: datetime) -> Step:
    targets = list(targets)
    stall = timedelta(seconds=policy.stall_timeout_s)
    retry = timedelta(seconds=policy.retry_after_s)
    stalled = [t for t in targets
               if t.phase == "updating" and t.since is not None and now - t.since >= stall]
    stalled_ids = {t.station_id for t in stalled}
    in_flight = sum(1 for t in targets
                    if t.phase == "updating" and t.station_id not in stalled_ids)

    def retryable(t: Target) -> bool:
        failed = t.phase == "failed" or t.station_id in stalled_ids
        return failed and t.attempts < policy.max_attempts

    def retry_due(t: Target) -> bool:
        if t.station_id in stalled_ids:  # failed just now
            return retry <= timedelta(0)
        return t.since is not None and now - t.since >= retry

    fresh = sorted((t for t in targets if t.phase == "waiting"), key=lambda t: t.position)
    due = sorted((t for t in targets if retryable(t) and retry_due(t)),
                 key=lambda t: (t.since or now, t.position))
    slots = max(0, policy.max_concurrent - in_flight)
    start = [t.station_id for t in fresh + due][:slots]
    pending = in_flight or fresh or any(retryable(t) for t in targets)
    return Step(tuple(t.station_id for t in stalled), tuple(start),
                finished=not pending and not start)


@dataclass(frozen=True)
class Counts:
    waiting: int
    updating: int
    installed: int
    failed: int  # failed and out of attempts
    retrying: int  # failed, to be tried again


def count(policy: RolloutPolicy, targets: Iterable[Target]) -> Counts:
    waiting = updating = installed = failed = retrying = 0
    for t in targets:
        if t.phase == "waiting":
            waiting += 1
        elif t.phase == "updating":
            updating += 1
        elif t.phase == "installed":
            installed += 1
        elif t.attempts < policy.max_attempts:
            retrying += 1
        else:
            failed += 1
    return Counts(waiting, updating, installed, failed, retrying)
