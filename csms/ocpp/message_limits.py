"""How many items a station takes in one message (B06.FR.05 and its kin).

A station reports `ItemsPerMessage...` and `BytesPerMessage...` variables; the CSMS must
not send a request with more items (or more bytes) than that. A request with a list of
items is then split into several CALLs, each within the limits, and their answers joined.
Pure: the limits come in, the parts go out.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass

from csms.frames import Call, Payload, dump

_UUID = "00000000-0000-0000-0000-000000000000"  # a message id is at most 36 characters


@dataclass(frozen=True)
class Splittable:
    """An action whose request holds a list of items, answered by a list of results."""

    component: str
    items_variable: str
    bytes_variable: str
    request_list: str
    result_list: str


SPLITTABLE: Mapping[str, Splittable] = {
    "GetVariables": Splittable("DeviceDataCtrlr", "ItemsPerMessageGetVariables",
                               "BytesPerMessageGetVariables", "getVariableData",
                               "getVariableResult"),
    "SetVariables": Splittable("DeviceDataCtrlr", "ItemsPerMessageSetVariables",
                               "BytesPerMessageSetVariables", "setVariableData",
                               "setVariableResult"),
    "SetVariableMonitoring": Splittable(
        "MonitoringCtrlr", "ItemsPerMessageSetVariableMonitoring",
        "BytesPerMessageSetVariableMonitoring", "setMonitoringData", "setMonitoringResult"),
    "ClearVariableMonitoring": Splittable(
        "MonitoringCtrlr", "ItemsPerMessageClearVariableMonitoring",
        "BytesPerMessageClearVariableMonitoring", "id", "clearMonitoringResult"),
}


# Split by a flow that knows how to join the parts (a local list: first Full, then
# Differential parts, each with its own version), not by Commands.call.
SPLIT_BY_FLOW: Mapping[str, Splittable] = {
    "SendLocalList": Splittable("LocalAuthListCtrlr", "ItemsPerMessage", "BytesPerMessage",
                                "localAuthorizationList", ""),
    "GetReport": Splittable("DeviceDataCtrlr", "ItemsPerMessageGetReport",
                            "BytesPerMessageGetReport", "componentVariable", ""),
}


@dataclass(frozen=True)
class Limits:
    items: int | None = None
    bytes: int | None = None


def parse_limit(value: str | None) -> int | None:
    """A reported limit as a positive int; anything else (absent, 0, garbage) is none."""
    try:
        number = int(float(value)) if value is not None else 0
    except (ValueError, OverflowError):
        return None
    return number if number > 0 else None


def split_request(action: str, payload: Payload, limits: Limits) -> list[Payload]:
    """`payload` as one or more requests, each within `limits`. An item that alone
    exceeds the byte limit goes alone (the station answers for it)."""
    spec = SPLITTABLE.get(action) or SPLIT_BY_FLOW[action]
    items = payload.get(spec.request_list)
    if not isinstance(items, list) or (limits.items is None and limits.bytes is None):
        return [payload]
    base = len(dump(Call(_UUID, action, {**payload, spec.request_list: []})))
    parts: list[list[object]] = []
    size = base
    for item in items:
        item_size = len(json.dumps(item, separators=(",", ":"))) + 1  # and its comma
        current = parts[-1] if parts else None
        fits = current is not None and (
            (limits.items is None or len(current) < limits.items)
            and (limits.bytes is None or size + item_size <= limits.bytes)
        )
        if current is not None and fits:
            current.append(item)
            size += item_size
        else:
            parts.append([item])
            size = base + item_size
    return [{**payload, spec.request_list: part} for part in parts] or [payload]


def join_replies(action: str, replies: list[Payload]) -> Payload:
    """The answers of the parts as one answer: the result lists, in request order."""
    spec = SPLITTABLE[action]
    joined: Payload = dict(replies[0])
    joined[spec.result_list] = [r for reply in replies for r in reply.get(spec.result_list, [])]
    return joined
