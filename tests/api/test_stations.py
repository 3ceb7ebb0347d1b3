"""Stations over HTTP: provisioning, list with online state, detail with EVSEs and the
device model, removal."""

from __future__ import annotations

from csms.app import Csms
from simulators.station import Station, StationSpec
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually


async def test_provision_a_station_that_then_connects_with_its_password(
    csms: Csms, client: Client, base_url: str
) -> None:
    operator = client("operator")
    made = await operator.post("/api/stations", json={"id": "HOME-1"})
    assert made.status_code == 201
    body = made.json()
    assert body["created"] is True and 16 <= len(body["password"]) <= 40  # generated, once
    station = Station(StationSpec("HOME-1", password=body["password"]),
                      url=f"ws://127.0.0.1:{csms.ocpp.port}/ocpp")
    await station.start()
    try:
        assert station.boot_status == "Accepted"
    finally:
        await station.stop()

    again = await operator.post("/api/stations",
                                json={"id": "HOME-1", "password": "a-chosen-password-123"})
    assert again.status_code == 200
    assert again.json() == {"id": "HOME-1", "created": False, "password": None}
    open_station = await operator.post("/api/stations", json={"id": "DEV", "no_password": True})
    assert open_station.status_code == 201 and open_station.json()["password"] is None
    listed = {s["id"]: s for s in (await operator.get("/api/stations")).json()}
    assert listed["HOME-1"]["has_password"] and not listed["DEV"]["has_password"]


async def test_bad_provisioning_bodies_are_422_with_the_field(client: Client) -> None:
    operator = client("operator")
    for body, field in [
        ({"id": "has/slash"}, "id"),
        ({"id": "x" * 49}, "id"),
        ({"id": "CS1", "password": "short"}, "password"),
        ({"id": "CS1", "passwd": "a-long-enough-password"}, "passwd"),
        ({"id": "CS1", "password": "a-long-enough-password", "no_password": True},
         "no_password"),
        ({}, "id"),
    ]:
        reply = await operator.post("/api/stations", json=body)
        assert reply.status_code == 422, body
        errors = reply.json()["detail"]
        assert errors[0]["loc"][-1] == field and errors[0]["msg"], (body, errors)


async def test_list_and_detail_show_online_state_evses_and_device_model(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await make_station("CS001")
    await make_station("CS002", start=False)
    await csms.commands.get_variables("CS001", [("SmartChargingCtrlr", "RateUnit")])
    viewer = client("viewer")

    async def connector_known() -> dict | None:
        detail = (await viewer.get("/api/stations/CS001")).json()
        return detail if detail["evses"] else None

    detail = await eventually(connector_known)
    assert detail["online"] is True and detail["boot_status"] == "Accepted"
    assert detail["evses"][0]["id"] == 1
    assert detail["evses"][0]["connectors"][0]["status"] == "Available"
    assert any(v["component"] == "SmartChargingCtrlr" and v["variable"] == "RateUnit"
               for v in detail["variables"])
    listed = {s["id"]: s["online"] for s in (await viewer.get("/api/stations")).json()}
    assert listed == {"CS001": True, "CS002": False}
    missing = await viewer.get("/api/stations/NOPE")
    assert missing.status_code == 404 and "NOPE" in missing.json()["detail"]


async def test_removing_a_station_disconnects_it(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await make_station("CS001")
    admin = client("admin")
    assert (await admin.delete("/api/stations/CS001")).status_code == 204

    async def gone() -> bool:
        return not csms.connections.is_connected("CS001")

    await eventually(gone)
    assert (await admin.get("/api/stations/CS001")).status_code == 404
    assert (await admin.delete("/api/stations/CS001")).status_code == 404
