"""The rollout rules (csms/rollout.py): who updates next, what stalled, when it is done."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csms.rollout import RolloutPolicy, Target, count, next_step, outcome_of

NOW = datetime(2026, 12, 4, 12, 0, tzinfo=UTC)
POLICY = RolloutPolicy(max_concurrent=2, max_attempts=3, retry_after_s=600,
                       stall_timeout_s=3600)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


def test_L_statuses_that_end_an_update() -> None:
    assert outcome_of("Installed") == "installed"
    for failure in ("DownloadFailed", "InstallationFailed", "InstallVerificationFailed",
                    "InvalidSignature"):
        assert outcome_of(failure) == "failed"
    for progress in ("Downloading", "Downloaded", "SignatureVerified", "InstallScheduled",
                     "Installing", "InstallRebooting", "DownloadScheduled", "DownloadPaused"):
        assert outcome_of(progress) == "in_progress"


def test_rollout_starts_no_more_than_the_cap_in_the_order_given() -> None:
    targets = [Target(f"CS{i}", i, 0, "waiting") for i in (3, 1, 2, 4)]
    step = next_step(POLICY, targets, NOW)
    assert step.start == ("CS1", "CS2")
    assert not step.finished and step.stalled == ()


def test_rollout_fills_only_the_free_slots() -> None:
    targets = [Target("A", 0, 1, "updating", ago(10)), Target("B", 1, 1, "installed", ago(5)),
               Target("C", 2, 0, "waiting"), Target("D", 3, 0, "waiting")]
    assert next_step(POLICY, targets, NOW).start == ("C",)
    full = [Target("A", 0, 1, "updating", ago(10)), Target("B", 1, 1, "updating", ago(5)),
            Target("C", 2, 0, "waiting")]
    assert next_step(POLICY, full, NOW).start == ()


def test_a_failed_station_is_retried_after_the_wait_until_out_of_attempts() -> None:
    too_soon = [Target("A", 0, 1, "failed", ago(599))]
    assert next_step(POLICY, too_soon, NOW).start == ()
    assert not next_step(POLICY, too_soon, NOW).finished
    due = [Target("A", 0, 1, "failed", ago(600))]
    assert next_step(POLICY, due, NOW).start == ("A",)
    spent = [Target("A", 0, 3, "failed", ago(6000)), Target("B", 1, 1, "installed", ago(1))]
    step = next_step(POLICY, spent, NOW)
    assert step.start == () and step.finished
    assert count(POLICY, spent).failed == 1 and count(POLICY, spent).installed == 1


def test_fresh_stations_go_before_retries_and_retries_oldest_failure_first() -> None:
    targets = [Target("R1", 0, 1, "failed", ago(700)), Target("R2", 1, 1, "failed", ago(900)),
               Target("F", 2, 0, "waiting")]
    assert next_step(POLICY, targets, NOW).start == ("F", "R2")


def test_an_update_silent_past_the_stall_timeout_fails_and_frees_its_slot() -> None:
    targets = [Target("A", 0, 1, "updating", ago(3600)), Target("B", 1, 1, "updating", ago(60)),
               Target("C", 2, 0, "waiting")]
    step = next_step(POLICY, targets, NOW)
    assert step.stalled == ("A",)
    assert step.start == ("C",)  # A is no longer in flight; it is retried after the wait
    no_wait = RolloutPolicy(1, 3, 0, 3600)
    assert next_step(no_wait, [Target("A", 0, 1, "updating", ago(4000))], NOW).start == ("A",)


def test_the_rollout_is_finished_when_every_station_is_installed_or_spent() -> None:
    done = [Target("A", 0, 1, "installed", ago(1)), Target("B", 1, 3, "failed", ago(1))]
    assert next_step(POLICY, done, NOW).finished
    assert not next_step(POLICY, [Target("A", 0, 1, "updating", ago(1))], NOW).finished
    counts = count(POLICY, [Target("A", 0, 0, "waiting"), Target("B", 1, 1, "failed", ago(1))])
    assert (counts.waiting, counts.retrying, counts.failed) == (1, 1, 0)
