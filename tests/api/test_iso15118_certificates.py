"""Block M: the CSMS between a station and a contract CA / OCSP responder, all real: HTTP
servers on local sockets, CAs made with `cryptography`, a simulated station."""

from __future__ import annotations

import base64
import json
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp
from cryptography.x509.oid import NameOID

from csms.app import Csms
from csms.config import Config, Iso15118Config
from csms.iso15118 import Iso15118
from simulators.station import Station
from simulators.station import iso15118 as station_iso15118
from tests.e2e.conftest import StationFactory

NOW = datetime.now(UTC)


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_ca(cn: str, parent: x509.Certificate | None = None,
            parent_key: ec.EllipticCurvePrivateKey | None = None,
            ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
    """A root CA, or a sub-CA of `parent`."""
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder().subject_name(_name(cn))
            .issuer_name(parent.subject if parent else _name(cn))
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=365))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .sign(parent_key or key, hashes.SHA256()))
    return cert, key


def issue(ca: x509.Certificate, ca_key: ec.EllipticCurvePrivateKey, cn: str,
          serial: int) -> x509.Certificate:
    key = ec.generate_private_key(ec.SECP256R1())
    return (x509.CertificateBuilder().subject_name(_name(cn)).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(serial)
            .not_valid_before(NOW - timedelta(days=1)).not_valid_after(NOW + timedelta(days=30))
            .sign(ca_key, hashes.SHA256()))


def hash_data(cert: x509.Certificate, issuer: x509.Certificate) -> dict:
    """What a station puts in ocspRequestData, computed the way OCSP requests do."""
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA256()).build()
    return {"hashAlgorithm": "SHA256", "issuerNameHash": request.issuer_name_hash.hex(),
            "issuerKeyHash": request.issuer_key_hash.hex(),
            "serialNumber": format(cert.serial_number, "x")}


def pem(path: Path, data: bytes) -> str:
    path.write_bytes(data)
    return str(path)


class Servers:
    """A contract service and an OCSP responder (for another CA) on local sockets."""

    def __init__(self, remote_ca: x509.Certificate, remote_key: ec.EllipticCurvePrivateKey
                 ) -> None:
        self.contract_requests: list[dict] = []
        self.ocsp_requests: list[bytes] = []
        self.contract_status = 200
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                if self.path == "/contract":
                    request = json.loads(body)
                    outer.contract_requests.append(request)
                    exi = base64.b64encode(b"signed:" + base64.b64decode(request["exiRequest"]))
                    self._send(outer.contract_status, "application/json",
                               json.dumps({"exiResponse": exi.decode()}).encode())
                elif self.path == "/ocsp":
                    outer.ocsp_requests.append(body)
                    req = ocsp.load_der_ocsp_request(body)
                    response = ocsp.OCSPResponseBuilder().add_response_by_hash(
                        req.issuer_name_hash, req.issuer_key_hash, req.serial_number,
                        hashes.SHA256(), ocsp.OCSPCertStatus.GOOD, NOW, None, None, None,
                    ).responder_id(ocsp.OCSPResponderEncoding.HASH, remote_ca).sign(
                        remote_key, hashes.SHA256())
                    self._send(200, "application/ocsp-response",
                               response.public_bytes(serialization.Encoding.DER))
                else:
                    self._send(404, "text/plain", b"no")

            def _send(self, code: int, kind: str, data: bytes) -> None:
                self.send_response(code)
                self.send_header("Content-Type", kind)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture(scope="module")
def pki() -> dict:
    v2g_root, v2g_key = make_ca("V2G Root")
    local_ca, local_key = make_ca("Local Contract Sub-CA", v2g_root, v2g_key)
    remote_ca, remote_key = make_ca("Remote MO CA")
    good = issue(local_ca, local_key, "EMAID-GOOD", 0x1001)
    revoked = issue(local_ca, local_key, "EMAID-REVOKED", 0x1002)
    crl = (x509.CertificateRevocationListBuilder().issuer_name(local_ca.subject)
           .last_update(NOW - timedelta(hours=1)).next_update(NOW + timedelta(days=1))
           .add_revoked_certificate(x509.RevokedCertificateBuilder().serial_number(0x1002)
                                    .revocation_date(NOW - timedelta(hours=1)).build())
           .sign(local_key, hashes.SHA256()))
    return {"local_ca": local_ca, "local_key": local_key, "remote_ca": remote_ca,
            "remote_key": remote_key, "v2g_root": v2g_root, "good": good,
            "revoked": revoked, "remote_leaf": issue(remote_ca, remote_key, "EMAID-R", 77),
            "crl": crl}


