"""Block L over HTTP and OCPP: firmware updates as status resources, signed firmware, and
rollouts with a cap on concurrent updates, against simulated stations."""

from __future__ import annotations

import base64
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from csms.app import Csms
from csms.config import Config, FirmwareConfig
from simulators.station import Station
from simulators.station.link import CallFailed
from tests.api.conftest import Client
from tests.e2e.conftest import StationFactory
from tests.support import eventually

LOCATION = "https://firmware.example/sim-22/2.0.0"


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, firmware=FirmwareConfig(rollout_tick_s=0.1),
                   server=replace(config.server, call_timeout_s=2.0))


def signer() -> tuple[ec.EllipticCurvePrivateKey, str]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "firmware signing")])
    now = datetime.now(UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - timedelta(days=1))
            .not_valid_after(now + timedelta(days=30))
            .sign(key, hashes.SHA256()))
    return key, cert.public_bytes(serialization.Encoding.PEM).decode()


async def quick(station: Station) -> Station:
    station.firmware.step_s = 0.05
    return station


async def finished(client: Client, update_id: int) -> dict:
    viewer = client("viewer")

    async def done() -> dict | None:
        update = (await viewer.get(f"/api/firmware-updates/{update_id}")).json()
        return update if update["outcome"] != "in_progress" else None

    return await eventually(done)


