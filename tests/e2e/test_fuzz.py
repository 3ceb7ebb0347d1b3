"""Issue 11, fuzzing: property-based tests (hypothesis) of the frame parser and of every
charger-initiated action, over a real socket and the real database.

Invariants: the parser only ever raises FrameError; every frame gets a CALLRESULT or a
CALLERROR with a code of OCPP-J (never InternalError, never a closed socket); another
station keeps answering; the database holds exactly the events acknowledged. Payloads are
drawn from the official schemas, near-valid: integers and decimals of any size, strings
with NUL, lone surrogates and odd characters, timestamps that are not. Examples are kept
few (seconds, not minutes, of the suite).
"""

from __future__ import annotations

import json
from importlib import resources
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from csms import frames, metrics
from csms.app import Csms
from csms.ocpp.schemas import known_actions
from tests.e2e.conftest import StationFactory

SPEC_CODES = {
    "FormatViolation", "GenericError", "InternalError", "MessageTypeNotSupported",
    "NotImplemented", "NotSupported", "OccurrenceConstraintViolation",
    "PropertyConstraintViolation", "ProtocolError", "RpcFrameworkError", "SecurityError",
    "TypeConstraintViolation",
}
FAST = settings(max_examples=60, database=None, deadline=None,
                suppress_health_check=list(HealthCheck))

HOSTILE_STRINGS = ["", "\x00", "A\x00B", "\ud800", "x\udfff", "\u202e", "\ufeff", "é" * 40,
                   "yesterday", "2026-13-45T99:99:99Z", "9999-12-31T23:59:59-23:59"]
EXTREME_NUMBERS = [0, -1, 2**31 - 1, 2**31, -(2**31) - 1, 2**63, 10**25, 1e12, 1e13, -1e300,
                   5e-324, float("nan"), float("inf"), float("-inf")]
strings = st.one_of(st.text(max_size=60), st.sampled_from(HOSTILE_STRINGS),
                    st.text(alphabet=st.characters(codec=None), max_size=20))
integers = st.one_of(st.integers(-(2**40), 2**40), st.sampled_from(EXTREME_NUMBERS))
numbers = st.one_of(st.floats(), integers)
date_times = st.one_of(
    st.datetimes().map(lambda d: d.isoformat() + "Z"), st.sampled_from(HOSTILE_STRINGS))


def _schema(action: str, folder: str = "v201") -> dict[str, Any]:
    path = resources.files("ocpp") / folder / "schemas" / f"{action}Request.json"
    return json.loads(path.read_text(encoding="utf-8-sig"))  # type: ignore[no-any-return]


def near_valid(root: dict[str, Any], node: dict[str, Any] | None = None,
               depth: int = 0) -> st.SearchStrategy[Any]:
    """Values shaped by the schema but not held to its limits (and a few of other types)."""
    node = root if node is None else node
    if "$ref" in node:
        return near_valid(root, root["definitions"][node["$ref"].rsplit("/", 1)[1]], depth)
    kind = node.get("type")
    if "enum" in node:
        strategy: st.SearchStrategy[Any] = st.one_of(st.sampled_from(node["enum"]), strings)
    elif kind == "object" and depth < 6:
        props = node.get("properties", {})
        required = [k for k in node.get("required", []) if k in props]
        optional = [k for k in props if k not in required]
        strategy = st.fixed_dictionaries(
            {k: near_valid(root, props[k], depth + 1) for k in required},
            optional={k: near_valid(root, props[k], depth + 1) for k in optional},
        )
    elif kind == "array" and depth < 6:
        strategy = st.lists(near_valid(root, node.get("items", {}), depth + 1),
                            min_size=0, max_size=min(node.get("maxItems", 4), 4))
    elif kind == "integer":
        strategy = integers
    elif kind == "number":
        strategy = numbers
    elif kind == "boolean":
        strategy = st.booleans()
    elif kind == "string":
        strategy = date_times if node.get("format") == "date-time" else strings
    else:
        strategy = st.just({})
    # now and then a value of another type, which the schema must refuse
    return st.one_of(strategy, strategy, strategy, st.sampled_from([None, [], {}, "x", 1]))


@FAST
@given(st.one_of(
    st.text(max_size=200),
    st.binary(max_size=200),
    st.lists(st.one_of(st.integers(), st.text(max_size=10), st.floats(), st.none(),
                       st.dictionaries(st.text(max_size=5), st.integers(), max_size=3)),
             max_size=6).map(json.dumps),
    st.tuples(st.sampled_from([2, 3, 4, 5, 6, 7, "2"]), strings, strings,
              st.dictionaries(strings, numbers, max_size=3)).map(list).map(json.dumps),
))
def test_the_frame_parser_raises_only_frame_errors(text: str | bytes) -> None:
    try:
        frame = frames.parse(text)
    except frames.FrameError as exc:
        assert exc.code in SPEC_CODES
        return
    assert isinstance(frame, frames.Call | frames.CallResult | frames.CallError | frames.Send
                      | frames.CallResultError)
    frames.dump(frame)  # what was accepted can be written back


def draw(action: str, count: int, folder: str = "v201") -> list[str]:
    """`count` frames of `action`, drawn by hypothesis from its schema in the `ocpp`
    package's `folder` (v201, v21)."""
    drawn: list[str] = []
    schema = _schema(action, folder)

    @settings(max_examples=count, database=None, deadline=None,
              suppress_health_check=list(HealthCheck))
    @given(near_valid(schema))
    def collect(payload: Any) -> None:
        drawn.append(json.dumps([2, f"f{len(drawn)}", action, payload]))

    collect()
    return drawn


async def test_every_charger_initiated_action_survives_near_valid_payloads(
    csms: Csms, make_station: StationFactory
) -> None:
    fuzzed = await make_station("FUZZ")
    calm = await make_station("CALM")
    internal_before = metrics.errors.labels("InternalError")._value.get()
    acknowledged_events: set[tuple[str, int]] = set()
    answered = 0
    actions = sorted(set(csms.ocpp.router.table) & known_actions("2.0.1"))  # type: ignore[attr-defined]
    for action in actions:  # the simulator speaks 2.0.1: tests/api/test_ocpp21.py has 2.1's
        for text in draw(action, 12):
            raw = await fuzzed.send_raw(text, timeout=5.0)
            assert raw is not None, f"no answer to {text[:300]}"
            reply = json.loads(raw)
            sent = json.loads(text)
            assert reply[1] == sent[1], (reply, text[:300])
            if reply[0] == 4:
                assert reply[2] in SPEC_CODES - {"InternalError"}, (reply, text[:300])
            else:
                assert reply[0] == 3, reply
                payload = sent[3]
                if action == "TransactionEvent":
                    acknowledged_events.add(
                        (payload["transactionInfo"]["transactionId"], payload["seqNo"]))
            answered += 1
        assert "currentTime" in await calm.call("Heartbeat", {})  # the other station
    assert metrics.errors.labels("InternalError")._value.get() == internal_before
    stored = await csms.db.pool.fetch(
        "SELECT transaction_id, seq_no FROM transaction_events WHERE station_id = 'FUZZ'")
    assert {(r["transaction_id"], r["seq_no"]) for r in stored} == acknowledged_events
    assert answered >= 12 * len(actions)
