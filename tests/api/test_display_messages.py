"""Block O over HTTP, against a simulated station over a real socket."""

from __future__ import annotations

from datetime import timedelta

import httpx

from csms.app import Csms
from csms.clock import to_ocpp
from simulators.ev import EV
from simulators.station import display as station_display
from tests.e2e.conftest import StationFactory
from tests.support import eventually

BASE = "/api/stations/CS001/display-messages"


async def test_O01_set_display_message_is_shown_and_stored(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    station = await make_station("CS001")
    r = await admin.post(BASE, json={"content": "Welcome", "language": "en",
                                     "priority": "InFront"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["content"] == "Welcome" and body["source"] == "set"
    message_id = body["message_id"]
    assert station_display.shown(station) == ["Welcome"]
    listed = (await admin.get(BASE)).json()
    assert [m["message_id"] for m in listed] == [message_id]
    # O06: the same id replaces the message on the station and here
    end = csms.clock.now() + timedelta(hours=1)
    r = await admin.put(f"{BASE}/{message_id}", json={
        "content": "欢迎充电", "language": "zh", "priority": "AlwaysFront", "end": to_ocpp(end)})
    assert r.status_code == 200, r.text
    assert station_display.shown(station) == ["欢迎充电"]
    listed = (await admin.get(BASE)).json()
    assert len(listed) == 1 and listed[0]["language"] == "zh"
    assert listed[0]["priority"] == "AlwaysFront" and listed[0]["ends_at"] is not None


async def test_O01_a_refused_message_is_409_with_the_station_status_and_not_stored(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    await make_station("CS001")
    r = await admin.post(BASE, json={"content": "<b>hi</b>", "format": "HTML"})
    assert r.status_code == 409
    assert r.json()["code"] == "NotSupportedMessageFormat"
    assert (await admin.get(BASE)).json() == []
    r = await admin.post(BASE, json={"content": "x", "start": "2026-12-01T10:00:00Z",
                                     "end": "2026-12-01T09:00:00Z"})
    assert r.status_code == 422
    r = await admin.post(BASE, json={"content": "x" * 513})
    assert r.status_code == 422


async def test_O02_message_bound_to_a_transaction(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    await csms.store.tokens.add("GOOD", "ISO14443", csms.clock.now())
    station = await make_station("CS001")
    r = await admin.post(BASE, json={"content": "x", "transaction_id": "NOT-RUNNING"})
    assert r.status_code == 409 and r.json()["code"] == "UnknownTransaction"
    await station.plug_in(1, EV(battery_kwh=60, soc=0.2, energy_wanted_wh=10_000))
    await station.present_token(1, "GOOD")
    tx = station.transaction_id(1)
    r = await admin.post(BASE, json={"content": "Charging at 11 kW", "transaction_id": tx,
                                     "evse_id": 1})
    assert r.status_code == 201, r.text
    assert r.json()["transaction_id"] == tx and r.json()["evse_id"] == 1
    assert station_display.shown(station) == ["Charging at 11 kW"]


async def test_O03_O04_get_display_messages_report_replaces_the_stored_set(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    station = await make_station("CS001")
    for i in range(6):  # more than one NotifyDisplayMessages part (4 per part)
        r = await admin.put(f"{BASE}/{i + 1}", json={"content": f"m{i + 1}"})
        assert r.status_code == 200, r.text
    # the station lost one message (e.g. a reboot): its report is the truth
    del station.display_messages[6]
    r = await admin.post(f"{BASE}/reports", json={})
    assert r.status_code == 202, r.text
    request_id = r.json()["request_id"]
    assert r.json()["status"] == "Accepted"

    async def complete() -> dict | None:
        report = (await admin.get(f"{BASE}/reports/{request_id}")).json()
        return report if report["complete"] else None

    report = await eventually(complete)
    assert report["parts"] == 2
    assert sorted(i["id"] for i in report["items"]) == [1, 2, 3, 4, 5]
    listed = (await admin.get(BASE)).json()
    assert [m["message_id"] for m in listed] == [1, 2, 3, 4, 5]
    assert {m["source"] for m in listed} == {"reported"}
    # a filtered report (O03 by priority) leaves the stored set alone
    r = await admin.post(f"{BASE}/reports", json={"priority": "AlwaysFront"})
    assert r.json()["status"] == "Unknown" and r.json()["complete"]
    assert len((await admin.get(BASE)).json()) == 5
    assert (await admin.get(f"{BASE}/reports/999999999")).status_code == 404


async def test_O05_clear_display_message(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    station = await make_station("CS001")
    message_id = (await admin.post(BASE, json={"content": "bye"})).json()["message_id"]
    assert (await admin.delete(f"{BASE}/{message_id}")).status_code == 204
    assert station_display.shown(station) == []
    assert (await admin.get(BASE)).json() == []
    assert (await admin.delete(f"{BASE}/{message_id}")).status_code == 404


async def test_O_queue_message_in_chinese_and_roles(
    csms: Csms, make_station: StationFactory, client, admin: httpx.AsyncClient  # type: ignore[no-untyped-def]
) -> None:
    station = await make_station("CS001")
    r = await admin.post(f"{BASE}/queue", json={"position": 3, "language": "zh", "evse_id": 1})
    assert r.status_code == 201, r.text
    assert station_display.shown(station) == ["您前面还有2位\uff0c请稍候。"]
    viewer = client("viewer")
    assert (await viewer.get(BASE)).status_code == 200
    assert (await viewer.post(BASE, json={"content": "x"})).status_code == 403
    assert (await admin.post("/api/stations/NOPE/display-messages",
                             json={"content": "x"})).status_code == 404
    await station.disconnect()
    assert (await admin.post(BASE, json={"content": "x"})).status_code == 409


async def test_O01_O04_O05_the_plain_command_routes_keep_the_stored_messages(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient
) -> None:
    station = await make_station("CS001")
    commands = "/api/stations/CS001/commands"
    info = {"id": 7, "priority": "NormalCycle", "message": {"format": "UTF8", "content": "hi"}}
    r = await admin.post(f"{commands}/set-display-message", json={"message": info})
    assert r.json()["reply"]["status"] == "Accepted", r.text
    assert [m["message_id"] for m in (await admin.get(BASE)).json()] == [7]
    station.display_messages[8] = {**info, "id": 8}  # set locally at the station
    r = await admin.post(f"{commands}/get-display-messages", json={})
    assert r.json()["reply"]["status"] == "Accepted"

    async def both() -> bool:
        return [m["message_id"] for m in (await admin.get(BASE)).json()] == [7, 8]

    await eventually(both)
    r = await admin.post(f"{commands}/clear-display-message", json={"id": 7})
    assert r.json()["reply"]["status"] == "Accepted"
    assert [m["message_id"] for m in (await admin.get(BASE)).json()] == [8]
    station.display_messages.clear()
    await admin.post(f"{commands}/get-display-messages", json={})
    assert (await admin.get(BASE)).json() == []  # Unknown to an unfiltered request: none
