"""The CSMS's certificate authority for charging station certificates (block A).

Station certificates identify a station on a Security Profile 3 connection: their subject
CN is the station identity. The CA is the operator's (`[security] ca_cert`/`ca_key`), or
the CSMS's own, an ECDSA P-256 root made on first use in the data folder (`data/ca`), so
profile 3 works out of the box and `csms stations add --certificate` can equip a station.

It signs two things: a station's CSR from SignCertificate (A02/A03), after checking that
the CSR is well formed, self-signed by its key, names the station as CN and carries the
configured organisation; and a key it makes itself for the CLI. Decisions only: the files
are read and written by `load_or_create`, the certificates stored by the caller.
"""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

CA_DAYS = 3650
CLOCK_SKEW = timedelta(minutes=5)  # not_before this far back: a station's clock may lag
CA_CERT_FILE, CA_KEY_FILE = "ca.pem", "ca.key"

SigningKey = ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey


class CsrRejected(ValueError):
    """A CSR the CA will not sign; the message says why (sent as statusInfo)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(detail)
        self.reason = reason  # a short reasonCode
        self.detail = detail


@dataclass(frozen=True)
class IssuedCertificate:
    serial: str  # hex
    station_id: str
    subject: str
    not_before: datetime
    not_after: datetime
    pem: str  # the certificate alone
    chain_pem: str  # the certificate, then the CA: what CertificateSigned carries


def _name_attr(name: x509.Name, oid: x509.ObjectIdentifier) -> str | None:
    values = name.get_attributes_for_oid(oid)
    return str(values[0].value) if values else None


class CertificateAuthority:
    def __init__(self, certificate: x509.Certificate, key: SigningKey, *,
                 organization: str = "", days: int = 365) -> None:
        self.certificate = certificate
        self.key = key
        self.organization = organization
        self.days = days

    @property
    def root_pem(self) -> str:
        return self.certificate.public_bytes(serialization.Encoding.PEM).decode()

    # -- signing --------------------------------------------------------------------------

    def sign_csr(self, csr_pem: str, station_id: str, now: datetime) -> IssuedCertificate:
        """Sign a station's CSR for a ChargingStationCertificate, or raise CsrRejected."""
        try:
            csr = x509.load_pem_x509_csr(csr_pem.encode())
        except ValueError as exc:
            raise CsrRejected("InvalidCSR", f"not a PEM certificate signing request: {exc}") \
                from None
        if not csr.is_signature_valid:
            raise CsrRejected("InvalidSignature", "the CSR is not signed by its own key")
        key = csr.public_key()
        if isinstance(key, rsa.RSAPublicKey):
            if key.key_size < 2048:
                raise CsrRejected("InvalidKey", "an RSA key must have at least 2048 bits")
        elif isinstance(key, ec.EllipticCurvePublicKey):
            if key.curve.key_size < 224:
                raise CsrRejected("InvalidKey", "an EC key must have at least 224 bits")
        else:
            raise CsrRejected("InvalidKey", "the key must be RSA or EC")
        common_name = _name_attr(csr.subject, NameOID.COMMON_NAME)
        if common_name != station_id:
            raise CsrRejected("InvalidCommonName",
                              f"the CSR's CN must be the station identity {station_id!r}")
        organization = _name_attr(csr.subject, NameOID.ORGANIZATION_NAME)
        if self.organization and organization != self.organization:
            raise CsrRejected("InvalidOrganization",
                              f"the CSR's O must be {self.organization!r}")
        return self._issue(csr.subject, key, station_id, now)

    def issue_station(self, station_id: str, now: datetime) -> tuple[str, IssuedCertificate]:
        """A new key and its certificate for a station (the CLI's `--certificate`)."""
        key = ec.generate_private_key(ec.SECP256R1())
        attrs = [x509.NameAttribute(NameOID.COMMON_NAME, station_id)]
        if self.organization:
            attrs.append(x509.NameAttribute(NameOID.ORGANIZATION_NAME, self.organization))
        issued = self._issue(x509.Name(attrs), key.public_key(), station_id, now)
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return key_pem, issued

    def issue_server(self, hostnames: list[str], now: datetime, *, rsa_key: bool
                     ) -> tuple[str, str]:
        """A TLS server certificate for the CSMS itself (key PEM, chain PEM), so stations
        need one root, this CA, as their CSMSRootCertificate. RSA serves the A00.FR.318
        TLS_RSA suites, EC the ECDHE-ECDSA ones."""
        key: SigningKey = (rsa.generate_private_key(65537, 2048) if rsa_key
                           else ec.generate_private_key(ec.SECP256R1()))
        names: list[x509.GeneralName] = []
        for host in hostnames:
            try:
                names.append(x509.IPAddress(ipaddress.ip_address(host)))
            except ValueError:
                names.append(x509.DNSName(host))
        cert = (
            x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, hostnames[0])]))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - CLOCK_SKEW)
            .not_valid_after(min(now + timedelta(days=self.days),
                                 self.certificate.not_valid_after_utc))
            .add_extension(x509.SubjectAlternativeName(names), critical=False)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        key_pem = key.private_bytes(serialization.Encoding.PEM,
                                    serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption()).decode()
        return key_pem, cert.public_bytes(serialization.Encoding.PEM).decode() + self.root_pem

    def _issue(self, subject: x509.Name, public_key: ec.EllipticCurvePublicKey |
               rsa.RSAPublicKey, station_id: str, now: datetime) -> IssuedCertificate:
        not_before = now - CLOCK_SKEW
        not_after = min(now + timedelta(days=self.days), self.certificate.not_valid_after_utc)
        rsa_key = isinstance(public_key, rsa.RSAPublicKey)
        cert = (
            x509.CertificateBuilder()
            .subject_name(subject)
            .issuer_name(self.certificate.subject)
            .public_key(public_key)
            .serial_number(x509.random_serial_number())
            .not_valid_before(not_before)
            .not_valid_after(not_after)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(
                digital_signature=True, key_encipherment=rsa_key, content_commitment=False,
                data_encipherment=False, key_agreement=not rsa_key, key_cert_sign=False,
                crl_sign=False, encipher_only=False, decipher_only=False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key),
                           critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                self.key.public_key()), critical=False)
            .sign(self.key, hashes.SHA256())
        )
        pem = cert.public_bytes(serialization.Encoding.PEM).decode()
        return IssuedCertificate(
            serial=format(cert.serial_number, "x"), station_id=station_id,
            subject=cert.subject.rfc4514_string(), not_before=cert.not_valid_before_utc,
            not_after=cert.not_valid_after_utc, pem=pem, chain_pem=pem + self.root_pem,
        )


