"""Issue 11: what a station sends is bounded before the CSMS computes with it or stores it.
Every refusal is the OCPP-J CALLERROR the spec names, nothing of a refused message is
stored, and no station's input stalls or fails another station."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

import pytest

from csms.app import Csms
from simulators.station import Station
from tests.e2e.conftest import StationFactory

TS = "2026-11-23T18:00:00Z"


def _call(message_id: str, action: str, payload: dict[str, Any]) -> str:
    return json.dumps([2, message_id, action, payload])


def _meter_values(value: Any = 1000.0, multiplier: Any = 0, ts: str = TS,
                  evse_id: Any = 1) -> dict[str, Any]:
    return {"evseId": evse_id, "meterValue": [{"timestamp": ts, "sampledValue": [
        {"value": value, "unitOfMeasure": {"unit": "Wh", "multiplier": multiplier}}]}]}


def _tx_event(transaction_id: str = "TX1", seq_no: int = 0, energy: Any = 1000.0,
              ts: str = TS, event_type: str = "Started") -> dict[str, Any]:
    return {
        "eventType": event_type, "timestamp": ts, "triggerReason": "CablePluggedIn",
        "seqNo": seq_no, "transactionInfo": {"transactionId": transaction_id},
        "evse": {"id": 1, "connectorId": 1},
        "meterValue": [{"timestamp": ts, "sampledValue": [{"value": energy}]}],
    }


async def _answer(station: Station, text: str, timeout: float = 5.0) -> list[Any]:
    raw = await station.send_raw(text, timeout=timeout)
    assert raw is not None, "no answer"
    return json.loads(raw)  # type: ignore[no-any-return]


async def _stored(csms: Csms) -> tuple[int, int]:
    meter = await csms.db.pool.fetchval("SELECT count(*) FROM meter_values")
    events = await csms.db.pool.fetchval("SELECT count(*) FROM transaction_events")
    return meter, events


# NaN, Infinity and 1e309 are written raw: JSON cannot hold them, Python's json emits them.
@pytest.mark.parametrize(
    ("text", "code"),
    [
        ('[2, "m1", "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": "' + TS
         + '", "sampledValue": [{"value": NaN}]}]}]', "FormatViolation"),
        ('[2, "m1", "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": "' + TS
         + '", "sampledValue": [{"value": -Infinity}]}]}]', "FormatViolation"),
        ('[2, "m1", "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": "' + TS
         + '", "sampledValue": [{"value": 1e309}]}]}]', "FormatViolation"),
        (_call("m1", "MeterValues", _meter_values(evse_id=2**31)), "PropertyConstraintViolation"),
        (_call("m1", "MeterValues", _meter_values(evse_id=10**30)), "FormatViolation"),
        (_call("m1", "MeterValues", _meter_values(multiplier=10_000_000)),
         "PropertyConstraintViolation"),
        (_call("m1", "MeterValues", _meter_values(value=1e11, multiplier=12)),
         "PropertyConstraintViolation"),
        (_call("m1", "MeterValues", _meter_values(ts="yesterday")), "FormatViolation"),
        (_call("m1", "MeterValues", _meter_values(ts="2026-02-30T10:00:00Z")),
         "FormatViolation"),
        (_call("m1", "TransactionEvent", _tx_event("TX\u0000")), "FormatViolation"),
        (_call("m1", "TransactionEvent", _tx_event("TX\ud800")), "FormatViolation"),
        (_call("m1", "TransactionEvent", _tx_event(ts="0001-01-01T00:00:00+01:00")),
         "FormatViolation"),
        ('[2, "m1", "TransactionEvent", ' + json.dumps(_tx_event()).replace(
            '"value": 1000.0', '"value": NaN') + "]", "FormatViolation"),
        ('[2, "m1", "DataTransfer", {"vendorId": "x", "data": ' + "[" * 1000 + "]" * 1000
         + "}]", "FormatViolation"),
    ],
    ids=["nan", "infinity", "1e309", "evse-beyond-int32", "30-digit-int", "huge-multiplier",
         "folded-beyond-physics", "timestamp-yesterday", "timestamp-feb-30", "nul-in-id",
         "lone-surrogate", "year-1", "nan-energy-in-event", "1000-nested-arrays"],
)
async def test_J01_E01_out_of_range_input_gets_the_spec_error_and_nothing_is_stored(
    csms: Csms, make_station: StationFactory, text: str, code: str
) -> None:
    station = await make_station("CS001")
    frame = await _answer(station, text)
    assert frame[:3] == [4, "m1", code], frame
    assert await _stored(csms) == (0, 0)  # stored whole or not at all
    assert "currentTime" in await station.call("Heartbeat", {})  # the connection survives


async def test_J01_a_huge_multiplier_does_not_stall_another_station(
    make_station: StationFactory,
) -> None:
    bad = await make_station("BAD")
    good = await make_station("GOOD")

    async def attack() -> None:
        for i in range(5):
            frame = await _answer(bad, _call(f"b{i}", "MeterValues",
                                             _meter_values(multiplier=50_000_000 + i)))
            assert frame[2] == "PropertyConstraintViolation"

    async def heartbeats() -> float:
        worst = 0.0
        for _ in range(20):
            started = time.perf_counter()
            await good.call("Heartbeat", {})
            worst = max(worst, time.perf_counter() - started)
        return worst

    _, worst = await asyncio.gather(attack(), heartbeats())
    assert worst < 0.5


async def test_E01_a_replayed_seq_no_changes_nothing(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    first = await _answer(station, _call("e1", "TransactionEvent", _tx_event(energy=1000.0)))
    assert first[0] == 3, first
    # the same seqNo again, with a meter value at another time and another register value
    replay = _tx_event(energy=5000.0, ts="2026-11-23T18:05:00Z")
    again = await _answer(station, _call("e2", "TransactionEvent", replay))
    assert again[0] == 3, again  # acknowledged: the station may drop it from its queue
    assert await _stored(csms) == (1, 1)
    tx = await csms.store.transactions.get("CS001", "TX1")
    assert tx is not None and tx.event_count == 1 and tx.meter_start_wh == 1000.0


async def test_J01_a_bad_station_never_fails_a_good_stations_meter_values(
    make_station: StationFactory,
) -> None:
    bad = await make_station("BAD")
    good = await make_station("GOOD")
    hostile = [
        _call("x", "TransactionEvent", _tx_event("TX\u0000")),
        _call("x", "TransactionEvent", _tx_event("TX\udc00")),
        _call("x", "MeterValues", _meter_values(evse_id=2**33)),
        '[2, "x", "MeterValues", {"evseId": 1, "meterValue": [{"timestamp": "' + TS
        + '", "sampledValue": [{"value": Infinity}]}]}]',
    ]

    async def attack() -> None:
        for i in range(40):
            await bad.send_raw(hostile[i % len(hostile)], timeout=2.0)

    async def meter_values() -> int:
        ok = 0
        for i in range(40):
            ts = f"2026-11-23T18:{i // 60:02d}:{i % 60:02d}Z"
            reply = await _answer(good, _call(f"g{i}", "MeterValues", _meter_values(ts=ts)))
            ok += reply[0] == 3
        return ok

    _, ok = await asyncio.gather(attack(), meter_values())
    assert ok == 40


async def test_rows_one_caller_gets_wrong_fail_only_that_callers_write(csms: Csms) -> None:
    """The group commit's second line: a batch PostgreSQL or asyncpg refuses is written
    again one caller apart, so the others' rows are stored."""
    from datetime import UTC, datetime

    from csms.store.meter import MeterRow

    def row(evse_id: int, tx: str) -> MeterRow:
        return MeterRow("CS001", evse_id, datetime(2026, 11, 23, tzinfo=UTC),
                        "Energy.Active.Import.Register", "", "Outlet", None, tx, 1.0, "Wh")

    writes = [csms.store.meter.write([row(i, "TX")]) for i in range(1, 9)]
    writes.append(csms.store.meter.write([row(2**40, "TX")]))  # no int4 holds it
    writes.append(csms.store.meter.write([row(99, "TX\u0000")]))  # no text holds it
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert [r is None for r in results] == [True] * 8 + [False, False]
    assert await csms.db.pool.fetchval("SELECT count(*) FROM meter_values") == 8


