"""Block K queries and external limits over HTTP, against a simulated station."""

from __future__ import annotations

import httpx
import pytest

from csms.app import Csms
from csms.clock import to_ocpp
from simulators.ev import EV
from simulators.station import external_limits
from simulators.station.link import CallFailed
from tests.e2e.conftest import StationFactory
from tests.support import eventually

BASE = "/api/stations/CS001"


def default_profile(profile_id: int, evse_id: int, limit_a: float) -> dict:
    return {"evse_id": evse_id, "charging_profile": {
        "id": profile_id, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile",
        "chargingProfileKind": "Relative",
        "chargingSchedule": [{"id": 1, "chargingRateUnit": "A",
                              "chargingSchedulePeriod": [{"startPeriod": 0,
                                                          "limit": limit_a}]}]}}


async def _report(admin: httpx.AsyncClient, request_id: int) -> dict:
    async def complete() -> dict | None:
        report = (await admin.get(f"{BASE}/charging-profile-reports/{request_id}")).json()
        return report if report["complete"] else None

    return await eventually(complete)


async def test_K09_get_charging_profiles_report_is_assembled_and_stored(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    from simulators.station import EvseSpec

    await make_station("CS001", evses=[EvseSpec(1, kind="AC", phases=3, max_current_a=32.0),
                                       EvseSpec(2, kind="AC", phases=3, max_current_a=32.0)])
    r = await admin.post(f"{BASE}/charging-profile-reports", json={})
    assert r.status_code == 202 and r.json()["status"] == "NoProfiles" and r.json()["complete"]
    for profile_id, evse_id, amps in ((11, 1, 10), (12, 2, 12)):
        r = await admin.post(f"{BASE}/commands/set-charging-profile",
                             json=default_profile(profile_id, evse_id, amps))
        assert r.json()["reply"]["status"] == "Accepted", r.text
    r = await admin.post(f"{BASE}/charging-profile-reports", json={"purpose": "TxDefaultProfile"})
    assert r.status_code == 202 and r.json()["status"] == "Accepted"
    report = await _report(admin, r.json()["request_id"])
    assert report["parts"] == 2  # one ReportChargingProfiles per EVSE, the first tbc
    assert sorted((i["evseId"], i["chargingProfile"]["id"]) for i in report["items"]) == [
        (1, 11), (2, 12)]
    r = await admin.post(f"{BASE}/charging-profile-reports", json={"evse_id": 2})
    report = await _report(admin, r.json()["request_id"])
    assert [i["chargingProfile"]["id"] for i in report["items"]] == [12]
    listed = (await admin.get(f"{BASE}/charging-profile-reports")).json()
    assert len(listed) == 3
    assert (await admin.post(f"{BASE}/charging-profile-reports",
                             json={"evse_id": -1})).status_code == 422


async def test_K08_composite_schedules_are_kept(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    await make_station("CS001")
    await admin.post(f"{BASE}/commands/set-charging-profile", json=default_profile(11, 1, 10))
    r = await admin.post(f"{BASE}/composite-schedules",
                         json={"evse_id": 1, "duration_s": 3600, "charging_rate_unit": "A"})
    assert r.status_code == 201, r.text
    assert r.json()["status"] == "Accepted" and r.json()["requested_by"] == "test-admin"
    assert r.json()["schedule"]["chargingSchedulePeriod"][0]["limit"] == 10
    r = await admin.post(f"{BASE}/composite-schedules", json={"evse_id": 7, "duration_s": 60})
    assert r.json()["status"] == "Rejected"
    listed = (await admin.get(f"{BASE}/composite-schedules", params={"evse_id": 1})).json()
    assert len(listed) == 1 and listed[0]["evse_id"] == 1


async def test_K10_clear_charging_profile_semantics(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    station = await make_station("CS001")
    await admin.post(f"{BASE}/commands/set-charging-profile", json=default_profile(11, 1, 10))
    await external_limits.notify(station, "EMS", 8.0, "A")
    r = await admin.delete(f"{BASE}/charging-profiles",
                           params={"purpose": "ChargingStationExternalConstraints"})
    assert r.status_code == 422  # the external system's, not the CSMS's, to clear
    r = await admin.delete(f"{BASE}/charging-profiles", params={"profile_id": 11})
    assert r.status_code == 200 and r.json()["status"] == "Accepted"
    r = await admin.delete(f"{BASE}/charging-profiles", params={"profile_id": 11})
    assert r.json()["status"] == "Unknown"
    r = await admin.delete(f"{BASE}/charging-profiles")  # all the CSMS may clear
    assert r.json()["status"] == "Unknown"  # only the external limit is left
    assert station.composite_limit(1) == (8.0, "A")


async def test_K11_K12_K13_external_limit_is_kept_until_cleared(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    station = await make_station("CS001")
    assert (await admin.get(f"{BASE}/external-limits")).json() == []
    # K12 without the schedule (NotifyChargingLimitWithSchedules false): the CSMS asks for
    # the external constraints profile and takes the schedule from the report
    await external_limits.notify(station, "CSO", 20.0, "A")

    async def filled() -> list:
        found = (await admin.get(f"{BASE}/external-limits")).json()
        return found[0]["schedules"]

    schedules = await eventually(filled)
    assert schedules[0]["chargingSchedulePeriod"][0]["limit"] == 20.0
    assert "GetChargingProfiles" in station.received_calls
    await external_limits.clear(station, "CSO")
    r = await admin.post(f"{BASE}/commands/set-variables", json={"variables": [{
        "component": "SmartChargingCtrlr", "variable": "NotifyChargingLimitWithSchedules",
        "value": "true"}]})
    assert r.json()["reply"]["setVariableResult"][0]["attributeStatus"] == "Accepted", r.text
    await external_limits.notify(station, "SO", 16.0, "A", grid_critical=True)
    await external_limits.notify(station, "EMS", 7000.0, "W", evse_id=1)
    limits = (await admin.get(f"{BASE}/external-limits")).json()
    assert [(x["evse_id"], x["source"]) for x in limits] == [(0, "SO"), (1, "EMS")]
    assert limits[0]["grid_critical"] is True
    assert limits[0]["schedules"][0]["chargingSchedulePeriod"][0]["limit"] == 16.0
    await external_limits.clear(station, "SO")
    limits = (await admin.get(f"{BASE}/external-limits")).json()
    assert [(x["evse_id"], x["source"]) for x in limits] == [(1, "EMS")]
    # bad input from the station: the spec's CALLERROR, and the connection lives on
    with pytest.raises(CallFailed) as failed:
        await station.call("NotifyChargingLimit", {
            "chargingLimit": {"chargingLimitSource": "EMS"}, "evseId": -1})
    assert failed.value.code == "PropertyConstraintViolation"
    with pytest.raises(CallFailed) as failed:
        await station.call("NotifyChargingLimit", {
            "chargingLimit": {"chargingLimitSource": "EMS"}, "chargingSchedule": [{
                "id": 1, "chargingRateUnit": "A", "startSchedule": "yesterday",
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}]}]})
    assert failed.value.code == "FormatViolation"
    with pytest.raises(CallFailed) as failed:  # would overflow the scheduler's arithmetic
        await station.call("NotifyChargingLimit", {
            "chargingLimit": {"chargingLimitSource": "EMS"}, "chargingSchedule": [{
                "id": 1, "chargingRateUnit": "A", "duration": 10**18,
                "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 6}]}]})
    assert failed.value.code == "PropertyConstraintViolation"
    assert len((await admin.get(f"{BASE}/external-limits")).json()) == 1


async def test_K15_K17_ev_charging_schedule_is_kept_with_its_transaction(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    await csms.store.tokens.add("GOOD", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    await station.plug_in(1, EV(battery_kwh=60, soc=0.2, energy_wanted_wh=10_000))
    await station.present_token(1, "GOOD")
    reply = await station.call("NotifyEVChargingSchedule", {
        "timeBase": to_ocpp(csms.clock.now()), "evseId": 1,
        "chargingSchedule": {"id": 1, "chargingRateUnit": "W",
                             "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 7000}]}})
    assert reply["status"] == "Accepted"
    listed = (await admin.get(f"{BASE}/ev-charging-schedules")).json()
    assert len(listed) == 1 and listed[0]["transaction_id"] == station.transaction_id(1)
    assert listed[0]["schedule"]["chargingSchedulePeriod"][0]["limit"] == 7000


async def test_K09_O04_reports_with_ids_out_of_range_get_the_spec_error(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    station = await make_station("CS001")
    bad = [
        ("ReportChargingProfiles", {"requestId": 2**31, "chargingLimitSource": "CSO",
                                    "evseId": 1, "chargingProfile": [
                                        default_profile(1, 1, 6)["charging_profile"]]}),
        ("NotifyDisplayMessages", {"requestId": 1, "messageInfo": [{
            "id": -1, "priority": "NormalCycle",
            "message": {"format": "UTF8", "content": "x"}}]}),
        ("NotifyDisplayMessages", {"requestId": 1, "messageInfo": [{
            "id": 1, "priority": "NormalCycle", "endDateTime": "soon",
            "message": {"format": "UTF8", "content": "x"}}]}),
        ("NotifyEVChargingSchedule", {"timeBase": "now", "evseId": 1, "chargingSchedule": {
            "id": 1, "chargingRateUnit": "W",
            "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 1}]}}),
    ]
    codes = []
    for action, payload in bad:
        with pytest.raises(CallFailed) as failed:
            await station.call(action, payload)
        codes.append(failed.value.code)
    assert codes == ["PropertyConstraintViolation", "PropertyConstraintViolation",
                     "FormatViolation", "FormatViolation"]
    assert (await admin.get("/api/stations/CS001/display-messages")).json() == []
    assert station.connected