def new_root(
    common_name: str, organization: str, now: datetime
) -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, organization)])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - CLOCK_SKEW).not_valid_after(now + timedelta(days=CA_DAYS))
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(x509.KeyUsage(
            digital_signature=True, key_encipherment=False, content_commitment=False,
            data_encipherment=False, key_agreement=False, key_cert_sign=True, crl_sign=True,
            encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()),
                       critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, cert


def load_or_create(
    ca_cert: str, ca_key: str, ca_dir: str, now: datetime, *, organization: str = "",
    days: int = 365,
) -> CertificateAuthority:
    """The operator's CA if configured, else the CSMS's own from `ca_dir`, made there on
    first use (the key file readable by its owner only)."""
    if ca_cert:
        cert_path, key_path = Path(ca_cert), Path(ca_key)
    else:
        folder = Path(ca_dir)
        cert_path, key_path = folder / CA_CERT_FILE, folder / CA_KEY_FILE
        if not cert_path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            key, cert = new_root("ocpp-csms station CA", organization or "ocpp-csms", now)
            try:  # O_EXCL: two processes starting at once keep the first one's CA
                fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            except FileExistsError:
                pass
            else:
                with os.fdopen(fd, "wb") as f:
                    f.write(key.private_bytes(serialization.Encoding.PEM,
                                              serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption()))
                tmp = cert_path.with_suffix(".tmp")
                tmp.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
                tmp.replace(cert_path)
    certificate = x509.load_pem_x509_certificate(cert_path.read_bytes())
    key = serialization.load_pem_private_key(key_path.read_bytes(), password=None)
    if not isinstance(key, ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey):
        raise ValueError(f"{key_path}: the CA key must be RSA or EC")
    return CertificateAuthority(certificate, key, organization=organization, days=days)
