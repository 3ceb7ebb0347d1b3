"""What travels over the broker reads back as it was written, for every event type, and
anything else is refused with WireError (never a crash in a subscriber)."""

from __future__ import annotations

import dataclasses
import json
import typing
from dataclasses import replace
from datetime import UTC, datetime
from types import UnionType
from typing import Any, get_args

import pytest

from csms.cluster import wire

AT = datetime(2026, 12, 5, 7, 30, 0, 123000, tzinfo=UTC)


def sample(cls: type[Any]) -> Any:
    """An instance with a value of the right type in every field."""
    values: dict[str, Any] = {}
    for f in dataclasses.fields(cls):
        hint = typing.get_type_hints(cls)[f.name]
        options = get_args(hint) if isinstance(hint, UnionType) else (hint,)
        kind = next(o for o in options if o is not type(None))
        values[f.name] = {str: "x.y*>", int: 7, float: 1.5, bool: True, datetime: AT}[kind]
    return cls(**values)


@pytest.mark.parametrize("name", sorted(wire.EVENT_TYPES))
def test_every_event_type_reads_back_as_written(name: str) -> None:
    event = sample(wire.EVENT_TYPES[name])
    [data] = wire.encode_events([event], "n/0")
    assert wire.decode_events(data) == ("n/0", [event], 0)


def test_a_batch_reads_back_in_order_and_splits_under_the_broker_limit() -> None:
    events = [replace(sample(wire.EVENT_TYPES["StationConnected"]), station_id=f"S{i}" * 40)
              for i in range(20_000)]
    messages = wire.encode_events(events, "n/0")
    assert len(messages) > 1 and all(len(m) <= wire.MAX_MESSAGE_BYTES for m in messages)
    back = [e for m in messages for e in wire.decode_events(m)[1]]
    assert back == events


def test_an_event_too_big_alone_is_left_out_of_its_batch() -> None:
    small = sample(wire.EVENT_TYPES["StationConnected"])
    huge = replace(small, station_id="x" * wire.MAX_MESSAGE_BYTES)
    [data] = wire.encode_events([small, huge, small], "n/0")
    assert wire.decode_events(data) == ("n/0", [small, small], 0)
    with pytest.raises(wire.WireError):
        wire.encode_events([huge], "n/0")


def test_a_bad_event_in_a_batch_is_counted_and_the_others_delivered() -> None:
    good = sample(wire.EVENT_TYPES["StationConnected"])
    [data] = wire.encode_events([good], "n/0")
    body = json.loads(data)
    body["events"] += [{"type": "Nope", "fields": {}}, 7, {"type": "StationConnected"}]
    assert wire.decode_events(json.dumps(body).encode()) == ("n/0", [good], 3)


def test_a_single_event_of_the_earlier_form_still_reads() -> None:
    data = (b'{"origin":"old/0","type":"StationConnected",'
            b'"fields":{"station_id":"A","at":"2026-12-05T07:30:00+00:00"}}')
    origin, [event], bad = wire.decode_events(data)
    assert (origin, event.station_id, bad) == ("old/0", "A", 0)


@pytest.mark.parametrize("data", [
    b'{"type": "Nope", "fields": {}, "origin": "n/0"}',
    b'{"type": "StationConnected", "fields": {"station_id": "A"}, "origin": "n/0"}',
    b'{"type": "StationConnected", "fields": {"station_id": "A", "at": "yesterday"},'
    b' "origin": "n/0"}',
    b'{"type": "StationConnected", "fields": {"station_id": "A", "at": null, "x": 1},'
    b' "origin": "n/0"}',
])
def test_a_single_event_that_is_not_one_reads_as_none(data: bytes) -> None:
    assert wire.decode_events(data) == ("n/0", [], 1)


@pytest.mark.parametrize("data", [
    b"", b"[]", b"not json", b'{"events": []}', b'{"origin": "n/0", "events": {}}',
    b"{" + b" " * (wire.MAX_MESSAGE_BYTES + 1) + b"}",
])
def test_what_is_not_a_message_of_events_is_refused(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_events(data)


def test_a_station_subject_is_one_token_whatever_the_identity() -> None:
    subject = wire.call_subject("a.b*c>d e")
    assert subject.count(".") == 3 and not any(c in subject for c in "*> ")
    assert wire.call_subject("A") != wire.call_subject("a")


def test_an_oversized_message_is_refused_before_sending() -> None:
    with pytest.raises(wire.WireError):
        wire.call_request("DataTransfer", {"data": "x" * wire.MAX_MESSAGE_BYTES}, None)
