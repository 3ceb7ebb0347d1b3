"""The station's side of block A against a scripted CSMS: its CSR, what it accepts as its
certificate, the roots it installs, and its Basic auth password (A01)."""

from __future__ import annotations

from datetime import timedelta

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.simulators.conftest import START
from tests.simulators.peer import ScriptedCsms


class LocalCa:
    """A small CA of the test's own (no CSMS code): a root and certificates it signs."""

    def __init__(self) -> None:
        self.key = ec.generate_private_key(ec.SECP256R1())
        name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "test root")])
        self.root = self._build(name, name, self.key.public_key(), ca=True)

    def _build(self, subject: x509.Name, issuer: x509.Name, key: ec.EllipticCurvePublicKey,
               ca: bool) -> x509.Certificate:
        return (x509.CertificateBuilder().subject_name(subject).issuer_name(issuer)
                .public_key(key).serial_number(x509.random_serial_number())
                .not_valid_before(START - timedelta(days=1))
                .not_valid_after(START + timedelta(days=3650))
                .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
                .sign(self.key, hashes.SHA256()))

    def sign(self, csr: x509.CertificateSigningRequest) -> x509.Certificate:
        return self._build(csr.subject, self.root.subject, csr.public_key(), ca=False)  # type: ignore[arg-type]

    def leaf(self, common_name: str) -> x509.Certificate:
        key = ec.generate_private_key(ec.SECP256R1()).public_key()
        return self._build(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)]),
                           self.root.subject, key, ca=False)


def pem(*certs: x509.Certificate) -> str:
    return "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in certs)


async def test_A02_triggered_csr_names_the_station_and_its_signed_certificate_is_taken(
    peer: ScriptedCsms, stations
) -> None:
    peer.answers["SignCertificate"] = {"status": "Accepted"}
    station = stations(peer.url, vendor="Acme")
    await station.start()
    reply = await peer.result("TriggerMessage",
                              {"requestedMessage": "SignChargingStationCertificate"})
    assert reply["status"] == "Accepted"
    request = (await peer.wait_for("SignCertificate"))[0]
    csr = x509.load_pem_x509_csr(request["csr"].encode())
    assert csr.is_signature_valid
    assert csr.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "CS001"
    assert csr.subject.get_attributes_for_oid(NameOID.ORGANIZATION_NAME)[0].value == "Acme"
    assert request["certificateType"] == "ChargingStationCertificate"

    ca = LocalCa()
    certificate = ca.sign(csr)
    signed = await peer.result("CertificateSigned", {"certificateChain": pem(certificate,
                                                                              ca.root)})
    assert signed["status"] == "Accepted"
    assert station.certificates.chain == [certificate, ca.root]


async def test_A02_certificate_for_another_key_is_rejected_and_reported(
    peer: ScriptedCsms, stations
) -> None:
    peer.answers["SignCertificate"] = {"status": "Accepted"}
    peer.answers["SecurityEventNotification"] = lambda p: {}
    station = stations(peer.url)
    await station.start()
    await peer.result("TriggerMessage", {"requestedMessage": "SignChargingStationCertificate"})
    await peer.wait_for("SignCertificate")
    ca = LocalCa()
    reply = await peer.result("CertificateSigned",
                              {"certificateChain": pem(ca.leaf("CS001"), ca.root)})
    assert reply["status"] == "Rejected"
    event = (await peer.wait_for("SecurityEventNotification"))[0]
    assert event["type"] == "InvalidChargingStationCertificate"
    assert station.certificates.chain == []
    garbage = await peer.result("CertificateSigned", {"certificateChain": "not a PEM"})
    assert garbage["status"] == "Rejected"


async def test_M05_roots_installed_listed_and_deleted(peer: ScriptedCsms, stations) -> None:
    station = stations(peer.url)
    await station.start()
    ca = LocalCa()
    not_a_root = await peer.result("InstallCertificate", {
        "certificateType": "CSMSRootCertificate", "certificate": pem(ca.leaf("x"))})
    assert not_a_root["status"] == "Rejected"
    installed = await peer.result("InstallCertificate", {
        "certificateType": "CSMSRootCertificate", "certificate": pem(ca.root)})
    assert installed["status"] == "Accepted"

    listed = await peer.result("GetInstalledCertificateIds",
                               {"certificateType": ["CSMSRootCertificate"]})
    assert listed["status"] == "Accepted"
    (entry,) = listed["certificateHashDataChain"]
    assert entry["certificateHashData"]["serialNumber"] == format(ca.root.serial_number, "x")
    other = await peer.result("GetInstalledCertificateIds",
                              {"certificateType": ["V2GRootCertificate"]})
    assert other["status"] == "NotFound"

    hash_data = entry["certificateHashData"]
    assert (await peer.result("DeleteCertificate",
                              {"certificateHashData": hash_data}))["status"] == "Accepted"
    assert (await peer.result("DeleteCertificate",
                              {"certificateHashData": hash_data}))["status"] == "NotFound"
    assert station.certificates.installed == []


async def test_A01_new_basic_auth_password_is_used_from_the_next_connection(
    stations,
) -> None:
    peer = ScriptedCsms(password="first-password-0001")
    await peer.start()
    try:
        station = stations(peer.url, password="first-password-0001")
        await station.start()

        def set_password(value: str) -> dict:
            return {"setVariableData": [{
                "component": {"name": "SecurityCtrlr"},
                "variable": {"name": "BasicAuthPassword"}, "attributeValue": value}]}

        short = await peer.result("SetVariables", set_password("too-short"))
        assert short["setVariableResult"][0]["attributeStatus"] == "Rejected"
        taken = await peer.result("SetVariables", set_password("second-password-002"))
        assert taken["setVariableResult"][0]["attributeStatus"] == "Accepted"
        peer.password = "second-password-002"
        await station.disconnect()
        await station.reconnect()
        assert station.connected and peer.connections == 2
    finally:
        await peer.stop()
