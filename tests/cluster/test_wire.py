"""What travels over the broker reads back as it was written, for every event type, and
anything else is refused with WireError (never a crash in a subscriber)."""

from __future__ import annotations

import dataclasses
import typing
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
    assert wire.decode_event(wire.encode_event(event, "n/0")) == ("n/0", event)


@pytest.mark.parametrize("data", [
    b"", b"[]", b"not json", b'{"type": "Nope", "fields": {}, "origin": "n/0"}',
    b'{"type": "StationConnected", "fields": {"station_id": "A"}, "origin": "n/0"}',
    b'{"type": "StationConnected", "fields": {"station_id": "A", "at": "yesterday"},'
    b' "origin": "n/0"}',
    b'{"type": "StationConnected", "fields": {"station_id": "A", "at": null, "x": 1},'
    b' "origin": "n/0"}',
    b"{" + b" " * (wire.MAX_MESSAGE_BYTES + 1) + b"}",
])
def test_what_is_not_an_event_is_refused(data: bytes) -> None:
    with pytest.raises(wire.WireError):
        wire.decode_event(data)


def test_a_station_subject_is_one_token_whatever_the_identity() -> None:
    subject = wire.call_subject("a.b*c>d e")
    assert subject.count(".") == 3 and not any(c in subject for c in "*> ")
    assert wire.call_subject("A") != wire.call_subject("a")


def test_an_oversized_message_is_refused_before_sending() -> None:
    with pytest.raises(wire.WireError):
        wire.call_request("DataTransfer", {"data": "x" * wire.MAX_MESSAGE_BYTES}, None)
