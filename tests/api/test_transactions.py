"""Transactions and sessions over HTTP, from a simulated station charging a car."""

from __future__ import annotations

from datetime import timedelta

from csms.app import Csms
from csms.events import ChargingNeedsChanged
from simulators.ev import EV
from simulators.station import Station
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually


async def _charging(csms: Csms, make_station: StationFactory, station_id: str,
                    token: str) -> tuple[Station, str]:
    await csms.store.tokens.add(token, "ISO14443", csms.clock.now())
    station = await make_station(station_id, meter_interval_s=1.0)
    await station.plug_in(1, EV(battery_kwh=60, soc=0.2))
    await station.present_token(1, token)
    transaction_id = station.transaction_id(1)
    assert transaction_id
    return station, transaction_id


async def test_transactions_list_filters_and_detail_with_meter_values(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    one, tx1 = await _charging(csms, make_station, "CS001", "TAG-A")
    _, tx2 = await _charging(csms, make_station, "CS002", "TAG-B")
    viewer = client("viewer")

    async def metered() -> dict | None:
        detail = (await viewer.get(f"/api/transactions/CS001/{tx1}")).json()
        powered = [v for v in detail["meter_values"] if v["measurand"].startswith("Power")]
        return detail if powered and (detail["energy_wh"] or 0) > 0 else None

    detail = await eventually(metered)
    assert detail["active"] is True and detail["id_token"] == "TAG-A"
    assert detail["evse_id"] == 1 and detail["charging_state"] == "Charging"

    await one.unplug(1)

    async def ended() -> bool:
        return not (await viewer.get(f"/api/transactions/CS001/{tx1}")).json()["active"]

    await eventually(ended)

    async def ids(**params: str) -> list[str]:
        reply = await viewer.get("/api/transactions", params=params)
        assert reply.status_code == 200, reply.text
        return sorted(t["transaction_id"] for t in reply.json())

    assert await ids() == sorted([tx1, tx2])
    assert await ids(station_id="CS002") == [tx2]
    assert await ids(active="true") == [tx2]
    assert await ids(active="false") == [tx1]
    assert await ids(id_token="TAG-A") == [tx1]
    now = csms.clock.now()
    assert await ids(since=(now + timedelta(seconds=30)).isoformat()) == [tx2]  # still running
    assert await ids(until=(now - timedelta(hours=1)).isoformat()) == []
    assert await ids(limit="1") in ([tx1], [tx2])
    bad = await viewer.get("/api/transactions", params={"limit": "0"})
    assert bad.status_code == 422 and bad.json()["detail"][0]["loc"] == ["query", "limit"]
    missing = await viewer.get("/api/transactions/CS001/NOPE")
    assert missing.status_code == 404


async def test_driver_sets_departure_and_energy_or_opts_out(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station, tx = await _charging(csms, make_station, "CS001", "TAG-A")
    app = client("operator")
    events = csms.events.subscribe()
    departure = (csms.clock.now() + timedelta(hours=9)).replace(microsecond=0)
    reply = await app.put(f"/api/sessions/CS001/{tx}", json={
        "departure_time": departure.isoformat(), "energy_wanted_wh": 20_000,
    })
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["energy_wanted_wh"] == 20_000 and body["needs_source"] == "api"
    assert body["charge_now"] is False
    event = await eventually(lambda: _next_needs(events))
    assert event.transaction_id == tx and event.energy_amount_wh == 20_000
    assert event.departure_time == departure

    opted_out = await app.put(f"/api/sessions/CS001/{tx}", json={"charge_now": True})
    assert opted_out.json()["charge_now"] is True
    assert opted_out.json()["energy_wanted_wh"] == 20_000  # a field left out is kept
    stored = await csms.store.transactions.get("CS001", tx)
    assert stored is not None and stored.charge_now and stored.departure_time == departure
    sessions = (await client("viewer").get("/api/sessions")).json()
    assert [(s["transaction_id"], s["charge_now"]) for s in sessions] == [(tx, True)]

    for body, field in [
        ({"departure_time": (csms.clock.now() - timedelta(hours=1)).isoformat()},
         "departure_time"),
        ({"departure_time": "2030-01-01T07:00:00"}, "departure_time"),  # no time zone
        ({"energy_wanted_wh": -5}, "energy_wanted_wh"),
        ({"charge_later": True}, "charge_later"),
    ]:
        bad = await app.put(f"/api/sessions/CS001/{tx}", json=body)
        assert bad.status_code == 422, body
        assert bad.json()["detail"][0]["loc"] == ["body", field]
    assert (await app.put("/api/sessions/CS001/NOPE", json={})).status_code == 404

    await station.unplug(1)

    async def ended() -> bool:
        record = await csms.store.transactions.get("CS001", tx)
        return bool(record and record.ended_at)

    await eventually(ended)
    late = await app.put(f"/api/sessions/CS001/{tx}", json={"charge_now": True})
    assert late.status_code == 409 and "ended" in late.json()["detail"]
    csms.events.unsubscribe(events)


async def _next_needs(queue) -> ChargingNeedsChanged | None:  # type: ignore[no-untyped-def]
    while not queue.empty():
        event = queue.get_nowait()
        if isinstance(event, ChargingNeedsChanged):
            return event
    return None
