"""Block D over HTTP and a real station: the local list follows the token table, in full
or by differences, with versions the station checks."""

from __future__ import annotations

from csms.app import Csms
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory


def _held(station) -> dict[str, str]:  # type: ignore[no-untyped-def]
    return {k[0]: v["status"] for k, v in station.local_auth.local_list.items()}


async def test_D01_D02_local_list_full_then_only_the_changes(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    for body in ({"id_token": "AAA", "group_id": "FLEET"}, {"id_token": "BBB",
                 "status": "Blocked"}, {"id_token": "FLEET", "type": "Central"}):
        assert (await operator.post("/api/id-tokens", json=body)).status_code == 201
    station = await make_station("CS001")

    first = await operator.post("/api/local-lists/sync", json={"station_id": "CS001"})
    assert first.status_code == 200, first.text
    [result] = first.json()
    assert (result["update"], result["status"], result["entries"]) == ("Full", "Accepted", 3)
    assert _held(station) == {"AAA": "Accepted", "BBB": "Blocked", "FLEET": "Accepted"}
    assert station.local_auth.local_list[("AAA", "ISO14443")]["groupIdToken"] == {
        "idToken": "FLEET", "type": "Central"}
    assert station.local_auth.version == result["version"] > 0
    state = (await client("viewer").get("/api/stations/CS001/local-list")).json()
    assert state["version"] == result["version"] and state["up_to_date"]

    # the token table changes: one added, one changed, one removed
    await operator.post("/api/id-tokens", json={"id_token": "CCC"})
    await operator.put("/api/id-tokens/ISO14443/AAA", json={"status": "Blocked"})
    assert (await operator.delete("/api/id-tokens/ISO14443/BBB")).status_code == 204
    assert not (await client("viewer").get("/api/stations/CS001/local-list")).json()[
        "up_to_date"]
    second = (await operator.post("/api/local-lists/sync", json={"station_id": "CS001"}))
    [result2] = second.json()
    assert (result2["update"], result2["status"], result2["entries"]) == (
        "Differential", "Accepted", 3)
    assert result2["version"] > result["version"]
    assert _held(station) == {"AAA": "Blocked", "CCC": "Accepted", "FLEET": "Accepted"}
    assert station.local_auth.version == result2["version"]

    [again] = (await operator.post("/api/local-lists/sync", json={"station_id": "CS001"})).json()
    assert (again["update"], again["status"], again["messages"]) == ("None", "UpToDate", 0)

    # a list sent by hand is not the token table's: the next sync sends it all again
    by_hand = await operator.post("/api/stations/CS001/commands/send-local-list", json={
        "versionNumber": 9999, "updateType": "Full"})
    assert by_hand.status_code == 200 and by_hand.json()["reply"]["status"] == "Accepted"
    assert _held(station) == {}
    [full] = (await operator.post("/api/local-lists/sync", json={"station_id": "CS001"})).json()
    assert (full["update"], full["status"], full["entries"]) == ("Full", "Accepted", 3)
    assert _held(station) == {"AAA": "Blocked", "CCC": "Accepted", "FLEET": "Accepted"}


async def test_D01_a_list_larger_than_a_message_goes_in_parts(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    for i in range(5):
        await operator.post("/api/id-tokens", json={"id_token": f"T{i}"})
    station = await make_station("CS001")
    station.device_model.put("LocalAuthListCtrlr", "ItemsPerMessage", "2")
    set_ = await operator.post("/api/stations/CS001/commands/get-variables", json={
        "variables": [{"component": "LocalAuthListCtrlr", "variable": "ItemsPerMessage"}]})
    assert set_.status_code == 200  # the CSMS now knows the limit (stored device model)
    station.received_calls.clear()
    [result] = (await operator.post("/api/local-lists/sync", json={"station_id": "CS001"})).json()
    assert (result["update"], result["status"], result["entries"], result["messages"]) == (
        "Full", "Accepted", 5, 3)
    assert list(station.received_calls) == ["GetLocalListVersion"] + ["SendLocalList"] * 3
    assert sorted(_held(station)) == [f"T{i}" for i in range(5)]
    assert station.local_auth.version == result["version"]


async def test_D01_sync_every_connected_station(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    operator = client("operator")
    await operator.post("/api/id-tokens", json={"id_token": "AAA"})
    one, two = await make_station("CS001"), await make_station("CS002")
    await make_station("CS003", start=False)
    results = (await operator.post("/api/local-lists/sync", json={})).json()
    assert [(r["station_id"], r["status"]) for r in results] == [
        ("CS001", "Accepted"), ("CS002", "Accepted")]
    assert _held(one) == _held(two) == {"AAA": "Accepted"}
    offline = await operator.post("/api/local-lists/sync", json={"station_id": "CS003"})
    assert offline.status_code == 409
    assert (await operator.post("/api/local-lists/sync",
                                json={"station_id": "NOPE"})).status_code == 404
    assert (await operator.post("/api/local-lists/sync",
                                json={"station_id": "bad id!"})).status_code == 422
    assert (await client("viewer").post("/api/local-lists/sync", json={})).status_code == 403
