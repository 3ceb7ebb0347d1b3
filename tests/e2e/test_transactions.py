"""Block E (transactions) and J (meter values), with offline delivery and replays."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from csms.app import Csms
from simulators.clock import AcceleratedClock
from simulators.ev import EV
from simulators.station import Station
from tests.e2e.conftest import StationFactory
from tests.support import eventually


async def _transaction(csms: Csms, station_id: str, transaction_id: str):  # type: ignore[no-untyped-def]
    return await csms.store.transactions.get(station_id, transaction_id)


async def _charge(station: Station, csms: Csms, seconds_of_meter: int = 2) -> str:
    """Plug in, authorize, and wait until the CSMS has stored some energy."""
    await csms.store.tokens.add("GOOD", "ISO14443", csms.clock.now())
    await station.plug_in(1, EV(battery_kwh=60, soc=0.2, energy_wanted_wh=30_000))
    assert await station.present_token(1, "GOOD") == "Accepted"
    transaction_id = station.transaction_id(1)
    assert transaction_id

    async def energy_stored() -> bool:
        tx = await _transaction(csms, station.station_id, transaction_id)
        return bool(tx and tx.energy_wh and tx.energy_wh > 0 and tx.event_count > 2)

    await eventually(energy_stored, timeout=15)
    return transaction_id


def fast_clock() -> AcceleratedClock:
    return AcceleratedClock(datetime(2026, 11, 23, 18, 0, tzinfo=UTC), speed=60)


async def test_E02_start_transaction_cable_first(csms: Csms, make_station: StationFactory) -> None:
    station = await make_station("CS001", meter_interval_s=30.0, clock=fast_clock())
    transaction_id = await _charge(station, csms)
    await station.unplug(1)

    async def ended() -> bool:
        tx = await _transaction(csms, "CS001", transaction_id)
        return bool(tx and tx.ended_at)

    await eventually(ended)
    tx = await _transaction(csms, "CS001", transaction_id)
    assert tx is not None
    assert tx.evse_id == 1 and tx.id_token == "GOOD" and tx.token_type == "ISO14443"
    assert tx.stopped_reason == "EVDisconnected"
    # Energy is the register at the end minus the register at the start, as the meter says.
    assert tx.meter_stop_wh is not None and tx.energy_wh is not None
    assert abs(tx.meter_stop_wh - station.energy_wh(1)) < 1.0
    assert tx.energy_wh > 100  # 22 kW for a few simulated minutes
    rows = await csms.db.pool.fetch(
        "SELECT DISTINCT measurand FROM meter_values WHERE transaction_id = $1", transaction_id
    )
    assert {"Energy.Active.Import.Register", "Power.Active.Import", "Current.Import"} <= {
        r["measurand"] for r in rows
    }
    connectors = await csms.store.devices.connectors("CS001")
    assert connectors[0].status == "Available"


async def test_E_transaction_event_with_token_answers_id_token_info(
    csms: Csms, make_station: StationFactory
) -> None:
    await csms.store.tokens.add("BLOCKED", "ISO14443", csms.clock.now(), status="Blocked")
    station = await make_station("CS001")
    reply = await station.call("TransactionEvent", _event("T9", 0, "Started", token="BLOCKED"))
    assert reply["idTokenInfo"]["status"] == "Blocked"


def _event(
    transaction_id: str, seq_no: int, event_type: str, *, energy_wh: float | None = None,
    minutes: int = 0, offline: bool = False, token: str | None = None,
) -> dict:
    ts = (datetime(2026, 11, 23, 18, 0, tzinfo=UTC) + timedelta(minutes=minutes))
    stamp = ts.isoformat().replace("+00:00", "Z")
    event: dict = {
        "eventType": event_type,
        "timestamp": stamp,
        "triggerReason": {"Started": "CablePluggedIn", "Ended": "EVDeparted"}.get(
            event_type, "MeterValuePeriodic"
        ),
        "seqNo": seq_no,
        "transactionInfo": {"transactionId": transaction_id},
    }
    if event_type == "Started":
        event["evse"] = {"id": 1, "connectorId": 1}
    if event_type == "Ended":
        event["transactionInfo"]["stoppedReason"] = "EVDisconnected"
    if offline:
        event["offline"] = True
    if token:
        event["idToken"] = {"idToken": token, "type": "ISO14443"}
    if energy_wh is not None:
        event["meterValue"] = [{
            "timestamp": stamp,
            "sampledValue": [{"value": energy_wh, "measurand": "Energy.Active.Import.Register",
                              "unitOfMeasure": {"unit": "kWh", "multiplier": 0}}],
        }]
        event["meterValue"][0]["sampledValue"][0]["value"] = energy_wh / 1000
    return event


async def test_E_out_of_order_and_replayed_events_give_the_same_totals(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    events = [
        _event("T1", 0, "Started", energy_wh=1_000, minutes=0),
        _event("T1", 1, "Updated", energy_wh=4_000, minutes=20),
        _event("T1", 2, "Updated", energy_wh=7_000, minutes=40),
        _event("T1", 3, "Ended", energy_wh=9_500, minutes=60),
    ]
    for index in (2, 0, 3, 1):  # late and out of order
        await station.call("TransactionEvent", events[index])
    for index in (1, 3):  # a station that retries after a lost answer
        await station.call("TransactionEvent", events[index])
    tx = await _transaction(csms, "CS001", "T1")
    assert tx is not None
    assert (tx.meter_start_wh, tx.meter_stop_wh, tx.energy_wh) == (1_000, 9_500, 8_500)
    assert tx.event_count == 4 and tx.max_seq_no == 3
    assert tx.ended_at is not None and tx.stopped_reason == "EVDisconnected"
    assert tx.evse_id == 1  # known from the Started event, even though it came second
    stored = await csms.db.pool.fetchval(
        "SELECT count(*) FROM meter_values WHERE transaction_id = 'T1'"
    )
    assert stored == 4


async def test_E_offline_events_are_delivered_in_order_and_stored(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001", meter_interval_s=30.0, clock=fast_clock())
    transaction_id = await _charge(station, csms)
    await station.disconnect()
    await eventually(_queued(station), timeout=10)  # meter values queue while offline
    await station.unplug(1)
    queued = station.queued_messages
    assert queued >= 2
    await station.reconnect()

    async def delivered() -> bool:
        tx = await _transaction(csms, "CS001", transaction_id)
        return bool(tx and tx.ended_at and station.queued_messages == 0)

    await eventually(delivered, timeout=15)
    tx = await _transaction(csms, "CS001", transaction_id)
    assert tx is not None and tx.offline_events >= queued - 1
    assert abs((tx.meter_stop_wh or 0) - station.energy_wh(1)) < 1.0
    seq = await csms.db.pool.fetch(
        "SELECT seq_no FROM transaction_events WHERE transaction_id = $1 ORDER BY seq_no",
        transaction_id,
    )
    assert [r["seq_no"] for r in seq] == list(range(len(seq)))  # no gaps: nothing lost


def _queued(station: Station):  # type: ignore[no-untyped-def]
    async def check() -> bool:
        return station.queued_messages >= 1
    return check


async def test_J01_meter_values_outside_a_transaction_are_stored_once(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    payload = {"evseId": 0, "meterValue": [{
        "timestamp": "2026-11-23T18:00:00Z",
        "sampledValue": [
            {"value": 12.5, "measurand": "Energy.Active.Import.Register",
             "unitOfMeasure": {"unit": "kWh"}},
            {"value": 230.1, "measurand": "Voltage", "phase": "L1-N"},
        ],
    }]}
    await station.call("MeterValues", payload)
    await station.call("MeterValues", payload)  # retried after a lost answer
    rows = await csms.db.pool.fetch(
        "SELECT measurand, phase, value, unit FROM meter_values WHERE station_id = 'CS001'"
        " ORDER BY measurand"
    )
    assert [tuple(r) for r in rows] == [
        ("Energy.Active.Import.Register", "", 12_500.0, "Wh"),
        ("Voltage", "L1-N", 230.1, None),
    ]


async def test_J01_clock_aligned_meter_values_after_the_csms_sets_the_interval(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001", clock=fast_clock())  # 60x: 60 s interval = 1 s
    results = await csms.commands.set_variables("CS001", [("AlignedDataCtrlr", "Interval", "60")])
    assert results[0]["attributeStatus"] == "Accepted"

    async def aligned() -> list:
        return await csms.db.pool.fetch(
            "SELECT ts, value FROM meter_values WHERE station_id = 'CS001'"
            " AND context = 'Sample.Clock' AND measurand = 'Energy.Active.Import.Register'"
            " ORDER BY ts"
        )

    rows = await eventually(aligned, timeout=10)
    assert all(r["ts"].second <= 2 for r in rows)  # on the minute (60x clock: allow 2 s)
    assert station.connected
