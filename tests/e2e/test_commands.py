"""CSMS-initiated commands (blocks B, C, D, F, G, K) sent to a simulated station."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest

from csms.app import Csms
from csms.clock import to_ocpp
from csms.connection import CallFailed, StationOffline
from simulators.ev import EV
from tests.e2e.conftest import StationFactory
from tests.support import eventually


def tx_profile(transaction_id: str | None, limit_a: float, *, profile_id: int = 1,
               first_start: int = 0) -> dict:
    profile: dict = {
        "id": profile_id,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [{
            "id": 1,
            "chargingRateUnit": "A",
            "chargingSchedulePeriod": [{"startPeriod": first_start, "limit": limit_a}],
        }],
    }
    if transaction_id:
        profile["transactionId"] = transaction_id
    return profile


async def _charging(csms: Csms, make_station: StationFactory):  # type: ignore[no-untyped-def]
    await csms.store.tokens.add("GOOD", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    await station.plug_in(1, EV(battery_kwh=60, soc=0.2, energy_wanted_wh=30_000))
    await station.present_token(1, "GOOD")
    transaction_id = station.transaction_id(1)
    assert transaction_id
    return station, transaction_id


async def test_K01_set_charging_profile_is_obeyed(
    csms: Csms, make_station: StationFactory
) -> None:
    station, transaction_id = await _charging(csms, make_station)
    assert station.power_w(1) > 20_000  # 32 A x 3 x 230 V before any profile
    reply = await csms.commands.set_charging_profile("CS001", 1, tx_profile(transaction_id, 10))
    assert reply["status"] == "Accepted"
    assert station.composite_limit(1) == (10.0, "A")

    async def slowed() -> bool:
        return 0 < station.power_w(1) <= 10 * 3 * 230 + 1

    await eventually(slowed)
    composite = await csms.commands.get_composite_schedule("CS001", 1, 3600, "A")
    assert composite["status"] == "Accepted"
    assert composite["schedule"]["chargingSchedulePeriod"][0]["limit"] == 10


async def test_K01_invalid_profile_is_rejected_with_a_reason(
    csms: Csms, make_station: StationFactory
) -> None:
    await make_station("CS001")
    reply = await csms.commands.set_charging_profile("CS001", 1, tx_profile("NOT-RUNNING", 10))
    assert reply["status"] == "Rejected"
    assert reply["statusInfo"]["reasonCode"] == "TxNotFound"
    reply = await csms.commands.set_charging_profile(
        "CS001", 1, tx_profile(None, 10, first_start=60) | {"chargingProfilePurpose":
                                                            "TxDefaultProfile"}
    )
    assert reply["status"] == "Rejected"


async def test_K10_clear_and_get_charging_profiles(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    default = tx_profile(None, 16, profile_id=7) | {"chargingProfilePurpose": "TxDefaultProfile"}
    assert (await csms.commands.set_charging_profile("CS001", 0, default))["status"] == "Accepted"
    assert station.composite_limit(1) == (16.0, "A")
    got = await csms.commands.get_charging_profiles("CS001", purpose="TxDefaultProfile")
    assert got["status"] == "Accepted"

    async def reported() -> bool:
        reports = await csms.store.station_reports.list("CS001", "ChargingProfiles")
        return bool(reports) and reports[0].complete \
            and reports[0].items[0]["chargingProfile"]["id"] == 7

    await eventually(reported)
    cleared = await csms.commands.clear_charging_profile("CS001", 7)
    assert cleared["status"] == "Accepted"
    assert station.composite_limit(1) is None  # no profile left to limit the EVSE
    again = await csms.commands.clear_charging_profile("CS001", 7)
    assert again["status"] == "Unknown"


async def test_F01_F03_remote_start_and_stop(csms: Csms, make_station: StationFactory) -> None:
    station = await make_station("CS001")
    await station.plug_in(1, EV())
    started = await csms.commands.request_start_transaction("CS001", "REMOTE", evse_id=1)
    assert started["status"] == "Accepted"

    async def charging() -> bool:
        return station.power_w(1) > 0

    await eventually(charging)
    transaction_id = station.transaction_id(1)
    assert transaction_id
    status = await csms.commands.get_transaction_status("CS001", transaction_id)
    assert status["ongoingIndicator"] is True
    stopped = await csms.commands.request_stop_transaction("CS001", transaction_id)
    assert stopped["status"] == "Accepted"

    async def ended() -> bool:
        tx = await csms.store.transactions.get("CS001", transaction_id)
        return bool(tx and tx.ended_at)

    await eventually(ended)
    assert (await csms.commands.request_stop_transaction("CS001", "nope"))["status"] == "Rejected"


async def test_B_get_and_set_variables_store_the_device_model(
    csms: Csms, make_station: StationFactory
) -> None:
    await make_station("CS001")
    results = await csms.commands.get_variables(
        "CS001", [("SmartChargingCtrlr", "RateUnit"), ("SmartChargingCtrlr", "NoSuchThing")]
    )
    assert [r["attributeStatus"] for r in results] == ["Accepted", "UnknownVariable"]
    stored = await csms.store.devices.variables("CS001", "SmartChargingCtrlr")
    assert [(v.variable, v.value) for v in stored] == [("RateUnit", results[0]["attributeValue"])]
    set_results = await csms.commands.set_variables(
        "CS001", [("OCPPCommCtrlr", "HeartbeatInterval", "120")]
    )
    assert set_results[0]["attributeStatus"] == "Accepted"
    report = await csms.commands.get_base_report("CS001")
    assert report["status"] == "Accepted"


async def test_G_B_remote_operations(csms: Csms, make_station: StationFactory) -> None:
    await make_station("CS001")
    assert (await csms.commands.change_availability("CS001", False, 1))["status"] == "Accepted"

    async def unavailable() -> bool:
        connectors = await csms.store.devices.connectors("CS001")
        return any(c.status == "Unavailable" for c in connectors)

    await eventually(unavailable)
    assert (await csms.commands.trigger_message("CS001", "Heartbeat"))["status"] == "Accepted"
    assert (await csms.commands.unlock_connector("CS001", 1))["status"] in (
        "Unlocked", "UnlockFailed", "OngoingAuthorizedTransaction", "UnknownConnector"
    )
    assert (await csms.commands.clear_cache("CS001"))["status"] in ("Accepted", "Rejected")
    local = await csms.commands.send_local_list("CS001", 3, [("GOOD", "ISO14443", "Accepted")])
    assert local["status"] == "Accepted"
    assert await csms.commands.get_local_list_version("CS001") == 3
    assert (await csms.commands.reset("CS001", "OnIdle"))["status"] in ("Accepted", "Scheduled")


async def test_command_to_an_offline_station_fails_clearly(csms: Csms) -> None:
    with pytest.raises(StationOffline):
        await csms.commands.reset("GHOST")


async def test_command_that_gets_no_answer_times_out(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.drop_responses = True
    with pytest.raises(TimeoutError):
        await csms.commands.call("CS001", "ClearCache", {}, timeout=0.5)
    station.drop_responses = False
    assert (await csms.commands.clear_cache("CS001"))["status"] in ("Accepted", "Rejected")


async def test_callerror_from_the_station_comes_back_with_its_code(
    csms: Csms, make_station: StationFactory
) -> None:
    await make_station("CS001")
    with pytest.raises(CallFailed) as failed:  # a CSMS-to-station action the sim lacks
        await csms.commands.call("CS001", "PublishFirmware", {
            "location": "https://example.test/fw.bin", "checksum": "0" * 32, "requestId": 1})
    assert failed.value.code in ("NotImplemented", "NotSupported")


async def test_station_calls_are_not_blocked_behind_a_slow_csms_call(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.response_delay_s = 2.0
    slow = asyncio.create_task(csms.commands.clear_cache("CS001"))
    await asyncio.sleep(0.1)
    started = asyncio.get_running_loop().time()
    await station.call("Heartbeat", {})
    assert asyncio.get_running_loop().time() - started < 1.0
    assert not slow.done()
    await slow


async def test_one_csms_call_in_flight_per_station(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.response_delay_s = 0.3
    results = await asyncio.gather(*[csms.commands.clear_cache("CS001") for _ in range(4)])
    assert len(results) == 4
    # the station saw them one after another: its own log shows no overlap
    assert station.received_calls.count("ClearCache") == 4


async def test_K15_ev_charging_needs_are_stored_on_the_transaction(
    csms: Csms, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    departure = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
    await station.plug_in(1, EV(iso15118=True, energy_wanted_wh=18_000, departure=departure))
    transaction_id = station.transaction_id(1)
    assert transaction_id

    async def needs() -> bool:
        tx = await csms.store.transactions.get("CS001", transaction_id)
        return bool(tx and tx.energy_wanted_wh)

    await eventually(needs)
    tx = await csms.store.transactions.get("CS001", transaction_id)
    assert tx is not None
    assert tx.energy_wanted_wh == 18_000
    assert tx.departure_time is not None and to_ocpp(tx.departure_time) == to_ocpp(departure)
