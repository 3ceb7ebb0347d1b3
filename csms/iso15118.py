"""Block M, ISO 15118 Plug & Charge: what stands behind the station's certificate requests.

A CSMS cannot sign a contract certificate itself: a contract CA (the mobility operator,
or a contract-certificate pool) does, and wraps it in the EXI response the EV reads. So
Get15118EVCertificate (M01 install, M02 update) is forwarded to a configured contract
service over HTTP, and answered Failed when none is configured or it does not answer.

GetCertificateStatus (M06) needs an OCSP response for the station, which cannot reach the
internet itself. The CSMS answers it from the revocation list of a CA it is configured
with (signing the OCSP response with that CA's key, RFC 6960), or fetches it from the
responder the station names, but only one on the configured list: a station must not
make the CSMS fetch arbitrary URLs.

The contract service interface: POST `contract_service_url` with JSON
`{"stationId", "iso15118SchemaVersion", "action", "exiRequest"}`; a 200 answer with JSON
`{"exiResponse": "<base64 EXI>"}` is passed to the station as Accepted.
Why this shape: docs/decisions/0014-iso15118-certificates.md.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import structlog
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509 import ocsp
from cryptography.x509.oid import AuthorityInformationAccessOID

from csms.config import Iso15118Config

log = structlog.get_logger()

EXI_MAX = 5600  # Get15118EVCertificateResponse.exiResponse maxLength
OCSP_MAX = 5500  # GetCertificateStatusResponse.ocspResult maxLength
HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SHA256": hashes.SHA256, "SHA384": hashes.SHA384, "SHA512": hashes.SHA512,
}
OCSP_VALIDITY = timedelta(days=1)  # nextUpdate of the responses the CSMS signs
MAX_CHAIN = 5  # certificates read from an Authorize's chain (leaf, sub-CAs); 5,500 chars


def failed(reason: str, info: str) -> dict[str, Any]:
    return {"status": "Failed", "statusInfo": {"reasonCode": reason[:20],
                                               "additionalInfo": info[:512]}}


def _is_base64(text: str) -> bool:
    try:
        base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return False
    return True


def key_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """RFC 6960 issuerKeyHash: the hash of the issuer's public key bits (the BIT STRING of
    its SubjectPublicKeyInfo, without tag and length)."""
    key = cert.public_key()
    if isinstance(key, rsa.RSAPublicKey):
        bits = key.public_bytes(serialization.Encoding.DER, serialization.PublicFormat.PKCS1)
    elif isinstance(key, ec.EllipticCurvePublicKey):
        bits = key.public_bytes(serialization.Encoding.X962,
                                serialization.PublicFormat.UncompressedPoint)
    else:
        bits = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    digest = hashes.Hash(algorithm)
    digest.update(bits)
    return digest.finalize()


def _ocsp_url(cert: x509.Certificate) -> str:
    """The OCSP responder a certificate names in its Authority Information Access."""
    try:
        access = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess)
    except x509.ExtensionNotFound:
        return ""
    for description in access.value:
        if description.access_method == AuthorityInformationAccessOID.OCSP:
            return str(description.access_location.value)[:512]
    return ""


def name_hash(cert: x509.Certificate, algorithm: hashes.HashAlgorithm) -> bytes:
    """RFC 6960 issuerNameHash: the hash of the issuer's DER-encoded subject name."""
    digest = hashes.Hash(algorithm)
    digest.update(cert.subject.public_bytes())
    return digest.finalize()


@dataclass(frozen=True)
class LocalCa:
    """A CA the CSMS answers OCSP for itself, from its revocation list."""

    cert: x509.Certificate
    key: Any  # the CA's private key (RSA or EC)
    crl: x509.CertificateRevocationList | None

    @classmethod
    def load(cls, cert: str, key: str, crl: str) -> LocalCa:
        return cls(
            x509.load_pem_x509_certificate(Path(cert).read_bytes()),
            serialization.load_pem_private_key(Path(key).read_bytes(), password=None),
            x509.load_pem_x509_crl(Path(crl).read_bytes()) if crl else None,
        )

    def issued(self, data: dict[str, Any]) -> bool:
        """Do the request's issuer hashes name this CA?"""
        algorithm = HASHES[data["hashAlgorithm"]]()
        return (name_hash(self.cert, algorithm).hex() == data["issuerNameHash"].lower()
                and key_hash(self.cert, algorithm).hex() == data["issuerKeyHash"].lower())

    def revoked(self, serial: int) -> bool:
        return self.crl is not None and \
            self.crl.get_revoked_certificate_by_serial_number(serial) is not None

    def respond(self, data: dict[str, Any], serial: int, now: datetime) -> bytes:
        """A signed OCSP response (DER): revoked if the CRL lists the serial, else good."""
        revoked = self.crl.get_revoked_certificate_by_serial_number(serial) \
            if self.crl is not None else None
        status = ocsp.OCSPCertStatus.REVOKED if revoked else ocsp.OCSPCertStatus.GOOD
        builder = ocsp.OCSPResponseBuilder().add_response_by_hash(
            issuer_name_hash=bytes.fromhex(data["issuerNameHash"]),
            issuer_key_hash=bytes.fromhex(data["issuerKeyHash"]),
            serial_number=serial,
            algorithm=HASHES[data["hashAlgorithm"]](),
            cert_status=status,
            this_update=now,
            next_update=now + OCSP_VALIDITY,
            revocation_time=revoked.revocation_date_utc if revoked else None,
            revocation_reason=None,
        ).responder_id(ocsp.OCSPResponderEncoding.HASH, self.cert)
        response = builder.sign(self.key, hashes.SHA256())
        return response.public_bytes(serialization.Encoding.DER)


