"""Id tokens over HTTP: create, read, update, delete, and their error answers."""

from __future__ import annotations

from csms.app import Csms
from tests.api.conftest import Client


async def test_id_token_crud(csms: Csms, client: Client) -> None:
    operator = client("operator")
    made = await operator.post("/api/id-tokens", json={
        "id_token": "04A2B3C4", "type": "ISO14443", "group_id": "fleet-1",
        "expires_at": "2030-01-01T00:00:00Z",
    })
    assert made.status_code == 201
    assert made.json()["status"] == "Accepted" and made.json()["group_id"] == "fleet-1"
    duplicate = await operator.post("/api/id-tokens", json={"id_token": "04A2B3C4"})
    assert duplicate.status_code == 409

    got = (await operator.get("/api/id-tokens/ISO14443/04A2B3C4")).json()
    assert got["expires_at"].startswith("2030-01-01T00:00:00")
    blocked = await operator.put("/api/id-tokens/ISO14443/04A2B3C4", json={"status": "Blocked"})
    assert blocked.status_code == 200 and blocked.json()["status"] == "Blocked"
    stored = await csms.store.tokens.get("04A2B3C4", "ISO14443")
    assert stored is not None and stored.status == "Blocked" and stored.group_id is None
    created = await operator.put("/api/id-tokens/eMAID/DE-ABC-123", json={})
    assert created.status_code == 201
    listed = [(t["type"], t["id_token"]) for t in (await operator.get("/api/id-tokens")).json()]
    assert listed == [("ISO14443", "04A2B3C4"), ("eMAID", "DE-ABC-123")]

    assert (await operator.delete("/api/id-tokens/ISO14443/04A2B3C4")).status_code == 204
    assert (await operator.get("/api/id-tokens/ISO14443/04A2B3C4")).status_code == 404
    assert (await operator.delete("/api/id-tokens/ISO14443/04A2B3C4")).status_code == 404


async def test_bad_id_token_bodies_are_422(client: Client) -> None:
    operator = client("operator")
    for method, path, body, field in [
        ("POST", "/api/id-tokens", {"id_token": "T", "status": "Maybe"}, "status"),
        ("POST", "/api/id-tokens", {"id_token": "T", "type": "Barcode"}, "type"),
        ("POST", "/api/id-tokens", {"id_token": "x" * 37}, "id_token"),
        ("POST", "/api/id-tokens", {"id_token": "T", "expires_at": "2030-01-01T00:00:00"},
         "expires_at"),  # no time zone
        ("PUT", "/api/id-tokens/Barcode/T", {}, "type"),
        ("PUT", "/api/id-tokens/ISO14443/" + "x" * 37, {}, "id_token"),
    ]:
        reply = await operator.request(method, path, json=body)
        assert reply.status_code == 422, (path, body)
        assert reply.json()["detail"][0]["loc"][-1] == field, reply.json()