def _record(station_id: str, transaction_id: str, seq_no: int, energy: float,
            event_type: str = "Updated", evse_id: int = 1, note: str = "") -> Any:
    """A TransactionEvent as the handler hands it to the store, with one meter row."""
    from datetime import UTC, datetime, timedelta

    from csms.store.meter import MeterRow
    from csms.store.transactions import TransactionEventRecord

    at = datetime(2026, 11, 23, 18, tzinfo=UTC) + timedelta(minutes=seq_no)
    event = TransactionEventRecord(
        transaction_id=transaction_id, seq_no=seq_no, event_type=event_type,
        trigger_reason="MeterValuePeriodic", timestamp=at, offline=False, evse_id=evse_id,
        connector_id=1, id_token=None, token_type=None, charging_state="Charging",
        stopped_reason=None, energy_min_wh=energy, energy_max_wh=energy,
        payload={"seqNo": seq_no, "note": note})
    row = MeterRow(station_id, evse_id, at, "Energy.Active.Import.Register", "", "Outlet",
                   "Sample.Periodic", transaction_id, energy, "Wh")
    return event, at, [row]


async def test_E_events_of_many_stations_share_commits_and_a_refused_one_fails_alone(
    csms: Csms,
) -> None:
    """TransactionEvents are group-committed: the others' events are stored whole when
    PostgreSQL refuses one (an int4 overflow, a NUL in its JSON), and only its caller
    hears of it."""
    for sid in [f"S{i:02}" for i in range(30)] + ["BIG", "NUL"]:
        await csms.store.stations.add(sid, None, csms.clock.now())
    writes = []
    for i in range(30):
        event, at, rows = _record(f"S{i:02}", "TX", 0, 1000.0 + i, "Started")
        writes.append(csms.store.transactions.record_event(f"S{i:02}", event, at, rows))
    event, at, rows = _record("BIG", "TX", 0, 1.0, "Started", evse_id=2**40)
    writes.append(csms.store.transactions.record_event("BIG", event, at, rows))
    event, at, rows = _record("NUL", "TX", 0, 1.0, "Started", note="A\u0000B")
    writes.append(csms.store.transactions.record_event("NUL", event, at, rows))
    results = await asyncio.gather(*writes, return_exceptions=True)
    assert results[:30] == [True] * 30
    assert all(isinstance(r, Exception) for r in results[30:]), results[30:]
    assert await _stored(csms) == (30, 30)
    assert await csms.db.pool.fetchval("SELECT count(*) FROM transactions") == 30
    assert not await csms.db.pool.fetchval(
        "SELECT count(*) FROM transactions WHERE station_id IN ('BIG', 'NUL')")