async def test_L02_firmware_update_is_tracked_to_installed(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await quick(await make_station("CS001"))
    reply = await client("operator").post("/api/firmware-updates", json={
        "station_id": "CS001", "location": LOCATION, "retries": 2, "retry_interval_s": 1})
    assert reply.status_code == 201, reply.text
    created = reply.json()
    assert created["reply_status"] == "Accepted" and created["outcome"] == "in_progress"
    assert created["signed"] is False

    update = await finished(client, created["id"])
    assert update["outcome"] == "installed" and update["status"] == "Installed"
    history = [h["status"] for h in update["history"]]
    assert history[0] == "Requested" and "Accepted" in history  # the reply may come second
    assert [s for s in history if s not in ("Requested", "Accepted")] == [
        "Downloading", "Downloaded", "Installing", "InstallRebooting", "Installed"]
    # every status the station sent named the request the CSMS sent
    assert {rid for rid, _ in station.firmware.statuses} == {created["request_id"]}
    assert station.device_model.value("ChargingStation", "FirmwareVersion") == "2.0.0"
    listed = (await client("viewer").get("/api/firmware-updates",
                                         params={"station_id": "CS001"})).json()
    assert [u["id"] for u in listed] == [created["id"]]


async def test_L01_secure_firmware_update_with_a_valid_signature(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await quick(await make_station("CS001"))
    key, certificate = signer()
    image = b"\x7fELF the new firmware image"
    station.firmware.images[LOCATION] = image
    signature = base64.b64encode(key.sign(image, ec.ECDSA(hashes.SHA256()))).decode()
    reply = await client("operator").post("/api/firmware-updates", json={
        "station_id": "CS001", "location": LOCATION, "signature": signature,
        "signing_certificate": certificate})
    assert reply.status_code == 201, reply.text
    assert reply.json()["signed"] is True
    update = await finished(client, reply.json()["id"])
    statuses = [h["status"] for h in update["history"]]
    assert "SignatureVerified" in statuses and update["status"] == "Installed"


async def test_L01_firmware_with_a_bad_signature_ends_in_invalid_signature(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await quick(await make_station("CS001"))
    key, certificate = signer()
    station.firmware.images[LOCATION] = b"what the server really holds"
    forged = base64.b64encode(key.sign(b"another image", ec.ECDSA(hashes.SHA256()))).decode()
    reply = await client("operator").post("/api/firmware-updates", json={
        "station_id": "CS001", "location": LOCATION, "signature": forged,
        "signing_certificate": certificate})
    update = await finished(client, reply.json()["id"])
    assert update["outcome"] == "failed" and update["status"] == "InvalidSignature"
    assert "Installing" not in [h["status"] for h in update["history"]]
    assert station.device_model.value("ChargingStation", "FirmwareVersion") == "1.0.0"


async def test_L01_L02_bad_requests_are_refused_before_anything_is_sent(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    operator = client("operator")
    for body in (
        {"station_id": "CS001", "location": LOCATION, "signature": "c2ln"},  # no certificate
        {"station_id": "CS001", "location": LOCATION, "signature": "not base64!",
         "signing_certificate": signer()[1]},
        {"station_id": "CS001", "location": LOCATION, "signature": "c2ln",
         "signing_certificate": "-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----"},
        {"station_id": "CS001", "location": "x" * 513},
        {"station_id": "CS001", "location": LOCATION, "retries": -1},
        {"station_id": "CS001", "location": LOCATION, "retry_interval_s": 10**12},
    ):
        assert (await operator.post("/api/firmware-updates", json=body)).status_code == 422
    assert "UpdateFirmware" not in station.received_calls
    assert (await operator.post("/api/firmware-updates", json={
        "station_id": "GHOST", "location": LOCATION})).status_code == 404
    assert (await client("viewer").post("/api/firmware-updates", json={
        "station_id": "CS001", "location": LOCATION})).status_code == 403
    await station.disconnect()
    await eventually(lambda: _offline(csms, "CS001"))
    assert (await operator.post("/api/firmware-updates", json={
        "station_id": "CS001", "location": LOCATION})).status_code == 409
    assert (await client("viewer").get("/api/firmware-updates/99")).status_code == 404


async def _offline(csms: Csms, station_id: str) -> bool:
    return not csms.connections.is_connected(station_id)


async def test_L01_a_new_update_cancels_the_one_under_way(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    station.firmware.step_s = 30.0  # the first one is still downloading
    operator = client("operator")
    first = (await operator.post("/api/firmware-updates", json={
        "station_id": "CS001", "location": LOCATION})).json()
    station.firmware.step_s = 0.05
    second = (await operator.post("/api/firmware-updates", json={
        "station_id": "CS001", "location": LOCATION + "-fix"})).json()
    assert second["reply_status"] == "AcceptedCanceled"
    old = (await client("viewer").get(f"/api/firmware-updates/{first['id']}")).json()
    assert old["outcome"] == "cancelled"
    assert (await finished(client, second["id"]))["outcome"] == "installed"


async def test_L_firmware_status_for_an_unknown_request_is_kept_not_applied(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    await station.call("FirmwareStatusNotification", {"status": "Installed", "requestId": 424242})
    await station.call("FirmwareStatusNotification", {"status": "Downloading",
                                                      "requestId": 2**31 - 1})
    with pytest.raises(CallFailed) as beyond:  # beyond the schema's int32: not kept
        await station.call("FirmwareStatusNotification", {"status": "Downloading",
                                                          "requestId": 2**40})
    assert beyond.value.code == "PropertyConstraintViolation"
    kept = await csms.store.notifications.list("CS001", "FirmwareStatusNotification")
    assert len(kept) == 2
    assert await csms.store.firmware.updates("CS001") == []


async def test_L_rollout_caps_concurrent_updates_and_retries_failures(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    stations = [await quick(await make_station(f"CS00{i}")) for i in range(1, 6)]
    stations[2].firmware.download_fails = True  # CS003 fails its first attempt
    for station in stations:
        station.firmware.step_s = 0.3
    most_at_once = 0

    async def watch() -> bool:
        nonlocal most_at_once
        updating = await csms.store.firmware.updates(outcome="in_progress", limit=100)
        most_at_once = max(most_at_once, len(updating))
        return False

    reply = await client("operator").post("/api/firmware-rollouts", json={
        "station_ids": [s.station_id for s in stations], "location": LOCATION,
        "max_concurrent": 2, "max_attempts": 2, "retry_after_s": 0.2,
        "stall_timeout_s": 60})
    assert reply.status_code == 201, reply.text
    rollout_id = reply.json()["id"]
    viewer = client("viewer")

    async def completed() -> dict | None:
        await watch()
        if stations[2].firmware.statuses and \
                stations[2].firmware.statuses[-1][1] == "DownloadFailed":
            stations[2].firmware.download_fails = False  # the retry will succeed
        found = (await viewer.get(f"/api/firmware-rollouts/{rollout_id}")).json()
        return found if found["status"] == "completed" else None

    done = await eventually(completed, timeout=30)
    assert most_at_once <= 2
    assert done["counts"] == {"waiting": 0, "updating": 0, "installed": 5, "retrying": 0,
                              "failed": 0}
    attempts = {s["station_id"]: s["attempts"] for s in done["stations"]}
    assert attempts == {"CS001": 1, "CS002": 1, "CS003": 2, "CS004": 1, "CS005": 1}
    updates = (await viewer.get("/api/firmware-updates",
                                params={"rollout_id": rollout_id})).json()
    assert sorted(u["outcome"] for u in updates if u["station_id"] == "CS003") == [
        "failed", "installed"]


async def test_L_rollout_gives_up_on_a_station_after_its_attempts_and_can_be_cancelled(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    ok = await quick(await make_station("CS001"))
    await make_station("CS002", start=False)  # provisioned, never connects
    operator, viewer = client("operator"), client("viewer")
    reply = await operator.post("/api/firmware-rollouts", json={
        "station_ids": ["CS001", "CS002"], "location": LOCATION, "max_concurrent": 1,
        "max_attempts": 2, "retry_after_s": 0, "stall_timeout_s": 60})
    rollout_id = reply.json()["id"]

    async def completed() -> dict | None:
        found = (await viewer.get(f"/api/firmware-rollouts/{rollout_id}")).json()
        return found if found["status"] == "completed" else None

    done = await eventually(completed, timeout=20)
    assert done["counts"]["installed"] == 1 and done["counts"]["failed"] == 1
    offline = next(s for s in done["stations"] if s["station_id"] == "CS002")
    assert offline["attempts"] == 2 and offline["status"] == "Offline"
    assert ok.firmware.statuses[-1][1] == "Installed"

    assert (await operator.post("/api/firmware-rollouts", json={
        "station_ids": ["CS001", "GHOST"], "location": LOCATION})).status_code == 422
    assert (await operator.post("/api/firmware-rollouts", json={
        "station_ids": ["CS001", "CS001"], "location": LOCATION})).status_code == 422
    ok.firmware.step_s = 30.0
    second = (await operator.post("/api/firmware-rollouts", json={
        "station_ids": ["CS001"], "location": LOCATION, "max_concurrent": 1})).json()
    cancelled = await operator.post(f"/api/firmware-rollouts/{second['id']}/cancel")
    assert cancelled.status_code == 200 and cancelled.json()["status"] == "cancelled"
    again = await operator.post(f"/api/firmware-rollouts/{second['id']}/cancel")
    assert again.status_code == 409
    listed = (await viewer.get("/api/firmware-rollouts")).json()
    assert [r["id"] for r in listed] == [second["id"], rollout_id]


async def test_L02_an_update_sent_through_the_command_route_is_tracked_too(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await quick(await make_station("CS001"))
    reply = await client("operator").post(
        "/api/stations/CS001/commands/update-firmware",
        json={"requestId": 31337, "firmware": {
            "location": LOCATION, "retrieveDateTime": "2020-01-01T00:00:00Z"}})
    assert reply.status_code == 200, reply.text
    listed = (await client("viewer").get("/api/firmware-updates")).json()
    assert [(u["request_id"], u["created_by"]) for u in listed] == [(31337, "command")]
    assert (await finished(client, listed[0]["id"]))["status"] == "Installed"