@pytest.fixture
def servers(pki: dict) -> Iterator[Servers]:
    running = Servers(pki["remote_ca"], pki["remote_key"])
    yield running
    running.close()


@pytest.fixture
def config(config: Config, pki: dict, servers: Servers, tmp_path: Path) -> Config:
    enc = serialization.Encoding.PEM
    key = pki["local_key"].private_bytes(enc, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption())
    return replace(config, iso15118=Iso15118Config(
        contract_service_url=servers.url + "/contract",
        ocsp_responders=(servers.url + "/ocsp",),
        ocsp_ca_cert=pem(tmp_path / "ca.pem", pki["local_ca"].public_bytes(enc)),
        ocsp_ca_key=pem(tmp_path / "ca.key", key),
        ocsp_crl=pem(tmp_path / "ca.crl", pki["crl"].public_bytes(enc)),
        v2g_root_certificate=pem(tmp_path / "v2g.pem", pki["v2g_root"].public_bytes(enc)),
        timeout_s=5.0,
    ))


async def test_M01_M02_ev_certificate_is_forwarded_to_the_contract_service(
    csms: Csms, make_station: StationFactory, servers: Servers
) -> None:
    station = await make_station("CS001")
    exi = base64.b64encode(b"CertificateInstallationReq").decode()
    reply = await station_iso15118.request_ev_certificate(station, exi, "Install")
    assert reply["status"] == "Accepted"
    assert base64.b64decode(reply["exiResponse"]) == b"signed:CertificateInstallationReq"
    reply = await station_iso15118.request_ev_certificate(station, exi, "Update")
    assert reply["status"] == "Accepted"
    assert [(r["stationId"], r["action"]) for r in servers.contract_requests] == [
        ("CS001", "Install"), ("CS001", "Update")]
    servers.contract_status = 503  # the contract CA is down: Failed, with the reason
    reply = await station_iso15118.request_ev_certificate(station, exi, "Install")
    assert reply["status"] == "Failed" and reply["exiResponse"] == ""
    assert reply["statusInfo"]["reasonCode"] == "ServiceRefused"
    kept = await csms.store.notifications.list("CS001", "Get15118EVCertificate")
    assert [n.payload["status"] for n in kept] == ["Failed", "Accepted", "Accepted"]


async def test_M01_without_a_contract_service_the_answer_is_failed() -> None:
    reply = await Iso15118(Iso15118Config()).ev_certificate(
        "CS001", {"iso15118SchemaVersion": "x", "action": "Install", "exiRequest": "AA=="})
    assert reply["status"] == "Failed"
    assert reply["statusInfo"]["reasonCode"] == "NoContractService"


async def test_M06_certificate_status_from_the_local_ca_revocation_list(
    csms: Csms, make_station: StationFactory, pki: dict, servers: Servers
) -> None:
    station = await make_station("CS001")
    for cert, expected in ((pki["good"], ocsp.OCSPCertStatus.GOOD),
                           (pki["revoked"], ocsp.OCSPCertStatus.REVOKED)):
        reply = await station_iso15118.certificate_status(
            station, hash_data(cert, pki["local_ca"]), "http://ocsp.example.invalid/")
        assert reply["status"] == "Accepted", reply
        response = ocsp.load_der_ocsp_response(base64.b64decode(reply["ocspResult"]))
        assert response.certificate_status == expected
        assert response.serial_number == cert.serial_number
        pki["local_ca"].public_key().verify(  # signed by the CA itself
            response.signature, response.tbs_response_bytes,
            ec.ECDSA(response.signature_hash_algorithm))
    assert servers.ocsp_requests == []  # answered locally


