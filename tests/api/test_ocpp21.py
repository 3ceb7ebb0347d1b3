"""OCPP 2.1 beside 2.0.1 through the socket: the station chooses the version in the
handshake, and every message on its connection is judged by that version's schemas.

The simulator speaks 2.0.1 only, so the 2.1 stations here are raw `websockets` clients
(`Raw`), which also keep the CSMS's CALLs to them for the test to answer.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any

import pytest
import websockets
from websockets.exceptions import InvalidStatus

from csms import metrics
from csms.app import Csms
from csms.ocpp.routes import NOT_YET_21
from csms.ocpp.schemas import known_actions, validate_request, validate_response
from tests.api.conftest import Client
from tests.e2e.conftest import PASSWORD, StationFactory
from tests.e2e.test_fuzz import SPEC_CODES, draw
from tests.raw_station import Raw, basic_auth
from tests.support import eventually

Payload = dict[str, Any]
NOW = "2026-12-05T08:00:00Z"


@pytest.fixture
def raw(csms: Csms, make_station: StationFactory) -> Callable[..., Any]:
    """`async with raw("CS21", ["ocpp2.1"]) as station`: provisioned, connected, not booted."""

    @asynccontextmanager
    async def connect(station_id: str, offered: list[str],
                      replies: dict[str, Payload] | None = None,
                      provision: bool = True) -> AsyncIterator[Raw]:
        if provision:
            await make_station(station_id, start=False)
        async with websockets.connect(
            f"ws://127.0.0.1:{csms.ocpp.port}/ocpp/{station_id}",
            subprotocols=offered,  # type: ignore[arg-type]
            additional_headers=basic_auth(station_id, PASSWORD),
        ) as ws:
            station = Raw(ws, replies or {})
            try:
                yield station
            finally:
                station.stop()

    return connect


def _meter(measurand: str, value: float, unit: str = "W") -> Payload:
    return {"timestamp": NOW, "sampledValue": [
        {"value": value, "measurand": measurand, "unitOfMeasure": {"unit": unit}}]}


async def test_A00_station_chooses_ocpp21_in_its_order_of_preference(
    csms: Csms, raw: Callable[..., Any]
) -> None:
    async def version(station_id: str) -> str | None:
        conn = csms.connections.local(station_id)
        return conn.ctx.ocpp_version if conn else None

    async def stored(station_id: str) -> str | None:
        record = await csms.store.stations.get(station_id)
        return record.ocpp_version if record else None

    async with raw("PREFERS21", ["ocpp2.1", "ocpp2.0.1"]) as station:
        assert station.ws.subprotocol == "ocpp2.1"
        assert await eventually(lambda: version("PREFERS21")) == "2.1"
    async with raw("PREFERS201", ["ocpp2.0.1", "ocpp2.1"]) as station:
        assert station.ws.subprotocol == "ocpp2.0.1"
        assert await eventually(lambda: version("PREFERS201")) == "2.0.1"
    assert await eventually(lambda: stored("PREFERS21")) == "2.1"
    # the same station back with 2.0.1 only: its stored version follows its connection

    async def back_on_201() -> bool:
        return await stored("PREFERS21") == "2.0.1"

    async with raw("PREFERS21", ["ocpp2.0.1"], provision=False) as station:
        assert station.ws.subprotocol == "ocpp2.0.1"
        await eventually(back_on_201)


async def test_A00_unknown_subprotocol_is_still_refused_with_400(
    csms: Csms, make_station: StationFactory
) -> None:
    await make_station("OLD16", start=False)
    with pytest.raises(InvalidStatus) as refused:
        async with websockets.connect(
            f"ws://127.0.0.1:{csms.ocpp.port}/ocpp/OLD16",
            subprotocols=["ocpp1.6", "ocpp2.2"],  # type: ignore[list-item]
            additional_headers=basic_auth("OLD16", PASSWORD),
        ):
            pass
    assert refused.value.response.status_code == 400
    assert b"ocpp2.1" in refused.value.response.body


async def test_B01_E01_J02_ocpp21_station_boots_charges_and_is_stored_like_201(
    csms: Csms, client: Client, raw: Callable[..., Any]
) -> None:
    async with raw("CS21", ["ocpp2.1"]) as station:
        await station.boot("2.1")
        await station.ok("StatusNotification", {
            "timestamp": NOW, "connectorStatus": "Occupied", "evseId": 1, "connectorId": 1,
        }, "2.1")
        started = await station.ok("TransactionEvent", {
            "eventType": "Started", "timestamp": NOW, "triggerReason": "CablePluggedIn",
            "seqNo": 0, "transactionInfo": {"transactionId": "T21", "chargingState": "EVConnected"},
            "evse": {"id": 1, "connectorId": 1},
            "meterValue": [_meter("Energy.Active.Import.Register", 1000.0, "Wh")],
        }, "2.1")
        assert "idTokenInfo" not in started  # no token was sent
        await station.ok("TransactionEvent", {  # OperationModeChanged: a 2.1-only reason
            "eventType": "Updated", "timestamp": NOW, "triggerReason": "OperationModeChanged",
            "seqNo": 1, "transactionInfo": {"transactionId": "T21", "chargingState": "Charging"},
            "meterValue": [_meter("Energy.Active.Import.Register", 1500.0, "Wh")],
        }, "2.1")
        await station.ok("MeterValues", {  # Power.Active.Setpoint: a 2.1-only measurand
            "evseId": 1, "meterValue": [_meter("Power.Active.Setpoint", -7400.0)],
        }, "2.1")

        tx = await csms.store.transactions.get("CS21", "T21")
        assert tx is not None and tx.evse_id == 1 and tx.charging_state == "Charging"
        assert tx.meter_start_wh == 1000.0
        values = await csms.store.transactions.meter_values("CS21", "T21")
        assert {v.measurand for v in values} >= {"Energy.Active.Import.Register"}
        stations = {s["id"]: s for s in (await client("operator").get("/api/stations")).json()}
        assert stations["CS21"]["ocpp_version"] == "2.1"
        assert stations["CS21"]["boot_status"] == "Accepted"


async def test_A00_both_versions_on_one_csms_are_judged_by_their_own_schemas(
    csms: Csms, client: Client, raw: Callable[..., Any]
) -> None:
    setpoint = {"evseId": 1, "meterValue": [_meter("Power.Active.Setpoint", 3000.0)]}
    alarm = {"controlType": "FreqDroop", "timestamp": NOW}
    async with raw("NEW21", ["ocpp2.1"]) as new, raw("OLD201", ["ocpp2.0.1"]) as old:
        await new.boot("2.1")
        await old.boot("2.0.1")
        # a measurand 2.1 added: valid on the 2.1 connection only
        await new.ok("MeterValues", setpoint, "2.1")
        refused = await old.call("MeterValues", setpoint)
        assert refused[:3] == [4, refused[1], "PropertyConstraintViolation"]
        # R: a 2.1-only notification: kept and acknowledged on 2.1, unknown on 2.0.1
        assert await new.ok("NotifyDERAlarm", alarm, "2.1") == {}
        unknown = await old.call("NotifyDERAlarm", alarm)
        assert unknown[0] == 4 and unknown[2] == "NotImplemented"
        kept = await csms.store.notifications.list("NEW21", "NotifyDERAlarm")
        assert [n.payload for n in kept] == [alarm]
        assert await csms.store.notifications.list("OLD201", "NotifyDERAlarm") == []
        # a 2.1 request whose answer needs a decision the CSMS cannot make yet
        vat = await new.call("VatNumberValidation", {"vatNumber": "NL123"})
        assert vat[0] == 4 and vat[2] == "NotImplemented"
        # a 2.1 CSMS-to-station action sent by a station
        wrong_way = await new.call("SetDERControl", {
            "isDefault": False, "controlId": "c1", "controlType": "FreqDroop"})
        assert wrong_way[0] == 4 and wrong_way[2] == "NotSupported"
        listed = {s["id"]: s["ocpp_version"]
                  for s in (await client("operator").get("/api/stations")).json()}
        assert listed["NEW21"] == "2.1" and listed["OLD201"] == "2.0.1"


async def test_D01_commands_api_validates_against_the_stations_version(
    csms: Csms, client: Client, raw: Callable[..., Any]
) -> None:
    """An id token of a type only 2.1 names (DirectPayment) goes to a 2.1 station; the same
    request to a 2.0.1 station is refused before it is sent (422)."""
    local_list = {"versionNumber": 7, "updateType": "Full", "localAuthorizationList": [
        {"idToken": {"idToken": "PAY-1", "type": "DirectPayment"},
         "idTokenInfo": {"status": "Accepted"}}]}
    replies = {"SendLocalList": {"status": "Accepted"}}
    operator = client("operator")
    async with raw("API21", ["ocpp2.1"], replies) as new, \
            raw("API201", ["ocpp2.0.1"], replies) as old:
        await new.boot("2.1")
        await old.boot("2.0.1")
        sent = await operator.post("/api/stations/API21/commands/send-local-list",
                                   json=local_list)
        assert sent.status_code == 200, sent.text
        assert sent.json()["reply"] == {"status": "Accepted"}
        async def delivered() -> bool:
            return any(a == "SendLocalList" for a, _ in new.received)

        await eventually(delivered)
        for action, payload in new.received:
            validate_request(action, payload, version="2.1")
        refused = await operator.post("/api/stations/API201/commands/send-local-list",
                                      json=local_list)
        assert refused.status_code == 422, refused.text
        assert not any(a == "SendLocalList" for a, _ in old.received)


async def test_every_ocpp21_only_charger_action_survives_near_valid_payloads(
    csms: Csms, raw: Callable[..., Any]
) -> None:
    """The 2.1-only actions a station may send, fuzzed as tests/e2e/test_fuzz.py does 2.0.1's:
    a CALLRESULT valid in 2.1 or a CALLERROR with an OCPP-J code, never InternalError."""
    only_21 = sorted((set(csms.ocpp.router.table) | NOT_YET_21)  # type: ignore[attr-defined]
                     - known_actions("2.0.1"))
    assert "NotifyDERAlarm" in only_21 and "VatNumberValidation" in only_21
    internal_before = metrics.errors.labels("InternalError")._value.get()
    answered = 0
    async with raw("FUZZ21", ["ocpp2.1"]) as station:
        await station.boot("2.1")
        for action in only_21:
            for text in draw(action, 12, "v21"):
                message_id = json.loads(text)[1]
                reply = await station.send_raw(text, message_id)
                if reply[0] == 4:
                    assert reply[2] in SPEC_CODES - {"InternalError"}, (reply, text[:300])
                else:
                    validate_response(action, reply[2], version="2.1")
                answered += 1
        assert (await station.ok("Heartbeat", {}, "2.1"))["currentTime"]
    assert metrics.errors.labels("InternalError")._value.get() == internal_before
    assert answered == 12 * len(only_21)


async def test_ocpp21_send_and_callresulterror_get_no_answer_but_are_unknown_in_201(
    csms: Csms, raw: Callable[..., Any]
) -> None:
    """OCPP-J 2.1's SEND (NotifyPeriodicEventStream) and CALLRESULTERROR are never answered;
    on a 2.0.1 connection they are unknown message types."""
    stream = {"id": 1, "pending": 0, "basetime": NOW, "data": [{"t": 0.0, "v": "1"}]}
    async with raw("SEND21", ["ocpp2.1"]) as new, raw("SEND201", ["ocpp2.0.1"]) as old:
        await new.boot("2.1")
        await new.ws.send(json.dumps([6, "s1", "NotifyPeriodicEventStream", stream]))
        await new.ws.send(json.dumps([7, "r1", "FormatViolation", "bad", {}]))
        assert (await new.ok("Heartbeat", {}, "2.1"))["currentTime"]  # answered in order
        assert new.unmatched == []
        await old.boot("2.0.1")
        for text, message_id in [(json.dumps([6, "s2", "NotifyPeriodicEventStream", stream]),
                                  "s2"),
                                 (json.dumps([7, "r2", "FormatViolation", "bad", {}]), "r2")]:
            refused = await old.send_raw(text, message_id)
            assert refused[:3] == [4, message_id, "MessageTypeNotSupported"]
