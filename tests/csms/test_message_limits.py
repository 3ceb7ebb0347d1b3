"""Splitting a request by a station's per-message limits (B06.FR.05): a pure decision."""

from __future__ import annotations

import json

from csms.frames import Call, dump
from csms.ocpp.message_limits import Limits, join_replies, parse_limit, split_request


def _request(n: int) -> dict:
    return {"getVariableData": [
        {"component": {"name": "C"}, "variable": {"name": f"V{i}"}} for i in range(n)]}


def test_no_limits_send_one_message() -> None:
    assert split_request("GetVariables", _request(7), Limits()) == [_request(7)]


def test_items_per_message_caps_every_part() -> None:
    parts = split_request("GetVariables", _request(7), Limits(items=3))
    assert [len(p["getVariableData"]) for p in parts] == [3, 3, 1]
    names = [d["variable"]["name"] for p in parts for d in p["getVariableData"]]
    assert names == [f"V{i}" for i in range(7)]


def test_bytes_per_message_caps_the_whole_frame() -> None:
    limit = 200
    parts = split_request("GetVariables", _request(9), Limits(bytes=limit))
    assert len(parts) > 1
    for part in parts:
        frame = dump(Call("00000000-0000-0000-0000-000000000000", "GetVariables", part))
        assert len(frame) <= limit, frame
    assert sum(len(p["getVariableData"]) for p in parts) == 9


def test_an_item_larger_than_the_byte_limit_goes_alone() -> None:
    big = {"component": {"name": "C" * 300}, "variable": {"name": "V"}}
    parts = split_request("GetVariables", {"getVariableData": [big, big]}, Limits(bytes=100))
    assert [len(p["getVariableData"]) for p in parts] == [1, 1]


def test_replies_are_joined_in_order() -> None:
    replies = [{"getVariableResult": [{"n": 1}, {"n": 2}]}, {"getVariableResult": [{"n": 3}]}]
    assert join_replies("GetVariables", replies) == {"getVariableResult": [
        {"n": 1}, {"n": 2}, {"n": 3}]}
    assert json.dumps(replies)  # untouched


def test_reported_limits_are_read_defensively() -> None:
    assert parse_limit("50") == 50
    assert parse_limit("0") is None
    assert parse_limit("-3") is None
    assert parse_limit("lots") is None
    assert parse_limit(None) is None
    assert parse_limit("1e400") is None