async def test_M06_certificate_status_from_a_configured_responder_only(
    csms: Csms, make_station: StationFactory, pki: dict, servers: Servers
) -> None:
    station = await make_station("CS001")
    data = hash_data(pki["remote_leaf"], pki["remote_ca"])
    reply = await station_iso15118.certificate_status(station, data, servers.url + "/ocsp")
    assert reply["status"] == "Accepted", reply
    response = ocsp.load_der_ocsp_response(base64.b64decode(reply["ocspResult"]))
    assert response.certificate_status == ocsp.OCSPCertStatus.GOOD
    assert response.serial_number == 77
    assert len(servers.ocsp_requests) == 1
    # a responder the operator did not configure is never fetched (no SSRF by station)
    reply = await station_iso15118.certificate_status(station, data, servers.url + "/other")
    assert reply["status"] == "Failed"
    assert reply["statusInfo"]["reasonCode"] == "UnknownResponder"
    reply = await station_iso15118.certificate_status(
        station, {**data, "serialNumber": "not-hex"}, servers.url + "/ocsp")
    assert reply["status"] == "Failed"
    reply = await station_iso15118.certificate_status(  # a hash too short for SHA256
        station, {**data, "issuerNameHash": "abcd"}, servers.url + "/ocsp")
    assert reply["status"] == "Failed" and reply["statusInfo"]["reasonCode"] == "InvalidRequest"
    assert len(servers.ocsp_requests) == 1


async def test_M05_M03_v2g_root_is_installed_and_installed_ids_are_kept(
    csms: Csms, make_station: StationFactory, admin: httpx.AsyncClient, pki: dict
) -> None:
    station = await make_station("CS001")
    base = "/api/stations/CS001"
    assert (await admin.get(f"{base}/installed-certificates")).json() == []
    r = await admin.post(f"{base}/root-certificates",
                         json={"certificate_type": "V2GRootCertificate"})
    assert r.status_code == 200, r.text
    assert [c for t, c in station.certificates.installed if t == "V2GRootCertificate"]
    installed = r.json()["installed"]
    root = pki["v2g_root"]
    assert [(c["certificate_type"], c["serial_number"]) for c in installed] == [
        ("V2GRootCertificate", format(root.serial_number, "x"))]
    assert installed[0]["issuer_key_hash"] == hash_data(root, root)["issuerKeyHash"]
    assert (await admin.get(f"{base}/installed-certificates")).json() == installed
    r = await admin.post(f"{base}/root-certificates",
                         json={"certificate_type": "MORootCertificate"})
    assert r.status_code == 409  # none configured
    # M04 through the plain command route: the kept ids follow
    data = {k: installed[0][v] for k, v in (
        ("hashAlgorithm", "hash_algorithm"), ("issuerNameHash", "issuer_name_hash"),
        ("issuerKeyHash", "issuer_key_hash"), ("serialNumber", "serial_number"))}
    r = await admin.post(f"{base}/commands/delete-certificate",
                         json={"certificateHashData": data})
    assert r.json()["reply"]["status"] == "Accepted", r.text
    assert station.certificates.installed == []
    assert (await admin.get(f"{base}/installed-certificates")).json() == []
    station.certificates.installed.append(("V2GRootCertificate", pki["v2g_root"]))
    r = await admin.post(f"{base}/installed-certificates/refresh")  # installed by hand
    assert r.status_code == 200 and len(r.json()) == 1


def _pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


async def _authorize(station: Station, emaid: str, **contract: object) -> dict:
    return await station.call("Authorize", {"idToken": {"idToken": emaid, "type": "eMAID"},
                                            **contract})


