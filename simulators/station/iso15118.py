"""Block M on the station: root certificates the CSMS installs (M05), reports of what it
holds (M03) and deletes (M04), and the requests a station makes for an ISO 15118 EV (M01/M02
Get15118EVCertificate, M06 GetCertificateStatus), which a test triggers.

Its reading of the spec: InstallCertificate takes one PEM X.509 certificate (anything else
is Rejected, as is a type it does not keep); GetInstalledCertificateIds reports SHA256 hash
data (issuer name and key hashes as RFC 6960 computes them, for the self-signed roots it is
given) and NotFound when it holds none of the types asked for.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from simulators.station.replies import Reply, rejected

if TYPE_CHECKING:
    from simulators.station.core import Station

TYPES = ("V2GRootCertificate", "MORootCertificate", "CSMSRootCertificate",
         "ManufacturerRootCertificate")


def _sha256(data: bytes) -> str:
    digest = hashes.Hash(hashes.SHA256())
    digest.update(data)
    return digest.finalize().hex()


def hash_data(cert: x509.Certificate) -> dict:
    """CertificateHashDataType of a self-signed root (it is its own issuer)."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)
    else:
        bits = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    return {"hashAlgorithm": "SHA256", "issuerNameHash": _sha256(cert.issuer.public_bytes()),
            "issuerKeyHash": _sha256(bits), "serialNumber": format(cert.serial_number, "x")}


async def install_certificate(station: Station, req: dict) -> Reply:
    kind = req["certificateType"]
    if kind not in TYPES:
        return rejected("UnsupportedType", kind), None
    try:
        x509.load_pem_x509_certificate(req["certificate"].encode())
    except ValueError as exc:
        return rejected("InvalidCertificate", str(exc)), None
    held = station.certificates.setdefault(kind, [])
    if req["certificate"] not in held:
        held.append(req["certificate"])
    return {"status": "Accepted"}, None


async def get_installed_certificate_ids(station: Station, req: dict) -> Reply:
    wanted = req.get("certificateType") or list(TYPES)
    chains = [{"certificateType": kind,
               "certificateHashData": hash_data(x509.load_pem_x509_certificate(pem.encode()))}
              for kind in wanted for pem in station.certificates.get(kind, [])]
    if not chains:
        return {"status": "NotFound"}, None
    return {"status": "Accepted", "certificateHashDataChain": chains}, None


async def delete_certificate(station: Station, req: dict) -> Reply:
    """M04: by hash data; NotFound when none matches."""
    wanted = req["certificateHashData"]
    keys = ("issuerNameHash", "issuerKeyHash", "serialNumber")
    for pems in station.certificates.values():
        for pem in pems:
            held = hash_data(x509.load_pem_x509_certificate(pem.encode()))
            if all(held[k].lower() == str(wanted[k]).lower() for k in keys):
                pems.remove(pem)
                return {"status": "Accepted"}, None
    return {"status": "NotFound"}, None


async def request_ev_certificate(station: Station, exi_request: str, action: str = "Install",
                                 schema_version: str = "urn:iso:15118:2:2013:MsgDef") -> dict:
    """M01 (Install) / M02 (Update): the EV's EXI request, passed to the CSMS."""
    return await station.call("Get15118EVCertificate", {
        "iso15118SchemaVersion": schema_version, "action": action, "exiRequest": exi_request})


async def certificate_status(station: Station, data: dict, responder_url: str) -> dict:
    """M06: the OCSP status of a certificate (its hash data), through the CSMS."""
    return await station.call("GetCertificateStatus", {
        "ocspRequestData": {**data, "responderURL": responder_url}})
