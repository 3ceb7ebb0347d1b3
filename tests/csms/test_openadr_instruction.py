"""What a VTN sends is bounded before it is used: `csms.openadr.instruction` turns any event
into an Instruction within its limits, or refuses it with a reason (never another error)."""

from __future__ import annotations

import math
from datetime import UTC, datetime, timedelta
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from csms.openadr import MAX_INTERVALS, MAX_KW, Refused, event_price, instruction

NOW = datetime(2026, 12, 6, 10, 0, tzinfo=UTC)
NAMES = st.sampled_from(["LOAD_DISPATCH", "LOAD_CONTROL", "SIMPLE", "ELECTRICITY_PRICE", ""])
TYPES = st.sampled_from(["delta", "setpoint", "x-loadControlSetpoint", "level", "price", ""])
ANY = st.none() | st.booleans() | st.integers(-10**12, 10**12) | st.text(max_size=5) | \
    st.floats(allow_nan=True, allow_infinity=True)


@st.composite
def intervals(draw: Any) -> dict[str, Any]:
    """Mostly well-formed (so accepted paths are exercised), sometimes anything."""
    start = draw(st.datetimes(min_value=datetime(2026, 12, 5), max_value=datetime(2026, 12, 8),
                              timezones=st.just(UTC)) if draw(st.integers(0, 9)) else
                 st.one_of(st.datetimes(), ANY))
    duration = draw(st.timedeltas(min_value=timedelta(minutes=1), max_value=timedelta(hours=6))
                    if draw(st.integers(0, 4)) else st.one_of(st.timedeltas(), ANY))
    payload = draw(st.floats(-2e3, 2e3) if draw(st.integers(0, 4)) else
                   st.one_of(st.floats(-2e6, 2e6), ANY))
    return {"dtstart": start, "duration": duration, "signal_payload": payload}


SIGNAL = st.sampled_from([("LOAD_DISPATCH", "delta"), ("LOAD_DISPATCH", "setpoint"),
                          ("LOAD_CONTROL", "x-loadControlSetpoint"),
                          ("ELECTRICITY_PRICE", "price")]) | st.tuples(NAMES, TYPES)


@st.composite
def events(draw: Any) -> dict[str, Any]:
    signals = []
    for _ in range(draw(st.sampled_from([1, 1, 1, 0, 2, 3]))):
        name, kind = draw(SIGNAL)
        signals.append({"signal_name": name, "signal_type": kind,
                        "measurement": draw(st.one_of(st.none(), st.fixed_dictionaries(
                            {"scale": st.sampled_from(["k", "M", "none", "G", ""])}))),
                        "intervals": draw(st.lists(intervals(), min_size=0, max_size=
                                                   draw(st.sampled_from([1, 1, 2, 300]))))})
    return {"event_signals": signals}


@settings(max_examples=400, deadline=None)
@given(events())
def test_any_event_is_an_instruction_within_bounds_or_refused(event: dict[str, Any]) -> None:
    try:
        got = instruction(event, NOW)
    except Refused as e:
        assert e.reason in {"unit", "intervals", "value", "ended", "signal"}
        return
    assert 1 <= len(got.intervals) <= MAX_INTERVALS
    values = [kw for *_, kw in got.intervals]
    assert all(math.isfinite(v) and abs(v) <= MAX_KW for v in values)
    if got.kind == "delta":  # one direction, never zero
        assert all(v < 0 for v in values) or all(v > 0 for v in values)
    else:
        assert all(v >= 0 for v in values)
    for (a, b, _), (c, _, _) in zip(got.intervals, got.intervals[1:], strict=False):
        assert a < b <= c  # sorted, not overlapping
    assert got.intervals[-1][1] > NOW
    assert 0.0 <= event_price(event) <= 1e4


def test_a_delta_reduction_in_megawatts() -> None:
    start = NOW + timedelta(hours=1)
    got = instruction({"event_signals": [{
        "signal_name": "LOAD_DISPATCH", "signal_type": "delta", "measurement": {"scale": "M"},
        "intervals": [{"dtstart": start, "duration": timedelta(hours=2),
                       "signal_payload": -1.5}]}]}, NOW)
    assert (got.kind, got.intervals) == ("delta", ((start, start + timedelta(hours=2),
                                                    -1500.0),))