class Iso15118:
    """The contract service and the OCSP sources, as configured."""

    def __init__(self, config: Iso15118Config) -> None:
        self.config = config
        self.local_ca = LocalCa.load(config.ocsp_ca_cert, config.ocsp_ca_key, config.ocsp_crl) \
            if config.ocsp_ca_cert else None
        # read at start, so a missing or bad file stops the start rather than a request
        self.roots: dict[str, str] = {}
        for kind, path in (("V2GRootCertificate", config.v2g_root_certificate),
                           ("MORootCertificate", config.mo_root_certificate)):
            if path:
                pem = Path(path).read_text()
                x509.load_pem_x509_certificate(pem.encode())
                self.roots[kind] = pem

    async def ev_certificate(self, station_id: str, req: dict[str, Any]) -> dict[str, Any]:
        """M01/M02: the contract service's EXI response for the EV's request, or Failed."""
        url = self.config.contract_service_url
        if not url:
            return failed("NoContractService", "no contract certificate service configured")
        body = {"stationId": station_id, "iso15118SchemaVersion": req["iso15118SchemaVersion"],
                "action": req["action"], "exiRequest": req["exiRequest"]}
        try:
            async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:
                answer = await client.post(url, json=body)
            exi = answer.json().get("exiResponse") if answer.status_code == 200 else None
        except (httpx.HTTPError, ValueError, AttributeError) as exc:
            log.warning("iso15118.contract_service_failed", station_id=station_id,
                        error=str(exc))
            return failed("ServiceUnavailable", f"contract service: {type(exc).__name__}")
        if answer.status_code != 200:
            log.warning("iso15118.contract_service_refused", station_id=station_id,
                        status=answer.status_code)
            return failed("ServiceRefused", f"contract service answered {answer.status_code}")
        if not isinstance(exi, str) or not exi or len(exi) > EXI_MAX or not _is_base64(exi):
            return failed("InvalidResponse", "contract service sent no usable exiResponse")
        return {"status": "Accepted", "exiResponse": exi}

    async def certificate_status(self, station_id: str, data: dict[str, Any],
                                 now: datetime) -> dict[str, Any]:
        """M06: a DER OCSP response (base64) for the certificate, or Failed."""
        try:
            serial = int(data["serialNumber"], 16)
            bytes.fromhex(data["issuerNameHash"])
            bytes.fromhex(data["issuerKeyHash"])
        except ValueError:
            return failed("InvalidRequest", "serialNumber and hashes must be hexadecimal")
        if self.local_ca is not None and self.local_ca.issued(data):
            der = self.local_ca.respond(data, serial, now)
            return {"status": "Accepted", "ocspResult": base64.b64encode(der).decode()}
        fetched = await self._ask_responder(station_id, data, serial)
        if isinstance(fetched, dict):
            return fetched
        result = base64.b64encode(fetched[1]).decode()
        if len(result) > OCSP_MAX:
            return failed("InvalidResponse", "OCSP response too large for ocspResult")
        return {"status": "Accepted", "ocspResult": result}

    async def contract_status(self, station_id: str, certificate: str | None,
                              hash_data: list[dict[str, Any]] | None, now: datetime
                              ) -> tuple[str, str]:
        """C07: the AuthorizeResponse certificateStatus for a contract certificate, and why.

        A PEM chain (`certificate`, C07.FR.06: the station validates centrally) must chain
        to a configured MO or V2G root with valid signatures, every certificate within its
        validity; then its revocation is checked as for hash data (C07.FR.05). Each hash
        data entry is checked against the local CA's revocation list, or a configured
        responder. Whatever cannot be verified fails closed (CertChainError)."""
        entries = list(hash_data or [])
        if certificate:
            verdict, leaf_data = self._check_chain(certificate, now)
            if verdict != "Accepted":
                return verdict, leaf_data.get("reason", verdict)
            if not entries:
                entries = [leaf_data]
        if not entries:
            return "NoCertificateAvailable", "neither certificate nor hash data"
        for entry in entries:
            try:
                serial = int(entry["serialNumber"], 16)
                bytes.fromhex(entry["issuerNameHash"])
                bytes.fromhex(entry["issuerKeyHash"])
            except (ValueError, KeyError):
                return "CertChainError", "serialNumber and hashes must be hexadecimal"
            if self.local_ca is not None and self.local_ca.issued(entry):
                if self.local_ca.revoked(serial):
                    return "CertificateRevoked", f"serial {entry['serialNumber']} revoked"
                continue
            fetched = await self._ask_responder(station_id, entry, serial)
            if isinstance(fetched, dict):
                return "CertChainError", fetched["statusInfo"]["additionalInfo"]
            response = fetched[0]
            if response.serial_number != serial:
                return "CertChainError", "the OCSP response is for another certificate"
            if response.certificate_status == ocsp.OCSPCertStatus.REVOKED:
                return "CertificateRevoked", f"serial {entry['serialNumber']} revoked"
            if response.certificate_status != ocsp.OCSPCertStatus.GOOD:
                return "CertChainError", "the responder does not know the certificate"
        return "Accepted", "valid"

    def _check_chain(self, certificate: str, now: datetime) -> tuple[str, dict[str, Any]]:
        """Verify a PEM contract chain (leaf first) up to a configured root; on success the
        leaf's OCSP request data (with its AIA responder, if it names one)."""
        try:
            chain = x509.load_pem_x509_certificates(certificate.encode())[:MAX_CHAIN]
        except ValueError:
            return "CertChainError", {"reason": "not a PEM certificate chain"}
        roots = [x509.load_pem_x509_certificate(pem.encode())
                 for kind, pem in self.roots.items()
                 if kind in ("MORootCertificate", "V2GRootCertificate")]
        for cert in chain:
            if not cert.not_valid_before_utc <= now <= cert.not_valid_after_utc:
                return "CertificateExpired", {"reason": f"{cert.subject.rfc4514_string()}"
                                                        " is outside its validity"}
        issuers: list[x509.Certificate | None] = [*chain[1:], None]
        for cert, issuer in zip(chain, issuers, strict=True):
            candidates = [issuer] if issuer is not None else \
                [r for r in roots if r.subject == cert.issuer]
            if not candidates:
                return "CertChainError", {"reason": "the chain does not end at a configured"
                                                    " MO or V2G root"}
            try:
                cert.verify_directly_issued_by(candidates[0])
            except ValueError:
                return "CertChainError", {"reason": "issuer names do not chain"}
            except InvalidSignature:
                return "SignatureError", {"reason": f"bad signature on "
                                                    f"{cert.subject.rfc4514_string()}"}
            except TypeError:  # a key type cryptography cannot verify with
                return "CertChainError", {"reason": "unsupported key type"}
        leaf = chain[0]
        issuer_cert = chain[1] if len(chain) > 1 else next(
            r for r in roots if r.subject == leaf.issuer)
        algorithm = hashes.SHA256()
        data: dict[str, Any] = {
            "hashAlgorithm": "SHA256", "issuerNameHash": name_hash(issuer_cert, algorithm).hex(),
            "issuerKeyHash": key_hash(issuer_cert, algorithm).hex(),
            "serialNumber": format(leaf.serial_number, "x"), "responderURL": _ocsp_url(leaf)}
        return "Accepted", data

    async def _ask_responder(self, station_id: str, data: dict[str, Any], serial: int
                             ) -> tuple[ocsp.OCSPResponse, bytes] | dict[str, Any]:
        """The configured responder's successful OCSP response (parsed and DER), or the
        Failed answer saying why. Only responders on the configured list are asked."""
        url = data.get("responderURL", "")
        if not any(url.startswith(prefix) for prefix in self.config.ocsp_responders):
            return failed("UnknownResponder", "responderURL is not a configured OCSP responder")
        try:
            request = ocsp.OCSPRequestBuilder().add_certificate_by_hash(
                bytes.fromhex(data["issuerNameHash"]), bytes.fromhex(data["issuerKeyHash"]),
                serial, HASHES[data["hashAlgorithm"]](),
            ).build().public_bytes(serialization.Encoding.DER)
        except ValueError as exc:  # hashes of the wrong length for the algorithm
            return failed("InvalidRequest", str(exc))
        try:
            async with httpx.AsyncClient(timeout=self.config.timeout_s) as client:
                answer = await client.post(
                    url, content=request, headers={"Content-Type": "application/ocsp-request"})
            if answer.status_code != 200:
                return failed("ServiceRefused", f"OCSP responder answered {answer.status_code}")
            response = ocsp.load_der_ocsp_response(answer.content)
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("iso15118.ocsp_failed", station_id=station_id, error=str(exc))
            return failed("ServiceUnavailable", f"OCSP responder: {type(exc).__name__}")
        if response.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
            return failed("OcspUnsuccessful", f"OCSP {response.response_status.name}")
        return response, answer.content

    def root_certificate(self, certificate_type: str) -> str | None:
        """The PEM to install as V2GRootCertificate or MORootCertificate, if configured."""
        return self.roots.get(certificate_type)
