"""E13: a TransactionEvent the CSMS fails to process (no answer, or CALLERROR) while the
station is connected is sent again, MessageAttemptInterval x attempt number apart, up to
MessageAttempts times, and the later events follow it in order."""

from __future__ import annotations

from collections import Counter
from itertools import pairwise

from tests.simulators.test_station import charging_station, eventually

QUICK = {"call_timeout_s": 0.3, "meter_interval_s": 3600.0}  # wall-clock timeout


def _seq_nos(peer) -> list[int]:
    return [p["seqNo"] for p in peer.of("TransactionEvent")]


async def _trigger_update(peer) -> None:
    """Have the station send one TransactionEvent (Updated, triggerReason Trigger)."""
    await peer.result(
        "TriggerMessage", {"requestedMessage": "TransactionEvent", "evse": {"id": 1}}
    )


async def test_E13_timed_out_event_is_retried_while_connected_and_later_ones_follow(
    peer, stations
):
    st = await charging_station(peer, stations, tx_message_attempt_interval_s=60.0, **QUICK)
    failing = len(peer.of("TransactionEvent"))  # seqNo of the next event
    seen: Counter[int] = Counter()
    arrived_at = []

    def answer(p: dict):
        seen[p["seqNo"]] += 1
        if p["seqNo"] == failing:
            arrived_at.append(st.clock.now())
            if seen[failing] <= 2:
                return None  # stay silent: the station times out
        return {}

    peer.answers["TransactionEvent"] = answer
    await _trigger_update(peer)
    await peer.wait_for("TransactionEvent", where=lambda p: p["seqNo"] == failing)
    await st.unplug(1)  # Ended is produced while the Trigger event is still unanswered
    await peer.wait_for("TransactionEvent", where=lambda p: p["eventType"] == "Ended")

    seq = _seq_nos(peer)
    assert seq[failing:] == [failing, failing, failing, failing + 1]  # retried, then in order
    assert peer.of("TransactionEvent")[-1]["eventType"] == "Ended"
    gaps = [(b - a).total_seconds() for a, b in pairwise(arrived_at)]
    assert gaps[0] >= 60 and gaps[1] >= 120  # interval x number of preceding attempts
    assert st.connected and st.connects == 1  # no reconnect was needed
    await eventually(lambda: st.queued_messages == 0)
    assert st.discarded_messages == 0


async def test_E13_event_refused_with_callerror_is_discarded_after_message_attempts(
    peer, stations
):
    st = await charging_station(peer, stations, **QUICK)
    result = await peer.result(
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "MessageAttempts", "instance": "TransactionEvent"},
                    "attributeValue": "2",
                }
            ]
        },
    )
    assert result["setVariableResult"][0]["attributeStatus"] == "Accepted"
    failing = len(peer.of("TransactionEvent"))
    peer.answers["TransactionEvent"] = (
        lambda p: ("error", "InternalError") if p["seqNo"] == failing else {}
    )
    await _trigger_update(peer)
    await peer.wait_for("TransactionEvent", where=lambda p: p["seqNo"] == failing)
    await st.unplug(1)
    await peer.wait_for("TransactionEvent", where=lambda p: p["eventType"] == "Ended")

    assert _seq_nos(peer)[failing:] == [failing, failing, failing + 1]  # 2 attempts, then on
    assert st.discarded_messages == 1
    await eventually(lambda: st.queued_messages == 0)
    assert _seq_nos(peer).count(failing) == 2  # never sent again


async def test_E13_unanswered_event_stays_queued_when_the_connection_drops(peer, stations):
    st = await charging_station(peer, stations, **QUICK)
    failing = len(peer.of("TransactionEvent"))
    peer.answers["TransactionEvent"] = lambda p: None  # the CSMS stopped answering
    await _trigger_update(peer)
    await peer.wait_for("TransactionEvent", where=lambda p: p["seqNo"] == failing)
    await st.disconnect()
    await st.unplug(1)
    assert st.queued_messages == 2  # the unanswered one first, then Ended (offline)
    assert st.discarded_messages == 0

    del peer.answers["TransactionEvent"]
    await st.reconnect()
    await peer.wait_for("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
    late = peer.of("TransactionEvent")[failing:]
    assert [p["seqNo"] for p in late][-2:] == [failing, failing + 1]
    assert "offline" not in late[-2] and late[-1]["offline"] is True
    await eventually(lambda: st.queued_messages == 0)


async def test_B_message_attempt_variables_are_reported_with_their_instance(peer, stations):
    st = stations(peer.url, tx_message_attempts=5, tx_message_attempt_interval_s=30.0)
    await st.start()
    got = await peer.result(
        "GetVariables",
        {
            "getVariableData": [
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": name, "instance": "TransactionEvent"},
                }
                for name in ("MessageAttempts", "MessageAttemptInterval")
            ]
        },
    )
    assert [r["attributeValue"] for r in got["getVariableResult"]] == ["5", "30"]
