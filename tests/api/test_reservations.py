"""Block H, reservation: made over HTTP, carried out by a simulated station over OCPP."""

from __future__ import annotations

import asyncio
from datetime import datetime, timedelta
from typing import Any

import httpx

from csms.app import Csms
from simulators.ev import EV
from simulators.station import EvseSpec, Station
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually

TWO_EVSES = [EvseSpec(1, kind="AC", phases=3, max_current_a=32.0),
             EvseSpec(2, kind="AC", phases=3, max_current_a=32.0)]


def _body(csms: Csms, *, evse_id: int | None = 1, token: str = "RES-1",
          seconds: float = 3600, **more: Any) -> dict[str, Any]:
    expires = csms.clock.now() + timedelta(seconds=seconds)
    body: dict[str, Any] = {"station_id": "CS001", "id_token": token,
                            "expires_at": expires.isoformat(), **more}
    if evse_id is not None:
        body["evse_id"] = evse_id
    return body


async def _reserve(api: httpx.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await api.post("/api/reservations", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def created_at_expiry(r: dict[str, Any]) -> datetime:
    return datetime.fromisoformat(r["expires_at"])


async def _connector(csms: Csms, evse_id: int) -> str | None:
    for c in await csms.store.devices.connectors("CS001"):
        if c.evse_id == evse_id:
            return c.status
    return None


async def _status_is(csms: Csms, evse_id: int, status: str) -> None:
    async def check() -> bool:
        return await _connector(csms, evse_id) == status
    await eventually(check)


async def _tokens(csms: Csms) -> None:
    now = csms.clock.now()
    for token in ("RES-1", "RES-2", "OTHER"):
        await csms.store.tokens.add(token, "ISO14443", now)
    await csms.store.tokens.add("FLEET-7", "ISO14443", now, group_id="FLEET")


async def test_H01_reserve_now_specific_evse(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await _tokens(csms)
    station = await make_station("CS001", evses=TWO_EVSES)
    operator = client("operator")
    created = await _reserve(operator, _body(csms, evse_id=2))
    assert created["status"] == "Accepted" and created["evse_id"] == 2
    assert created["created_by"] == "test-operator"
    await _status_is(csms, 2, "Reserved")
    assert await _connector(csms, 1) != "Reserved"
    # only the reserved token may start there; another one may use EVSE 1
    assert await station.present_token(2, "OTHER") == "Reserved"
    assert station.transaction_id(2) is None
    assert await station.present_token(1, "OTHER") == "Accepted"
    listed = (await client("viewer").get("/api/reservations",
                                         params={"station_id": "CS001"})).json()
    assert [r["id"] for r in listed] == [created["id"]]
    assert listed[0]["status"] == "Accepted"
    got = (await client("viewer").get(f"/api/reservations/{created['id']}")).json()
    assert got["id_token"] == "RES-1" and got["token_type"] == "ISO14443"


async def test_H01_reserve_now_refusals_are_stored_with_the_answer(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await _tokens(csms)
    station = await make_station("CS001", evses=TWO_EVSES)
    operator = client("operator")
    await station.plug_in(1, EV(battery_kwh=60, soc=0.5))
    occupied = await _reserve(operator, _body(csms, evse_id=1))
    assert occupied["status"] == "Occupied"
    unknown = await _reserve(operator, _body(csms, evse_id=9))
    assert unknown["status"] == "Rejected" and unknown["status_reason"].startswith("UnknownEvse")
    await operator.post("/api/stations/CS001/commands/change-availability",
                        json={"operational": False, "evse_id": 2})
    unavailable = await _reserve(operator, _body(csms, evse_id=2))
    assert unavailable["status"] == "Unavailable"
    # the station has reservations turned off
    await operator.post("/api/stations/CS001/commands/set-variables", json={"variables": [
        {"component": "ReservationCtrlr", "variable": "Enabled", "value": "false"}]})
    off = await _reserve(operator, _body(csms, evse_id=None))
    assert off["status"] == "Rejected"
    none_held = (await client("viewer").get("/api/reservations",
                                            params={"status": "Accepted"})).json()
    assert none_held == []


async def test_H01_reserve_now_any_evse(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await _tokens(csms)
    station = await make_station("CS001", evses=TWO_EVSES)
    operator = client("operator")
    first = await _reserve(operator, _body(csms, evse_id=None, token="RES-1"))
    assert first["status"] == "Accepted" and first["evse_id"] is None
    assert await _connector(csms, 1) != "Reserved"  # one EVSE is still free for anyone
    second = await _reserve(operator, _body(csms, evse_id=None, token="RES-2"))
    assert second["status"] == "Accepted"
    await _status_is(csms, 1, "Reserved")  # now both are spoken for
    await _status_is(csms, 2, "Reserved")
    third = await _reserve(operator, _body(csms, evse_id=None, token="OTHER"))
    assert third["status"] == "Occupied"
    assert await station.present_token(1, "OTHER") == "Reserved"
    assert await station.present_token(2, "RES-2") == "Accepted"

    async def used() -> dict[str, Any] | None:
        r = (await client("viewer").get(f"/api/reservations/{second['id']}")).json()
        return r if r["status"] == "Used" else None

    assert (await eventually(used))["transaction_id"] == station.transaction_id(2)


async def test_H02_cancel_reservation(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await _tokens(csms)
    station = await make_station("CS001", evses=TWO_EVSES)
    operator = client("operator")
    created = await _reserve(operator, _body(csms, evse_id=1))
    await _status_is(csms, 1, "Reserved")
    cancelled = await operator.delete(f"/api/reservations/{created['id']}")
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["status"] == "Cancelled" and cancelled.json()["ended_at"]
    await _status_is(csms, 1, "Available")
    assert await station.present_token(1, "OTHER") == "Accepted"
    again = await operator.delete(f"/api/reservations/{created['id']}")
    assert again.status_code == 409 and "Cancelled" in again.json()["detail"]
    assert (await operator.delete("/api/reservations/999999")).status_code == 404
    assert (await client("viewer").delete(f"/api/reservations/{created['id']}")
            ).status_code == 403


async def test_H02_cancel_a_reservation_the_station_no_longer_holds(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator = client("operator")
    created = await _reserve(operator, _body(csms))
    station.reservations.clear()  # lost by the station (a reboot without persistence)
    removed = (await operator.delete(f"/api/reservations/{created['id']}")).json()
    assert removed["status"] == "Removed"
    assert "no such reservation" in removed["status_reason"]


async def test_H03_use_a_reserved_evse_with_a_group_token(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await _tokens(csms)
    station = await make_station("CS001")
    operator = client("operator")
    created = await _reserve(operator, _body(csms, group_id_token="FLEET"))
    assert created["group_id_token"] == "FLEET" and created["group_token_type"] == "Central"
    assert await station.present_token(1, "FLEET-7") == "Accepted"
    transaction_id = station.transaction_id(1)
    assert transaction_id

    async def used() -> dict[str, Any] | None:
        r = (await client("viewer").get(f"/api/reservations/{created['id']}")).json()
        return r if r["status"] == "Used" else None

    used_one = await eventually(used)
    assert used_one["transaction_id"] == transaction_id
    events = await csms.db.pool.fetch(
        "SELECT payload->>'reservationId' AS rid FROM transaction_events"
        " WHERE transaction_id = $1 AND payload ? 'reservationId'", transaction_id)
    assert [int(e["rid"]) for e in events] == [created["id"]]
    assert not station.reservations


async def test_H04_reservation_expired_at_the_station(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await make_station("CS001")
    created = await _reserve(client("operator"), _body(csms, seconds=3.0))
    await _status_is(csms, 1, "Reserved")

    async def expired() -> dict[str, Any] | None:
        r = (await client("viewer").get(f"/api/reservations/{created['id']}")).json()
        return r if r["status_reason"] == "station: Expired" else None

    reported = await eventually(expired)
    assert reported["status"] == "Expired" and reported["ended_at"]
    await _status_is(csms, 1, "Available")


async def test_H04_the_csms_expires_a_reservation_by_its_own_clock(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    created = await _reserve(client("operator"), _body(csms, seconds=3.0))
    await station.stop()  # gone: it will never say
    left = (created_at_expiry(created) - csms.clock.now()).total_seconds()
    await asyncio.sleep(max(0.0, left) + 0.2)
    viewer = client("viewer")
    got = (await viewer.get(f"/api/reservations/{created['id']}")).json()
    assert got["status"] == "Expired" and got["ended_at"] is not None
    expired = (await viewer.get("/api/reservations", params={"status": "Expired"})).json()
    assert [r["id"] for r in expired] == [created["id"]]
    assert (await viewer.get("/api/reservations", params={"status": "Accepted"})).json() == []


async def test_H_reservation_input_is_bounded(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    await csms.store.stations.add("CS001", None, csms.clock.now())  # provisioned, offline
    bad = [
        _body(csms, seconds=-60),
        _body(csms, seconds=40 * 86_400),
        _body(csms, evse_id=0),
        _body(csms, token="x" * 37),
        _body(csms, token_type="Magic"),
        _body(csms, group_id_token=""),
        _body(csms, connector_type="Plug"),
        {**_body(csms), "expires_at": "2026-12-01T10:00:00"},  # no time zone
        {**_body(csms), "station_id": "bad id"},
        {**_body(csms), "surprise": True},
    ]
    for body in bad:
        response = await operator.post("/api/reservations", json=body)
        assert response.status_code == 422, (body, response.text)
    unknown = await operator.post("/api/reservations", json={**_body(csms),
                                                             "station_id": "NOPE"})
    assert unknown.status_code == 404
    offline = await operator.post("/api/reservations", json=_body(csms))
    assert offline.status_code == 409 and "not connected" in offline.json()["detail"]
    failed = (await client("viewer").get("/api/reservations",
                                         params={"status": "Failed"})).json()
    assert len(failed) == 1 and failed[0]["status_reason"].startswith("offline")
    assert (await client("viewer").post("/api/reservations", json=_body(csms))
            ).status_code == 403
    assert (await client(None).get("/api/reservations")).status_code == 401
    assert (await operator.get("/api/reservations/0")).status_code == 422
    assert (await operator.get("/api/reservations", params={"status": "Nope"})
            ).status_code == 422


async def test_H04_reservation_status_update_for_an_unknown_reservation_is_answered(
    csms: Csms, make_station: StationFactory
) -> None:
    station: Station = await make_station("CS001")
    reply = await station.call("ReservationStatusUpdate", {
        "reservationId": 4242, "reservationUpdateStatus": "Removed"})
    assert reply == {}
    kept = await csms.store.notifications.list("CS001", "ReservationStatusUpdate")
    assert kept[0].payload["reservationId"] == 4242


async def test_H01_H02_raw_commands_keep_the_stored_reservations(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001", evses=TWO_EVSES)
    operator = client("operator")
    expires = (csms.clock.now() + timedelta(hours=1)).isoformat()
    raw = await operator.post("/api/stations/CS001/commands/reserve-now", json={
        "id": 500, "evseId": 2, "expiryDateTime": expires,
        "idToken": {"idToken": "RES-9", "type": "ISO14443"}})
    assert raw.status_code == 200 and raw.json()["reply"]["status"] == "Accepted"
    stored = (await client("viewer").get("/api/reservations/500")).json()
    assert stored["status"] == "Accepted" and stored["evse_id"] == 2
    assert stored["id_token"] == "RES-9" and stored["created_by"] == "ReserveNow command"
    assert 500 in station.reservations
    later = await _reserve(operator, _body(csms, evse_id=1))
    assert later["id"] > 500  # ids the CSMS picks stay clear of the caller's
    cancel = await operator.post("/api/stations/CS001/commands/cancel-reservation",
                                 json={"reservationId": 500})
    assert cancel.json()["reply"]["status"] == "Accepted"
    assert (await client("viewer").get("/api/reservations/500")).json()["status"] == "Cancelled"
