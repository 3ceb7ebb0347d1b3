"""Block A (and the certificate messages M shares): the station's own certificate and the
roots it trusts.

- A02/A03: the station makes a key and a CSR (CN = its identity, O = SecurityCtrlr.
  OrganizationName) and sends SignCertificate, on TriggerMessage
  SignChargingStationCertificate or on its own (`request_certificate`). CertificateSigned is
  accepted only for a chain whose first certificate holds that key, names this station and
  is valid now; else Rejected, with a SecurityEventNotification
  InvalidChargingStationCertificate. An accepted certificate is what the station presents
  on its next TLS connection (Security Profile 3).
- InstallCertificate / GetInstalledCertificateIds / DeleteCertificate on the installed
  roots, identified by their certificateHashData (SHA-256 of the issuer's name and key,
  and the serial number). The station's own certificate cannot be deleted this way.
"""

from __future__ import annotations

import hashlib
import ssl
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from simulators.clock import to_ocpp
from simulators.station.replies import Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station

STATION_CERTIFICATE = "ChargingStationCertificate"


@dataclass
class CertificateStore:
    """What the station keeps: the key waiting for its certificate, its certificate chain in
    use, and the installed roots by type."""

    pending_key: ec.EllipticCurvePrivateKey | None = None
    key: ec.EllipticCurvePrivateKey | None = None
    chain: list[x509.Certificate] = field(default_factory=list)
    installed: list[tuple[str, x509.Certificate]] = field(default_factory=list)


def hash_data(cert: x509.Certificate, issuer: x509.Certificate | None = None) -> dict:
    """certificateHashData (SHA256) of `cert`, whose issuer is `issuer` (itself: a root)."""
    issuer = issuer or cert
    key = issuer.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key_bits = key.public_bytes(serialization.Encoding.X962,
                                    serialization.PublicFormat.UncompressedPoint)
    elif isinstance(key, rsa.RSAPublicKey):
        key_bits = key.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.PKCS1)
    else:
        key_bits = key.public_bytes(serialization.Encoding.DER,
                                    serialization.PublicFormat.SubjectPublicKeyInfo)
    return {
        "hashAlgorithm": "SHA256",
        "issuerNameHash": hashlib.sha256(cert.issuer.public_bytes()).hexdigest(),
        "issuerKeyHash": hashlib.sha256(key_bits).hexdigest(),
        "serialNumber": format(cert.serial_number, "x"),
    }


def _organization(station: Station) -> str:
    try:
        return station.device_model.value("SecurityCtrlr", "OrganizationName")
    except KeyError:
        return station.spec.vendor


async def request_certificate(station: Station) -> dict:
    """A03: a new key and a CSR for it, sent as SignCertificate; the CSMS's answer."""
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([
            x509.NameAttribute(NameOID.COMMON_NAME, station.station_id),
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, _organization(station)),
        ]))
        .sign(key, hashes.SHA256())
    )
    station.certificates.pending_key = key
    pem = csr.public_bytes(serialization.Encoding.PEM).decode()
    return await station.call("SignCertificate",
                              {"csr": pem, "certificateType": STATION_CERTIFICATE})


def _parse_chain(pem: str) -> list[x509.Certificate]:
    try:
        return x509.load_pem_x509_certificates(pem.encode())
    except ValueError:
        return []


async def certificate_signed(station: Station, req: dict) -> Reply:
    store = station.certificates
    if req.get("certificateType", STATION_CERTIFICATE) != STATION_CERTIFICATE:
        return rejected("NotSupported", "this station has no ISO 15118 (V2G) certificate"), None
    chain = _parse_chain(req["certificateChain"])
    problem = None
    if not chain:
        problem = "not a PEM certificate chain"
    elif store.pending_key is None:
        problem = "no certificate signing request is pending"
    else:
        leaf, now = chain[0], station.clock.now()
        names = leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        if leaf.public_key() != store.pending_key.public_key():
            problem = "the certificate is not for the key of the pending request"
        elif not names or names[0].value != station.station_id:
            problem = "the certificate's CN is not this station's identity"
        elif not leaf.not_valid_before_utc <= now <= leaf.not_valid_after_utc:
            problem = "the certificate is not valid now"
    if problem is not None:
        async def report() -> None:
            await station.call("SecurityEventNotification", {
                "type": "InvalidChargingStationCertificate",
                "timestamp": to_ocpp(station.clock.now()), "techInfo": problem[:255]})
        return rejected("InvalidCertificate", problem), report
    store.key, store.chain, store.pending_key = store.pending_key, chain, None
    _present_on_next_connection(station)
    return {"status": "Accepted"}, None


def _present_on_next_connection(station: Station) -> None:
    """Load the new key and chain into the station's TLS context (Security Profile 3)."""
    context = station.ssl
    store = station.certificates
    if not isinstance(context, ssl.SSLContext) or store.key is None:
        return
    with tempfile.TemporaryDirectory() as folder:
        cert, key = Path(folder) / "cert.pem", Path(folder) / "key.pem"
        cert.write_bytes(b"".join(c.public_bytes(serialization.Encoding.PEM)
                                  for c in store.chain))
        key.write_bytes(store.key.private_bytes(serialization.Encoding.PEM,
                                                serialization.PrivateFormat.PKCS8,
                                                serialization.NoEncryption()))
        context.load_cert_chain(str(cert), str(key))


async def install_certificate(station: Station, req: dict) -> Reply:
    chain = _parse_chain(req["certificate"])
    if len(chain) != 1:
        return rejected("InvalidCertificate", "expected one PEM certificate"), None
    cert = chain[0]
    try:
        ca = cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    except x509.ExtensionNotFound:
        ca = False
    if not ca:
        return rejected("InvalidCertificate", "a root certificate must be a CA"), None
    installed = station.certificates.installed
    known = hash_data(cert)
    installed[:] = [(t, c) for t, c in installed if hash_data(c) != known]
    installed.append((req["certificateType"], cert))
    return {"status": "Accepted"}, None


async def get_installed_certificate_ids(station: Station, req: dict) -> Reply:
    wanted = set(req.get("certificateType") or ())
    found = [
        {"certificateType": kind, "certificateHashData": hash_data(cert)}
        for kind, cert in station.certificates.installed if not wanted or kind in wanted
    ]
    if not found:
        return {"status": "NotFound"}, None
    return {"status": "Accepted", "certificateHashDataChain": found}, None


def _same(a: dict, b: dict) -> bool:
    keys = ("hashAlgorithm", "issuerNameHash", "issuerKeyHash")
    return all(a[k].lower() == b[k].lower() for k in keys) and (
        a["serialNumber"].lower().lstrip("0") == b["serialNumber"].lower().lstrip("0"))


async def delete_certificate(station: Station, req: dict) -> Reply:
    target = req["certificateHashData"]
    store = station.certificates
    if store.chain and _same(hash_data(store.chain[0], store.chain[1] if len(store.chain) > 1
                                       else None), target):
        return {"status": "Failed"}, None  # its own certificate: never deleted remotely
    kept = [(t, c) for t, c in store.installed if not _same(hash_data(c), target)]
    if len(kept) == len(store.installed):
        return {"status": "NotFound"}, None
    store.installed[:] = kept
    return {"status": "Accepted"}, None