async def test_C07_contract_hash_data_is_checked_before_the_token_is_accepted(
    csms: Csms, make_station: StationFactory, pki: dict, servers: Servers
) -> None:
    station = await make_station("CS001")
    for emaid in ("EMAID-GOOD", "EMAID-REVOKED", "EMAID-R"):
        await csms.store.tokens.add(emaid, "eMAID", csms.clock.now())
    good = await _authorize(station, "EMAID-GOOD", iso15118CertificateHashData=[
        hash_data(pki["good"], pki["local_ca"]) | {"responderURL": "http://x.invalid/"}])
    assert good["certificateStatus"] == "Accepted"
    assert good["idTokenInfo"]["status"] == "Accepted"
    revoked = await _authorize(station, "EMAID-REVOKED", iso15118CertificateHashData=[
        hash_data(pki["revoked"], pki["local_ca"]) | {"responderURL": "http://x.invalid/"}])
    assert revoked["certificateStatus"] == "CertificateRevoked"  # C07.FR.16
    assert revoked["idTokenInfo"]["status"] == "Invalid"
    # another CA's certificate: its configured responder says good
    remote = hash_data(pki["remote_leaf"], pki["remote_ca"])
    answer = await _authorize(station, "EMAID-R", iso15118CertificateHashData=[
        remote | {"responderURL": servers.url + "/ocsp"}])
    assert answer["certificateStatus"] == "Accepted" and len(servers.ocsp_requests) == 1
    # a responder the operator did not configure is never asked: fails closed
    answer = await _authorize(station, "EMAID-R", iso15118CertificateHashData=[
        remote | {"responderURL": "http://169.254.169.254/ocsp"}])
    assert answer["certificateStatus"] == "CertChainError"
    assert answer["idTokenInfo"]["status"] == "Invalid"
    assert len(servers.ocsp_requests) == 1
    # a good certificate does not make an unknown eMAID known
    stranger = await _authorize(station, "EMAID-NOBODY", iso15118CertificateHashData=[
        hash_data(pki["good"], pki["local_ca"]) | {"responderURL": "http://x.invalid/"}])
    assert stranger["certificateStatus"] == "Accepted"
    assert stranger["idTokenInfo"]["status"] == "Unknown"


async def test_C07_central_validation_of_a_contract_chain(
    csms: Csms, make_station: StationFactory, pki: dict, servers: Servers
) -> None:
    station = await make_station("CS001")
    await csms.store.tokens.add("EMAID-GOOD", "eMAID", csms.clock.now())
    local_ca, local_key = pki["local_ca"], pki["local_key"]

    async def status(chain: str) -> tuple[str, str]:
        answer = await _authorize(station, "EMAID-GOOD", certificate=chain)
        return answer["certificateStatus"], answer["idTokenInfo"]["status"]

    # the sub-CA chains to the configured V2G root (C07.FR.05); without it, no chain
    assert await status(_pem(pki["good"], local_ca)) == ("Accepted", "Accepted")
    assert await status(_pem(pki["good"], local_ca, pki["v2g_root"])) == (
        "Accepted", "Accepted")
    assert await status(_pem(pki["good"])) == ("CertChainError", "Invalid")
    assert await status(_pem(pki["revoked"], local_ca)) == ("CertificateRevoked", "Invalid")
    expired = (x509.CertificateBuilder().subject_name(_name("EMAID-GOOD"))
               .issuer_name(local_ca.subject).public_key(pki["good"].public_key())
               .serial_number(0x2001).not_valid_before(NOW - timedelta(days=60))
               .not_valid_after(NOW - timedelta(days=1)).sign(local_key, hashes.SHA256()))
    assert await status(_pem(expired, local_ca)) == ("CertificateExpired", "Invalid")
    assert await status(_pem(pki["remote_leaf"])) == ("CertChainError", "Invalid")
    _, impostor_key = make_ca("Local Contract Sub-CA")  # same name, another key
    forged = issue(local_ca, impostor_key, "EMAID-GOOD", 0x2002)
    assert await status(_pem(forged, local_ca)) == ("SignatureError", "Invalid")
    assert await status("-----BEGIN CERTIFICATE-----\nnot one\n") == (
        "CertChainError", "Invalid")


async def test_C04_pin_code_authorization(csms: Csms, make_station: StationFactory) -> None:
    station = await make_station("CS001")
    await csms.store.tokens.add("4711", "KeyCode", csms.clock.now())
    pin = {"idToken": {"idToken": "4711", "type": "KeyCode"}}
    assert (await station.call("Authorize", pin))["idTokenInfo"]["status"] == "Accepted"
    wrong = {"idToken": {"idToken": "0000", "type": "KeyCode"}}
    assert (await station.call("Authorize", wrong))["idTokenInfo"]["status"] == "Invalid"
