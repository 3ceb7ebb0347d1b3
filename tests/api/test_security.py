"""Block A over HTTP, against a simulated station on a real socket: password rotation (A01),
the security profile rule (A05), the CSMS root installed on a station, certificates and
security events (A04) listed."""

from __future__ import annotations

import pytest

from csms.app import Csms
from simulators.station import ConnectionRefused
from simulators.station.security import request_certificate
from tests.api.conftest import Client
from tests.e2e.conftest import PASSWORD, StationFactory
from tests.support import eventually


async def test_A01_rotated_password_is_the_only_one_accepted_after_reconnect(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    reply = await client("admin").post("/api/stations/CS001/password")
    assert reply.status_code == 200, reply.text
    body = reply.json()
    assert body["status"] == "Accepted"
    new_password = body["password"]
    assert new_password and new_password != PASSWORD and 16 <= len(new_password) <= 40

    await station.disconnect()
    await station.reconnect()  # the station uses the password it was sent
    assert station.connected
    old = await make_station("CS001", start=False, provision=False, password=PASSWORD)
    with pytest.raises(ConnectionRefused) as refused:
        await old.start()
    assert refused.value.status_code == 401


async def test_A01_password_the_station_rejects_leaves_the_old_one(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    variable = station.device_model.find("SecurityCtrlr", "BasicAuthPassword")
    assert variable is not None
    variable.mutability = "ReadOnly"  # this station does not let its password be changed
    reply = await client("admin").post("/api/stations/CS001/password")
    assert reply.status_code == 200, reply.text
    assert reply.json() == {"station_id": "CS001", "status": "Rejected", "password": None}
    await station.disconnect()
    await station.reconnect()  # the old password still opens
    assert station.connected


async def test_A01_password_rotation_is_admin_only_and_needs_a_connected_station(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    await make_station("CS001", start=False)
    assert (await client("operator").post("/api/stations/CS001/password")).status_code == 403
    assert (await client("admin").post("/api/stations/CS001/password")).status_code == 409
    assert (await client("admin").post("/api/stations/NOPE/password")).status_code == 404


async def test_A05_profile_marked_through_the_api_refuses_lower_connections(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    admin = client("admin")
    assert (await admin.get("/api/stations/CS001")).json()["security_profile"] == 1
    reply = await admin.put("/api/stations/CS001/security-profile", json={"profile": 2})
    assert reply.status_code == 200
    assert reply.json() == {"station_id": "CS001", "security_profile": 2}
    await station.disconnect()
    with pytest.raises(ConnectionRefused) as refused:
        await station.reconnect()  # Basic auth without TLS is profile 1
    assert refused.value.status_code == 401
    for bad in ({"profile": 4}, {"profile": -1}, {"profile": "3"}, {}):
        assert (await admin.put("/api/stations/CS001/security-profile",
                                json=bad)).status_code == 422
    assert (await client("operator").put("/api/stations/CS001/security-profile",
                                         json={"profile": 1})).status_code == 403
    assert (await admin.put("/api/stations/NOPE/security-profile",
                            json={"profile": 1})).status_code == 404


async def test_M05_csms_root_installed_listed_and_deleted_on_the_station(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    admin = client("admin")
    reply = await admin.post("/api/stations/CS001/certificates/csms-root")
    assert reply.status_code == 200, reply.text
    assert reply.json()["status"] == "Accepted"
    assert csms.ca is not None
    assert [(kind, cert) for kind, cert in station.certificates.installed] == [
        ("CSMSRootCertificate", csms.ca.certificate)]

    ids = await admin.post("/api/stations/CS001/commands/get-installed-certificate-ids",
                           json={"certificateType": ["CSMSRootCertificate"]})
    assert ids.status_code == 200, ids.text
    chain = ids.json()["reply"]["certificateHashDataChain"]
    assert [c["certificateType"] for c in chain] == ["CSMSRootCertificate"]
    assert chain[0]["certificateHashData"]["serialNumber"] == format(
        csms.ca.certificate.serial_number, "x")
    deleted = await admin.post("/api/stations/CS001/commands/delete-certificate",
                               json={"certificateHashData": chain[0]["certificateHashData"]})
    assert deleted.json()["reply"]["status"] == "Accepted"
    again = await admin.post("/api/stations/CS001/commands/delete-certificate",
                             json={"certificateHashData": chain[0]["certificateHashData"]})
    assert again.json()["reply"]["status"] == "NotFound"


async def test_A03_issued_certificates_and_A04_security_events_are_listed(
    csms: Csms, client: Client, make_station: StationFactory
) -> None:
    station = await make_station("CS001")
    await request_certificate(station)
    viewer = client("viewer")

    async def accepted() -> list:
        listed = (await viewer.get("/api/certificates", params={"station_id": "CS001"})).json()
        return [c for c in listed if c["status"] == "Accepted"]

    (certificate,) = await eventually(accepted)
    assert "CN=CS001" in certificate["subject"].split(",")
    assert certificate["source"] == "csr"

    await station.call("SecurityEventNotification", {
        "type": "FirmwareUpdated", "timestamp": "2026-12-01T10:00:00Z"})
    await station.call("SecurityEventNotification", {
        "type": "InvalidTLSVersion", "timestamp": "2026-12-01T10:01:00Z"})
    alerts = (await viewer.get("/api/security-events", params={"critical": "true"})).json()
    assert [(a["station_id"], a["type"]) for a in alerts] == [("CS001", "FirmwareUpdated")]
    every = (await viewer.get("/api/security-events",
                              params={"station_id": "CS001", "limit": 1})).json()
    assert [a["type"] for a in every] == ["InvalidTLSVersion"]
    for bad in ({"limit": 0}, {"limit": 1001}, {"since": "not a time"},
                {"since": "2026-12-01T10:00:00"}):  # no offset: ambiguous
        assert (await viewer.get("/api/security-events", params=bad)).status_code == 422
    assert (await client("grid").get("/api/security-events")).status_code == 403