async def test_E_one_transactions_events_in_one_batch_apply_in_order_once(csms: Csms) -> None:
    """A station that sends its events without waiting for answers, and replays one: in
    one group commit each event is applied once, in order, and the replay changes
    nothing."""
    await csms.store.stations.add("CS001", None, csms.clock.now())
    kinds = ["Started"] + ["Updated"] * 8 + ["Ended"]
    records = [_record("CS001", "TX9", seq, 1000.0 + 100 * seq, kind)
               for seq, kind in enumerate(kinds)]
    records.insert(5, _record("CS001", "TX9", 3, 99_999.0))  # seqNo 3 again
    results = await asyncio.gather(*(csms.store.transactions.record_event("CS001", *r)
                                     for r in records))
    assert results == [True] * 5 + [False] + [True] * 5
    tx = await csms.store.transactions.get("CS001", "TX9")
    assert tx is not None
    assert (tx.event_count, tx.max_seq_no) == (10, 9)
    assert (tx.meter_start_wh, tx.meter_stop_wh) == (1000.0, 1900.0)
    assert tx.ended_at is not None and tx.stopped_reason == "Local"
    assert await _stored(csms) == (10, 10)


async def test_an_oversized_frame_closes_with_1009_and_no_handler_crash(
    csms: Csms, make_station: StationFactory, caplog: pytest.LogCaptureFixture
) -> None:
    station = await make_station("BIG")
    big = json.dumps([2, "big", "DataTransfer", {"vendorId": "x", "data": "A" * 100_000}])
    with caplog.at_level(logging.ERROR):
        assert await station.send_raw(big, timeout=1.0) is None
        for _ in range(100):
            if not csms.connections.is_connected("BIG"):
                break
            await asyncio.sleep(0.05)
        await asyncio.sleep(0.2)
    assert not csms.connections.is_connected("BIG")
    crashes = [r for r in caplog.records if r.exc_info]
    assert not crashes, [r.getMessage() for r in crashes]


async def test_an_unusable_answer_to_a_csms_call_fails_it_at_once(csms: Csms, url: str) -> None:
    """A station's CALLRESULT holding NaN fails the CSMS's CALL with FormatViolation now,
    not after the call timeout, and the station is not sent a CALLERROR for it."""
    import websockets

    from csms.connection import CallFailed

    await csms.store.stations.add("RAW", None, csms.clock.now())
    async with websockets.connect(f"{url}/RAW", subprotocols=["ocpp2.0.1"]) as ws:  # type: ignore[list-item]
        await ws.send(json.dumps([2, "b", "BootNotification", {
            "reason": "PowerUp", "chargingStation": {"model": "m", "vendorName": "v"}}]))
        assert json.loads(await ws.recv())[0] == 3
        call = asyncio.create_task(csms.commands.call("RAW", "ClearCache", {}, timeout=30))
        request = json.loads(await ws.recv())
        started = time.perf_counter()
        await ws.send(f'[3, "{request[1]}", {{"status": NaN}}]')
        with pytest.raises(CallFailed) as failed:
            await call
        assert failed.value.code == "FormatViolation"
        assert time.perf_counter() - started < 2.0
        with pytest.raises(TimeoutError):
            await asyncio.wait_for(ws.recv(), 0.3)  # nothing sent back for it
