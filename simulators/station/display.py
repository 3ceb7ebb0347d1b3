"""Block O, display messages: the station keeps the messages the CSMS sets (O01/O02, the
same id replaces one: O06), reports them in parts (O03/O04) and clears them (O05).

Its reading of the spec: HTML is not a format this display supports
(NotSupportedMessageFormat); a message bound to a transaction that is not running is
refused (UnknownTransaction) and is dropped once that transaction ends; at most
`MAX_MESSAGES` are kept (Rejected beyond that); a report is sent `PER_PART` messages to a
NotifyDisplayMessages, and a request that matches none is answered Unknown.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from simulators.clock import parse_ocpp
from simulators.station.replies import Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station

SUPPORTED_FORMATS = ("ASCII", "UTF8", "URI")
MAX_MESSAGES = 20
PER_PART = 4


def messages(station: Station) -> dict[int, dict]:
    """The messages the station holds now, by id (ended and orphaned ones dropped)."""
    held = station.display_messages
    running = {e.tx.transaction_id for e in station.evses.values() if e.tx is not None}
    now = station.clock.now()
    for message_id, info in list(held.items()):
        end = info.get("endDateTime")
        if (end and parse_ocpp(end) <= now) or (
                info.get("transactionId") and info["transactionId"] not in running):
            del held[message_id]
    return held


def shown(station: Station) -> list[str]:
    """The texts on the display now, highest priority first (for tests)."""
    order = {"AlwaysFront": 0, "InFront": 1, "NormalCycle": 2}
    now = station.clock.now()
    live = [i for i in messages(station).values()
            if not i.get("startDateTime") or parse_ocpp(i["startDateTime"]) <= now]
    return [i["message"]["content"] for i in sorted(live, key=lambda i: order[i["priority"]])]


async def set_display_message(station: Station, req: dict) -> Reply:
    info = req["message"]
    held = messages(station)
    if info["message"]["format"] not in SUPPORTED_FORMATS:
        return rejected("UnsupportedFormat", info["message"]["format"],
                        "NotSupportedMessageFormat"), None
    tx_id = info.get("transactionId")
    if tx_id and tx_id not in {e.tx.transaction_id for e in station.evses.values() if e.tx}:
        return rejected("TxNotFound", f"no transaction {tx_id}", "UnknownTransaction"), None
    evse = (info.get("display") or {}).get("evse")
    if evse is not None and evse["id"] not in station.evses:
        return rejected("UnknownEvse", f"no EVSE {evse['id']}"), None
    if info["id"] not in held and len(held) >= MAX_MESSAGES:
        return rejected("TooManyMessages", f"at most {MAX_MESSAGES} messages"), None
    held[info["id"]] = info
    return {"status": "Accepted"}, None


async def get_display_messages(station: Station, req: dict) -> Reply:
    ids = set(req.get("id") or ())
    found = [info for message_id, info in sorted(messages(station).items())
             if (not ids or message_id in ids)
             and req.get("priority") in (None, info["priority"])
             and req.get("state") in (None, info.get("state"))]
    if not found:
        return {"status": "Unknown"}, None
    request_id = req["requestId"]

    async def report() -> None:
        parts = [found[i:i + PER_PART] for i in range(0, len(found), PER_PART)]
        for i, part in enumerate(parts):
            await station.call("NotifyDisplayMessages", {
                "requestId": request_id, "tbc": i < len(parts) - 1, "messageInfo": part})

    return {"status": "Accepted"}, report


async def clear_display_message(station: Station, req: dict) -> Reply:
    if messages(station).pop(req["id"], None) is None:
        return {"status": "Unknown"}, None
    return {"status": "Accepted"}, None
