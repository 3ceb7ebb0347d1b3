"""Block I, tariff and cost: driver tariffs over HTTP, and what a station is told about
prices over OCPP (I01 tariff at Authorize, I02 running cost, I03 final cost)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from csms.app import Csms
from simulators.station import Station
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory

T0 = datetime(2026, 11, 23, 13, 0, tzinfo=UTC)  # 21:00 in China

CN_TARIFF = {
    "currency": "CNY", "utc_offset": "+08:00",
    "bands": [{"name": "peak", "start": "08:00", "end": "22:00", "price_per_kwh": "1.20"},
              {"name": "valley", "start": "22:00", "end": "08:00", "price_per_kwh": "0.40"}],
    "price_per_hour_parked": "2.00", "parking_grace_minutes": 30, "session_fee": "1.00",
}


def _event(transaction_id: str, seq_no: int, event_type: str, minutes: int, energy_wh: float,
           *, state: str | None = None, token: str | None = None) -> dict[str, Any]:
    stamp = (T0 + timedelta(minutes=minutes)).isoformat().replace("+00:00", "Z")
    event: dict[str, Any] = {
        "eventType": event_type, "timestamp": stamp, "seqNo": seq_no,
        "triggerReason": {"Started": "Authorized", "Ended": "EVDeparted"}.get(
            event_type, "MeterValuePeriodic"),
        "transactionInfo": {"transactionId": transaction_id},
        "meterValue": [{"timestamp": stamp, "sampledValue": [{
            "value": energy_wh, "measurand": "Energy.Active.Import.Register",
            "unitOfMeasure": {"unit": "Wh"}}]}],
    }
    if state:
        event["transactionInfo"]["chargingState"] = state
    if event_type == "Started":
        event["evse"] = {"id": 1, "connectorId": 1}
    if event_type == "Ended":
        event["transactionInfo"]["stoppedReason"] = "EVDisconnected"
    if token:
        event["idToken"] = {"idToken": token, "type": "ISO14443"}
    return event


async def _session(station: Station, transaction_id: str, token: str = "DRIVER-1",
                   day: int = 0) -> list[dict[str, Any]]:
    """21:00-22:00 China time 7 kWh (peak), 22:00-23:00 7 kWh (valley), then an hour
    parked full: 11.20 energy + 1.00 parking (30 of 60 min free) + 1.00 fee = 13.20 CNY."""
    m = day * 24 * 60
    events = [
        _event(transaction_id, 0, "Started", m, 0.0, state="Charging", token=token),
        _event(transaction_id, 1, "Updated", m + 60, 7000.0, state="Charging"),
        _event(transaction_id, 2, "Updated", m + 120, 14_000.0, state="SuspendedEV"),
        _event(transaction_id, 3, "Ended", m + 180, 14_000.0),
    ]
    return [await station.call("TransactionEvent", e) for e in events]


async def _shows_cost(station: Station) -> None:
    """The station reports TariffCostCtrlr.Enabled[Cost] = true (its device model)."""
    await station.call("NotifyReport", {
        "requestId": 1, "generatedAt": "2026-11-23T12:00:00Z", "seqNo": 0, "tbc": False,
        "reportData": [{
            "component": {"name": "TariffCostCtrlr"},
            "variable": {"name": "Enabled", "instance": "Cost"},
            "variableAttribute": [{"type": "Actual", "value": "true"}],
        }],
    })


async def _put(client: httpx.AsyncClient, tariff_id: str, body: dict[str, Any]
               ) -> httpx.Response:
    return await client.put(f"/api/driver-tariffs/{tariff_id}", json=body)


# --------------------------------------------------------------------------- the API


async def test_driver_tariffs_are_managed_over_http(client: Client) -> None:
    operator, viewer = client("operator"), client("viewer")
    created = await _put(operator, "cn-default", CN_TARIFF)
    assert created.status_code == 201, created.text
    body = created.json()
    assert body["group_id"] is None and body["currency"] == "CNY"
    assert body["text"] == ("Tariff: 1.20 CNY/kWh 08:00-22:00; 0.40 CNY/kWh 22:00-08:00; "
                            "parking 2.00 CNY/h after 30 min; session fee 1.00 CNY")
    fleet = await _put(operator, "fleet", {"currency": "CNY", "group_id": "FLEET",
                                           "price_per_kwh": 0.5})
    assert fleet.status_code == 201
    again = await _put(operator, "fleet", {"currency": "CNY", "group_id": "FLEET",
                                           "price_per_kwh": "0.6"})
    assert again.status_code == 200 and again.json()["price_per_kwh"] == "0.6"
    listed = (await viewer.get("/api/driver-tariffs")).json()
    assert [t["id"] for t in listed] == ["cn-default", "fleet"]
    assert (await viewer.get("/api/driver-tariffs/fleet")).json()["group_id"] == "FLEET"
    # a second default, or a second tariff for a group: 409
    second = await _put(operator, "other", {"currency": "CNY"})
    assert second.status_code == 409 and "default" in second.json()["detail"]
    assert (await _put(operator, "f2", {"currency": "CNY", "group_id": "FLEET"})
            ).status_code == 409
    assert (await operator.delete("/api/driver-tariffs/fleet")).status_code == 204
    assert (await viewer.get("/api/driver-tariffs/fleet")).status_code == 404
    assert (await operator.delete("/api/driver-tariffs/fleet")).status_code == 404


async def test_driver_tariff_input_is_bounded(client: Client) -> None:
    operator = client("operator")
    bad = [
        {"currency": "cny"},
        {"currency": "CNY", "price_per_kwh": -1},
        {"currency": "CNY", "price_per_kwh": "NaN"},
        {"currency": "CNY", "price_per_kwh": 1e9},
        {"currency": "CNY", "price_per_kwh": "0.123456"},
        {"currency": "CNY", "utc_offset": "+25:00"},
        {"currency": "CNY", "parking_grace_minutes": 10_000},
        {"currency": "CNY", "bands": [
            {"start": "08:00", "end": "22:00", "price_per_kwh": 1},
            {"start": "21:00", "end": "23:00", "price_per_kwh": 2}]},
        {"currency": "CNY", "bands": [{"start": "8:00", "end": "22:00", "price_per_kwh": 1}]},
        {"currency": "CNY", "description": "x" * 513},
        {"currency": "CNY", "surprise": 1},
    ]
    for body in bad:
        response = await _put(operator, "t", body)
        assert response.status_code == 422, (body, response.text)
    assert (await _put(operator, "bad id!", {"currency": "CNY"})).status_code in (404, 422)
    assert (await _put(client("viewer"), "t", {"currency": "CNY"})).status_code == 403
    assert (await _put(client(None), "t", {"currency": "CNY"})).status_code == 401


# --------------------------------------------------------------------------- OCPP


async def test_I01_tariff_shown_at_authorize(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    await _put(operator, "cn-default", CN_TARIFF)
    await _put(operator, "fleet", {"currency": "CNY", "group_id": "FLEET",
                                   "price_per_kwh": "0.50"})
    now = csms.clock.now()
    await csms.store.tokens.add("DRIVER-1", "ISO14443", now)
    await csms.store.tokens.add("FLEET-7", "ISO14443", now, group_id="FLEET")
    await csms.store.tokens.add("BLOCKED", "ISO14443", now, status="Blocked")
    station = await make_station("CS001")

    async def authorize(token: str) -> dict[str, Any]:
        reply = await station.call("Authorize", {"idToken": {"idToken": token,
                                                             "type": "ISO14443"}})
        info: dict[str, Any] = reply["idTokenInfo"]
        return info

    default = await authorize("DRIVER-1")
    assert default["status"] == "Accepted"
    assert default["personalMessage"]["content"].startswith("Tariff: 1.20 CNY/kWh 08:00-22:00")
    assert default["personalMessage"]["format"] == "UTF8"
    fleet = await authorize("FLEET-7")
    assert fleet["personalMessage"]["content"] == "Tariff: 0.50 CNY/kWh"
    for refused in ("BLOCKED", "NOBODY"):
        assert "personalMessage" not in await authorize(refused)


async def test_I01_no_tariff_no_personal_message(csms: Csms, make_station: StationFactory
                                                 ) -> None:
    await csms.store.tokens.add("DRIVER-1", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    reply = await station.call("Authorize", {"idToken": {"idToken": "DRIVER-1",
                                                         "type": "ISO14443"}})
    assert reply["idTokenInfo"] == {"status": "Accepted"}
    replies = await _session(station, "TX-FREE")
    assert all("totalCost" not in r for r in replies)  # no tariff: the CSMS knows no cost


async def test_I02_running_cost_in_transaction_event_answers(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await _put(client("operator"), "cn-default", CN_TARIFF)
    await csms.store.tokens.add("DRIVER-1", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    await _shows_cost(station)
    started, peak, valley, ended = await _session(station, "TX-1")
    assert started["totalCost"] == 1  # the session fee
    assert peak["totalCost"] == 9.4  # + 7 kWh x 1.20
    assert peak["updatedPersonalMessage"] == {"format": "UTF8",
                                              "content": "Cost so far: 9.40 CNY (7.000 kWh)"}
    assert valley["totalCost"] == 12.2  # + 7 kWh x 0.40
    assert ended["totalCost"] == 13.2  # + 30 min parked beyond the free 30
    assert ended["updatedPersonalMessage"]["content"] == "Total cost: 13.20 CNY (14.000 kWh)"
    assert started["idTokenInfo"]["status"] == "Accepted"


async def test_I03_final_cost_at_ended_and_in_the_api(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await _put(client("operator"), "cn-default", CN_TARIFF)
    await csms.store.tokens.add("DRIVER-1", "ISO14443", csms.clock.now())
    station = await make_station("CS001")  # shows no running cost
    started, peak, valley, ended = await _session(station, "TX-1")
    assert "totalCost" not in started and "totalCost" not in peak
    assert "totalCost" not in valley
    assert ended["totalCost"] == 13.2
    tx = (await client("viewer").get("/api/transactions/CS001/TX-1")).json()
    assert tx["cost"] == "13.20" and tx["currency"] == "CNY" and tx["cost_final"] is True
    listed = (await client("viewer").get("/api/transactions?station_id=CS001")).json()
    assert listed[0]["cost"] == "13.20"


async def test_I03_a_free_tariff_answers_zero(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await _put(client("operator"), "free", {"currency": "CNY"})
    await csms.store.tokens.add("DRIVER-1", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    *_, ended = await _session(station, "TX-1")
    assert ended["totalCost"] == 0


async def test_I_a_tariff_changed_mid_session_does_not_reprice_it(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    await _put(operator, "cn-default", CN_TARIFF)
    await csms.store.tokens.add("DRIVER-1", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    first = _event("TX-1", 0, "Started", 0, 0.0, state="Charging", token="DRIVER-1")
    await station.call("TransactionEvent", first)
    await _put(operator, "cn-default", {**CN_TARIFF, "session_fee": "50.00"})
    for e in [_event("TX-1", 1, "Updated", 60, 7000.0, state="Charging"),
              _event("TX-1", 2, "Updated", 120, 14_000.0, state="SuspendedEV")]:
        await station.call("TransactionEvent", e)
    ended = await station.call("TransactionEvent", _event("TX-1", 3, "Ended", 180, 14_000.0))
    assert ended["totalCost"] == 13.2
    # a new session gets the new price
    replies = await _session(station, "TX-2", day=1)
    assert replies[-1]["totalCost"] == 62.2


async def test_I_the_group_tariff_prices_the_groups_tokens(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    await _put(operator, "cn-default", CN_TARIFF)
    await _put(operator, "fleet", {"currency": "CNY", "group_id": "FLEET",
                                   "price_per_kwh": "0.50"})
    await csms.store.tokens.add("FLEET-7", "ISO14443", csms.clock.now(), group_id="FLEET")
    station = await make_station("CS001")
    *_, ended = await _session(station, "TX-1", token="FLEET-7")
    assert ended["totalCost"] == 7  # 14 kWh x 0.50, no fee, no parking charge
