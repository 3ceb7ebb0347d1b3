"""A member's share as grid targets (csms/dispatch.py `member_steps`): its baseline moved
by its share, below zero where its V2G cars lend (the forecast's shed past the baseline),
never below zero by the forecast's rounding."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

from csms.dispatch import member_steps

T0 = datetime(2026, 12, 7, 10, tzinfo=UTC)


def offer(baseline: list[float]) -> dict:
    starts = [T0 + timedelta(minutes=15 * i) for i in range(len(baseline) + 1)]
    return {"members": {"m": {"baseline_kw": baseline}},
            "intervals": [[a.isoformat(), b.isoformat()] for a, b in pairwise(starts)]}


def test_a_share_past_the_baseline_is_a_negative_target() -> None:
    steps = member_steps(offer([5.0, 5.0, 2.0]), "m", 20.0, "down", T0)
    assert [kw for _, _, kw in steps] == [-15.0, -18.0]
    assert steps[0][:2] == (T0, T0 + timedelta(minutes=30))  # equal intervals merged


def test_rounding_under_zero_is_zero_and_up_adds() -> None:
    assert [kw for _, _, kw in member_steps(offer([5.0]), "m", 5.03, "down", T0)] == [0.0]
    assert [kw for _, _, kw in member_steps(offer([5.0]), "m", 3.0, "up", T0)] == [8.0]
