"""The station over a real WebSocket against a scripted CSMS peer."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta

import pytest

from simulators.ev import EV
from simulators.station import CallFailed, ConnectionRefused, EvseSpec

FULL_AC_W = 32.0 * 230.0 * 3


def tx_profile(tx_id: str, limit: float, unit: str = "A", pid: int = 10, **extra) -> dict:
    return {
        "id": pid,
        "stackLevel": 0,
        "chargingProfilePurpose": "TxProfile",
        "chargingProfileKind": "Relative",
        "transactionId": tx_id,
        "chargingSchedule": [
            {
                "id": pid,
                "chargingRateUnit": unit,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit}],
            }
        ],
        **extra,
    }


async def charging_station(peer, stations, **kw):
    st = stations(peer.url, **kw)
    await st.start()
    await st.plug_in(1, EV(battery_kwh=60, soc=0.2, energy_wanted_wh=40_000))
    assert await st.present_token(1, "TOKEN1") == "Accepted"
    # the car starts drawing: that rate change is reported (and answered) before the test
    # goes on, so what a test counts from here is its own
    await eventually(lambda: st.power_w(1) == 0 or any(
        p["triggerReason"] == "ChargingRateChanged" for p in peer.of("TransactionEvent")))
    await eventually(lambda: st.queued_messages == 0)
    return st


async def eventually(predicate, timeout: float = 3.0) -> None:
    async def poll() -> None:
        while not predicate():  # noqa: ASYNC110 - polls station state that has no event
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


# ---- connection and boot (blocks A, B) ------------------------------------------------


async def test_B01_boot_accepted_then_status_and_heartbeat(peer, stations):
    peer.interval = 60
    st = stations(peer.url, evses=[EvseSpec(1), EvseSpec(2, phases=1)])
    await st.start()
    assert st.boot_status == "Accepted"
    assert st.connected
    assert peer.paths == ["/ocpp/CS001"]
    boot = peer.of("BootNotification")[0]
    assert boot["reason"] == "PowerUp"
    assert boot["chargingStation"]["vendorName"] == "SimCo"
    statuses = await peer.wait_for("StatusNotification", 2)
    assert sorted(s["evseId"] for s in statuses) == [1, 2]
    # interval 60 s at 600x: a heartbeat every 0.1 s of wall time
    await peer.wait_for("Heartbeat", 2, timeout=2)


async def test_B02_pending_boot_is_retried_after_interval(peer, stations):
    peer.boot_status = "Pending"
    peer.interval = 30
    st = stations(peer.url)
    await st.start()
    assert st.boot_status == "Pending"
    await st.status(1, "Available")
    assert peer.of("StatusNotification") == []  # held back while Pending
    peer.boot_status = "Accepted"
    await eventually(lambda: st.boot_status == "Accepted")
    assert len(peer.of("BootNotification")) >= 2
    await peer.wait_for("StatusNotification")


async def test_A_basic_auth_accepted_with_right_password(peer, stations):
    peer.password = "longpassword-0123456789"
    st = stations(peer.url, password="longpassword-0123456789")
    await st.start()
    assert st.boot_status == "Accepted"


async def test_A_refused_handshake_raises_with_status_code(peer, stations):
    peer.password = "longpassword-0123456789"
    st = stations(peer.url, password="wrong-password-0123456789")
    with pytest.raises(ConnectionRefused) as err:
        await st.start()
    assert err.value.status_code == 401
    assert not st.connected


async def test_A_station_without_common_subprotocol_is_refused(peer, stations):
    st = stations(peer.url, subprotocols=("ocpp1.6",))
    with pytest.raises(ConnectionRefused):
        await st.start()


async def test_call_raises_call_failed_on_callerror(peer, stations):
    st = stations(peer.url)
    await st.start()
    assert "currentTime" in await st.call("Heartbeat", {})
    with pytest.raises(CallFailed) as err:
        await st.call("NotifyDisplayMessages", {"requestId": 1})
    assert err.value.code == "NotImplemented"
    peer.answers["Heartbeat"] = lambda p: ("error", "SecurityError")
    with pytest.raises(CallFailed) as err:
        await st.call("Heartbeat", {})
    assert err.value.code == "SecurityError"


async def test_call_times_out_when_peer_does_not_answer(peer, stations):
    st = stations(peer.url)
    await st.start()
    peer.answers["Heartbeat"] = lambda p: None  # the peer stays silent
    with pytest.raises(TimeoutError):
        await st.call("Heartbeat", {}, timeout=0.2)
    peer.answers.pop("Heartbeat")
    assert "currentTime" in await st.call("Heartbeat", {})


async def test_send_raw_returns_the_peers_next_frame(peer, stations):
    st = stations(peer.url)
    await st.start()
    frame = await st.send_raw("not json")
    assert frame is not None
    assert json.loads(frame)[0] == 4
    assert json.loads(frame)[2] == "RpcFrameworkError"
    frame = await st.send_raw(json.dumps([2, "raw-1", "Heartbeat", {}]))
    assert json.loads(frame)[:2] == [3, "raw-1"]


async def test_station_reconnects_after_the_csms_drops_it(peer, stations):
    st = stations(peer.url, reconnect_backoff_s=(1.0, 5.0))
    await st.start()
    assert peer.ws is not None
    await peer.ws.close()
    await eventually(lambda: peer.connections == 2 and st.connected)
    assert st.boot_status == "Accepted"
    assert len(peer.of("BootNotification")) == 1  # a reconnect is not a reboot


# ---- transactions (block E) -----------------------------------------------------------


async def test_E01_E02_full_transaction_with_periodic_meter_values(peer, stations):
    st = await charging_station(peer, stations, meter_interval_s=60.0)
    tx_id = st.transaction_id(1)
    assert tx_id is not None
    assert st.power_w(1) == pytest.approx(FULL_AC_W)
    await peer.wait_for(
        "TransactionEvent", 2, where=lambda p: p["triggerReason"] == "MeterValuePeriodic"
    )
    await st.unplug(1)
    events = peer.of("TransactionEvent")
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert events[0]["eventType"] == "Started"
    assert events[0]["triggerReason"] == "CablePluggedIn"
    assert events[0]["transactionInfo"]["chargingState"] == "EVConnected"
    assert events[1]["triggerReason"] == "Authorized"
    assert events[1]["idToken"] == {"idToken": "TOKEN1", "type": "ISO14443"}
    assert events[1]["transactionInfo"]["chargingState"] == "Charging"
    periodic = [e for e in events if e["triggerReason"] == "MeterValuePeriodic"]
    measurands = {s.get("measurand") for s in periodic[0]["meterValue"][0]["sampledValue"]}
    assert {"Energy.Active.Import.Register", "Power.Active.Import", "Current.Import"} <= measurands
    phases = [
        s["phase"]
        for s in periodic[0]["meterValue"][0]["sampledValue"]
        if s["measurand"] == "Current.Import"
    ]
    assert phases == ["L1", "L2", "L3"]
    ended = events[-1]
    assert ended["eventType"] == "Ended"
    assert ended["transactionInfo"]["stoppedReason"] == "EVDisconnected"
    assert {e["transactionInfo"]["transactionId"] for e in events} == {tx_id}
    register = next(
        s["value"]
        for s in ended["meterValue"][0]["sampledValue"]
        if s["measurand"] == "Energy.Active.Import.Register"
    )
    assert register == pytest.approx(st.energy_wh(1), abs=0.1)
    assert register > 0
    assert st.transaction_id(1) is None
    assert peer.of("StatusNotification")[-1]["connectorStatus"] == "Available"


async def test_E_energy_integrates_power_over_clock_time(peer, stations):
    st = await charging_station(peer, stations, speed=3600.0)
    t0, e0 = st.clock.now(), st.energy_wh(1)
    await asyncio.sleep(0.2)
    t1, e1 = st.clock.now(), st.energy_wh(1)
    hours = (t1 - t0).total_seconds() / 3600
    assert e1 - e0 == pytest.approx(FULL_AC_W * hours, rel=0.02)


async def test_C01_rejected_token_does_not_start_charging(peer, stations):
    st = stations(peer.url)
    await st.start()
    await st.plug_in(1, EV())
    assert await st.present_token(1, "BLOCKED") == "Blocked"
    assert st.power_w(1) == 0.0


async def test_E_iso15118_ev_sends_charging_needs_with_departure(peer, stations):
    st = stations(peer.url)
    await st.start()
    departure = st.clock.now() + timedelta(hours=10)
    await st.plug_in(1, EV(energy_wanted_wh=12_000, soc=0.4, iso15118=True, departure=departure))
    needs = (await peer.wait_for("NotifyEVChargingNeeds"))[0]
    assert needs["evseId"] == 1
    assert needs["chargingNeeds"]["acChargingParameters"]["energyAmount"] == 12_000
    assert needs["chargingNeeds"]["departureTime"].startswith(departure.strftime("%Y-%m-%dT%H:%M"))


async def test_E_dc_station_reports_soc(peer, stations):
    st = stations(peer.url, evses=[EvseSpec(1, kind="DC", max_power_w=50_000)])
    await st.start()
    await st.plug_in(1, EV(soc=0.5, max_dc_power_w=100_000))
    await st.present_token(1, "TOKEN1")
    assert st.power_w(1) == pytest.approx(50_000)
    await st.unplug(1)
    ended = peer.of("TransactionEvent")[-1]
    soc = [s for s in ended["meterValue"][0]["sampledValue"] if s["measurand"] == "SoC"]
    assert soc and soc[0]["unitOfMeasure"]["unit"] == "Percent"


async def test_E_offline_events_are_queued_and_delivered_in_order(peer, stations):
    st = await charging_station(peer, stations, meter_interval_s=60.0)
    before = len(peer.of("TransactionEvent"))
    await st.disconnect()
    assert not st.connected
    await eventually(lambda: st.queued_messages >= 3)
    assert st.power_w(1) > 0  # keeps charging offline
    offline_since = st.clock.now()
    await st.unplug(1)
    queued = st.queued_messages
    await st.reconnect()
    events = await peer.wait_for("TransactionEvent", before + queued)
    late = events[before:]
    assert all(e["offline"] is True for e in late)
    assert [e["seqNo"] for e in events] == list(range(len(events)))
    assert late[-1]["eventType"] == "Ended"
    assert late[0]["timestamp"] < offline_since.isoformat().replace("+00:00", "Z")
    assert st.queued_messages == 0


async def test_E14_get_transaction_status_reports_queue(peer, stations):
    st = await charging_station(peer, stations)
    tx_id = st.transaction_id(1)
    status = await peer.result("GetTransactionStatus", {"transactionId": tx_id})
    assert status == {"ongoingIndicator": True, "messagesInQueue": False}
    assert await peer.result("GetTransactionStatus", {"transactionId": "nope"}) == {
        "ongoingIndicator": False,
        "messagesInQueue": False,
    }


async def test_F01_F03_remote_start_and_stop(peer, stations):
    st = stations(peer.url)
    await st.start()
    await st.plug_in(1, EV())
    response = await peer.result(
        "RequestStartTransaction",
        {"idToken": {"idToken": "APP1", "type": "Central"}, "remoteStartId": 7, "evseId": 1},
    )
    assert response["status"] == "Accepted"
    tx_id = response["transactionId"]
    await eventually(lambda: st.power_w(1) > 0)
    assert await peer.result("RequestStopTransaction", {"transactionId": tx_id}) == {
        "status": "Accepted"
    }
    await peer.wait_for("TransactionEvent", where=lambda p: p["eventType"] == "Ended")
    ended = peer.of("TransactionEvent")[-1]
    assert ended["transactionInfo"]["stoppedReason"] == "Remote"
    assert ended["triggerReason"] == "RemoteStop"
    assert st.power_w(1) == 0.0
    assert (await peer.result("RequestStopTransaction", {"transactionId": tx_id}))[
        "status"
    ] == "Rejected"


async def test_F01_remote_start_before_cable_charges_once_plugged(peer, stations):
    st = stations(peer.url)
    await st.start()
    response = await peer.result(
        "RequestStartTransaction",
        {"idToken": {"idToken": "APP1", "type": "Central"}, "remoteStartId": 8},
    )
    assert response["status"] == "Accepted"
    await eventually(lambda: st.transaction_id(1) is not None)
    started = (await peer.wait_for("TransactionEvent"))[0]
    assert started["triggerReason"] == "RemoteStart"
    assert started["transactionInfo"]["remoteStartId"] == 8
    await st.plug_in(1, EV())
    assert st.power_w(1) > 0


async def test_F05_unlock_connector(peer, stations):
    st = await charging_station(peer, stations)
    assert (await peer.result("UnlockConnector", {"evseId": 1, "connectorId": 1}))[
        "status"
    ] == "OngoingAuthorizedTransaction"
    await st.unplug(1)
    assert (await peer.result("UnlockConnector", {"evseId": 1, "connectorId": 1}))[
        "status"
    ] == "Unlocked"
    assert (await peer.result("UnlockConnector", {"evseId": 9, "connectorId": 1}))[
        "status"
    ] == "UnknownConnector"


async def test_F06_trigger_message_status_and_meter_values(peer, stations):
    st = await charging_station(peer, stations)
    n = len(peer.of("StatusNotification"))
    assert (await peer.result("TriggerMessage", {"requestedMessage": "StatusNotification"}))[
        "status"
    ] == "Accepted"
    await peer.wait_for("StatusNotification", n + 1)
    assert (
        await peer.result("TriggerMessage", {"requestedMessage": "MeterValues", "evse": {"id": 1}})
    )["status"] == "Accepted"
    mv = (await peer.wait_for("MeterValues"))[0]
    assert mv["evseId"] == 1
    assert (await peer.result("TriggerMessage", {"requestedMessage": "BootNotification"}))[
        "status"
    ] == "Rejected"
    assert st.connected


async def test_G03_change_availability_inoperative_and_back(peer, stations):
    st = stations(peer.url)
    await st.start()
    await peer.wait_for("StatusNotification")
    r = await peer.result(
        "ChangeAvailability", {"operationalStatus": "Inoperative", "evse": {"id": 1}}
    )
    assert r["status"] == "Accepted"
    await peer.wait_for("StatusNotification", where=lambda p: p["connectorStatus"] == "Unavailable")
    r = await peer.result("ChangeAvailability", {"operationalStatus": "Operative"})
    assert r["status"] == "Accepted"
    await peer.wait_for(
        "StatusNotification", 2, where=lambda p: p["connectorStatus"] == "Available"
    )


async def test_B11_reset_reboots_with_remote_reset(peer, stations):
    st = await charging_station(peer, stations)
    assert (await peer.result("Reset", {"type": "Immediate"}))["status"] == "Accepted"
    boots = await peer.wait_for("BootNotification", 2)
    assert boots[-1]["reason"] == "RemoteReset"
    ended = [e for e in peer.of("TransactionEvent") if e["eventType"] == "Ended"]
    assert ended[0]["transactionInfo"]["stoppedReason"] == "ImmediateReset"
    await eventually(lambda: st.connected and st.boot_status == "Accepted")


async def test_misc_csms_calls_and_errors(peer, stations):
    st = stations(peer.url)
    await st.start()
    assert (await peer.result("ClearCache", {}))["status"] == "Accepted"
    assert (await peer.result("DataTransfer", {"vendorId": "x"}))["status"] == "UnknownVendorId"
    assert (await peer.result("SendLocalList", {"versionNumber": 3, "updateType": "Full"}))[
        "status"
    ] == "Accepted"
    assert (await peer.result("GetLocalListVersion", {}))["versionNumber"] == 3
    assert await peer.call("CancelReservation", {"reservationId": 1}) == (
        "result", {"status": "Rejected"})  # H02: no such reservation
    assert await peer.call("Reset", {"kind": "Soft"}) == ("error", "FormatViolation")
    assert st.connected


# ---- device model (block B) -----------------------------------------------------------


async def test_B06_get_variables_smart_charging_ctrlr(peer, stations):
    st = stations(peer.url, rate_units=("W",), periods_per_schedule=12)
    await st.start()
    r = await peer.result(
        "GetVariables",
        {
            "getVariableData": [
                {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "RateUnit"}},
                {
                    "component": {"name": "SmartChargingCtrlr"},
                    "variable": {"name": "PeriodsPerSchedule"},
                },
                {"component": {"name": "SmartChargingCtrlr"}, "variable": {"name": "Nope"}},
                {"component": {"name": "Nope"}, "variable": {"name": "Enabled"}},
                {"component": {"name": "SecurityCtrlr"}, "variable": {"name": "BasicAuthPassword"}},
            ]
        },
    )
    results = r["getVariableResult"]
    assert results[0]["attributeValue"] == "W"
    assert results[1]["attributeValue"] == "12"
    assert [x["attributeStatus"] for x in results[2:]] == [
        "UnknownVariable",
        "UnknownComponent",
        "Rejected",
    ]


async def test_B05_set_variables_changes_behaviour(peer, stations):
    st = stations(peer.url)
    await st.start()
    r = await peer.result(
        "SetVariables",
        {
            "setVariableData": [
                {
                    "component": {"name": "SampledDataCtrlr"},
                    "variable": {"name": "TxUpdatedInterval"},
                    "attributeValue": "10",
                },
                {
                    "component": {"name": "SmartChargingCtrlr"},
                    "variable": {"name": "Entries"},
                    "attributeValue": "99",
                },
                {
                    "component": {"name": "OCPPCommCtrlr"},
                    "variable": {"name": "HeartbeatInterval"},
                    "attributeValue": "abc",
                },
            ]
        },
    )
    assert [x["attributeStatus"] for x in r["setVariableResult"]] == [
        "Accepted",
        "Rejected",
        "Rejected",
    ]
    assert st.device_model.value("SampledDataCtrlr", "TxUpdatedInterval") == "10"


async def test_B07_get_base_report_sends_notify_report_in_parts(peer, stations):
    st = stations(peer.url)
    await st.start()
    r = await peer.result("GetBaseReport", {"requestId": 42, "reportBase": "FullInventory"})
    assert r["status"] == "Accepted"
    await peer.wait_for("NotifyReport", 2)
    await eventually(lambda: peer.of("NotifyReport")[-1].get("tbc") is False)
    reports = peer.of("NotifyReport")
    assert [p["seqNo"] for p in reports] == list(range(len(reports)))
    assert all(p["requestId"] == 42 for p in reports)
    names = {
        (d["component"]["name"], d["variable"]["name"]) for p in reports for d in p["reportData"]
    }
    assert ("SmartChargingCtrlr", "ProfileStackLevel") in names
    assert ("EVSE", "Power") in names
    assert st.connected


# ---- smart charging (block K) over the wire -------------------------------------------


async def test_K01_station_obeys_txprofile(peer, stations):
    st = await charging_station(peer, stations)
    tx_id = st.transaction_id(1)
    r = await peer.result(
        "SetChargingProfile", {"evseId": 1, "chargingProfile": tx_profile(tx_id, 10.0)}
    )
    assert r == {"status": "Accepted"}
    assert st.composite_limit(1) == (10.0, "A")
    assert st.power_w(1) == pytest.approx(10.0 * 230 * 3)
    assert [p.profile.id for p in st.profiles] == [10]


async def test_K01_watt_limit_is_converted_for_an_ac_evse(peer, stations):
    st = await charging_station(peer, stations)
    tx_id = st.transaction_id(1)
    await peer.result(
        "SetChargingProfile", {"evseId": 1, "chargingProfile": tx_profile(tx_id, 6900.0, "W")}
    )
    assert st.composite_limit(1) == (6900.0, "W")
    assert st.power_w(1) == pytest.approx(6900.0)


async def test_K01_limit_below_minimum_current_pauses_charging(peer, stations):
    st = await charging_station(peer, stations)
    tx_id = st.transaction_id(1)
    await peer.result(
        "SetChargingProfile", {"evseId": 1, "chargingProfile": tx_profile(tx_id, 4.0)}
    )
    assert st.power_w(1) == 0.0
    changed = await peer.wait_for(
        "TransactionEvent", where=lambda p: p["triggerReason"] == "ChargingStateChanged"
    )
    assert changed[-1]["transactionInfo"]["chargingState"] == "SuspendedEVSE"


async def test_K01_rejects_txprofile_without_transaction(peer, stations):
    st = stations(peer.url)
    await st.start()
    r = await peer.result(
        "SetChargingProfile", {"evseId": 1, "chargingProfile": tx_profile("NOTX", 10.0)}
    )
    assert r["status"] == "Rejected"
    assert r["statusInfo"]["reasonCode"] == "TxNotFound"
    assert len(st.profiles) == 0


async def test_K01_rejects_invalid_schedule_with_reason(peer, stations):
    st = await charging_station(peer, stations)
    bad = tx_profile(st.transaction_id(1), 10.0)
    bad["chargingSchedule"][0]["chargingSchedulePeriod"][0]["startPeriod"] = 60
    r = await peer.result("SetChargingProfile", {"evseId": 1, "chargingProfile": bad})
    assert (r["status"], r["statusInfo"]["reasonCode"]) == ("Rejected", "InvalidSchedule")
    assert st.power_w(1) == pytest.approx(FULL_AC_W)


async def test_K01_rejects_station_max_profile_on_evse(peer, stations):
    st = stations(peer.url)
    await st.start()
    p = tx_profile("x", 10.0)
    del p["transactionId"]
    p["chargingProfilePurpose"] = "ChargingStationMaxProfile"
    p["chargingProfileKind"] = "Absolute"
    p["chargingSchedule"][0]["startSchedule"] = "2026-11-23T00:00:00Z"
    r = await peer.result("SetChargingProfile", {"evseId": 1, "chargingProfile": p})
    assert r["statusInfo"]["reasonCode"] == "InvalidProfile"
    r = await peer.result("SetChargingProfile", {"evseId": 0, "chargingProfile": p})
    assert r["status"] == "Accepted"


async def test_K01_non_compliant_station_accepts_but_ignores(peer, stations):
    st = await charging_station(peer, stations)
    st.ignore_profiles = True
    r = await peer.result(
        "SetChargingProfile",
        {"evseId": 1, "chargingProfile": tx_profile(st.transaction_id(1), 10.0)},
    )
    assert r["status"] == "Accepted"
    assert st.power_w(1) == pytest.approx(FULL_AC_W)


async def test_K01_profile_period_boundary_changes_power_in_time(peer, stations):
    st = await charging_station(peer, stations, speed=600.0)
    p = tx_profile(st.transaction_id(1), 16.0)
    p["chargingSchedule"][0]["chargingSchedulePeriod"].append({"startPeriod": 120, "limit": 8.0})
    await peer.result("SetChargingProfile", {"evseId": 1, "chargingProfile": p})
    # relative to the transaction start; 120 s simulated = 0.2 s wall
    await eventually(lambda: st.power_w(1) == pytest.approx(8.0 * 230 * 3), timeout=2)


async def test_K10_clear_charging_profile_restores_full_power(peer, stations):
    st = await charging_station(peer, stations)
    await peer.result(
        "SetChargingProfile",
        {"evseId": 1, "chargingProfile": tx_profile(st.transaction_id(1), 10.0)},
    )
    assert (await peer.result("ClearChargingProfile", {"chargingProfileId": 10}))[
        "status"
    ] == "Accepted"
    assert (await peer.result("ClearChargingProfile", {"chargingProfileId": 10}))[
        "status"
    ] == "Unknown"
    assert st.composite_limit(1) is None
    assert st.power_w(1) == pytest.approx(FULL_AC_W)


async def test_K09_get_charging_profiles_reports_them(peer, stations):
    st = await charging_station(peer, stations)
    await peer.result(
        "SetChargingProfile",
        {"evseId": 1, "chargingProfile": tx_profile(st.transaction_id(1), 10.0)},
    )
    r = await peer.result(
        "GetChargingProfiles",
        {"requestId": 5, "chargingProfile": {"chargingProfilePurpose": "TxProfile"}},
    )
    assert r["status"] == "Accepted"
    report = (await peer.wait_for("ReportChargingProfiles"))[0]
    assert report["requestId"] == 5 and report["evseId"] == 1
    assert report["chargingProfile"][0]["id"] == 10
    r = await peer.result(
        "GetChargingProfiles", {"requestId": 6, "chargingProfile": {"stackLevel": 7}}
    )
    assert r["status"] == "NoProfiles"


async def test_K08_get_composite_schedule(peer, stations):
    st = await charging_station(peer, stations)
    await peer.result(
        "SetChargingProfile",
        {"evseId": 1, "chargingProfile": tx_profile(st.transaction_id(1), 10.0)},
    )
    r = await peer.result(
        "GetCompositeSchedule", {"duration": 3600, "evseId": 1, "chargingRateUnit": "W"}
    )
    assert r["status"] == "Accepted"
    periods = r["schedule"]["chargingSchedulePeriod"]
    assert periods[0]["startPeriod"] == 0
    assert periods[0]["limit"] == pytest.approx(6900.0)
    r = await peer.result("GetCompositeSchedule", {"duration": 60, "evseId": 5})
    assert r["status"] == "Rejected"


async def test_K01_txprofile_is_dropped_when_transaction_ends(peer, stations):
    st = await charging_station(peer, stations)
    await peer.result(
        "SetChargingProfile",
        {"evseId": 1, "chargingProfile": tx_profile(st.transaction_id(1), 10.0)},
    )
    await st.unplug(1)
    assert len(st.profiles) == 0


async def test_ev_never_draws_above_composite_limit_over_a_session(peer, stations):
    st = await charging_station(peer, stations, speed=3600.0)
    await peer.result(
        "SetChargingProfile",
        {"evseId": 1, "chargingProfile": tx_profile(st.transaction_id(1), 13.0)},
    )
    for _ in range(10):
        limit, unit = st.composite_limit(1)
        assert unit == "A"
        assert st.power_w(1) <= limit * 230 * 3 + 1e-6
        await asyncio.sleep(0.02)


# ---- fault injection -------------------------------------------------------------------


async def test_fault_dropped_responses_make_csms_calls_time_out(peer, stations):
    st = stations(peer.url)
    await st.start()
    st.drop_responses = True
    with pytest.raises(TimeoutError):
        await peer.call("ClearCache", {}, timeout=0.3)
    st.drop_responses = False
    assert (await peer.result("ClearCache", {}))["status"] == "Accepted"


async def test_fault_meter_jump_shows_in_the_register(peer, stations):
    st = await charging_station(peer, stations)
    before = st.energy_wh(1)
    st.meter_jump(1, 5_000.0)
    assert st.energy_wh(1) >= before + 5_000.0
    await st.unplug(1)
    ended = peer.of("TransactionEvent")[-1]
    register = next(
        s["value"]
        for s in ended["meterValue"][0]["sampledValue"]
        if s["measurand"] == "Energy.Active.Import.Register"
    )
    assert register >= before + 5_000.0


async def test_K08_station_max_profile_is_shared_by_charging_evses(peer, stations):
    st = stations(peer.url, evses=[EvseSpec(1), EvseSpec(2)])
    await st.start()
    station_max = {
        "id": 1,
        "stackLevel": 0,
        "chargingProfilePurpose": "ChargingStationMaxProfile",
        "chargingProfileKind": "Absolute",
        "chargingSchedule": [
            {
                "id": 1,
                "startSchedule": "2026-11-23T00:00:00Z",
                "chargingRateUnit": "A",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 32.0}],
            }
        ],
    }
    assert (await peer.result("SetChargingProfile", {"evseId": 0, "chargingProfile": station_max}))[
        "status"
    ] == "Accepted"
    for evse_id in (1, 2):
        await st.plug_in(evse_id, EV(soc=0.2, energy_wanted_wh=50_000))
        await st.present_token(evse_id, f"T{evse_id}")
    assert st.power_w(1) + st.power_w(2) == pytest.approx(FULL_AC_W)
    assert st.power_w(1) == pytest.approx(16.0 * 230 * 3)
    await st.unplug(2)
    assert st.power_w(1) == pytest.approx(FULL_AC_W)
