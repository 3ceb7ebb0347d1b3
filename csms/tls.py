"""The OCPP listener's TLS (Security Profiles 2 and 3, OCPP 2.0.1 Part 2 A00).

- TLS 1.2 or newer only (A00.FR.313), no compression, no renegotiation.
- The TLS 1.2 suites A00.FR.318 requires a CSMS to offer: the two ECDHE-ECDSA AES-GCM
  suites *and* the two RSA key-exchange AES-GCM suites (TLS_RSA_WITH_AES_128_GCM_SHA256,
  TLS_RSA_WITH_AES_256_GCM_SHA384), which Python's default server context leaves out; plus
  ECDHE-RSA AES-GCM, so a client that can do forward secrecy with an RSA certificate does.
  An ECDSA certificate serves the ECDSA suites, an RSA one the others: `tls_cert` may be
  either (and `tls_cert_2` the other kind, for the full A00.FR.318 set).
- Client certificates (Security Profile 3) are asked for but not required, so stations of
  profile 2 and 3 share one port. A certificate that does not chain to a trusted CA fails
  the TLS handshake; one that does is checked against the station identity and the
  station's stored profile in the WebSocket handshake (csms/server.py).
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass
from typing import Any

TLS12_CIPHERS = ":".join((
    "ECDHE-ECDSA-AES128-GCM-SHA256",  # A00.FR.318
    "ECDHE-ECDSA-AES256-GCM-SHA384",  # A00.FR.318
    "ECDHE-RSA-AES128-GCM-SHA256",
    "ECDHE-RSA-AES256-GCM-SHA384",
    "AES128-GCM-SHA256",  # A00.FR.318: TLS_RSA_WITH_AES_128_GCM_SHA256
    "AES256-GCM-SHA384",  # A00.FR.318: TLS_RSA_WITH_AES_256_GCM_SHA384
))


def server_context(
    certificates: list[tuple[str, str]], client_cas: list[str]
) -> ssl.SSLContext:
    """A server context for the OCPP listener. `certificates`: (cert PEM file, key PEM file
    or "") pairs, one per key type; `client_cas`: PEM texts of the CAs whose station
    certificates are accepted (empty: no client certificates asked for)."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.set_ciphers(TLS12_CIPHERS)  # TLS 1.3 suites are configured apart and stay on
    ctx.options |= ssl.OP_NO_COMPRESSION | ssl.OP_CIPHER_SERVER_PREFERENCE
    ctx.options |= getattr(ssl, "OP_NO_RENEGOTIATION", 0)
    for cert, key in certificates:
        ctx.load_cert_chain(cert, key or None)
    if client_cas:
        ctx.verify_mode = ssl.CERT_OPTIONAL
        ctx.load_verify_locations(cadata="\n".join(client_cas))
    return ctx


@dataclass(frozen=True)
class PeerCertificate:
    """The subject of a client certificate that chained to a trusted CA."""

    common_name: str | None
    organization: str | None
    serial_number: int | None


def peer_certificate(transport: Any) -> PeerCertificate | None:
    """The verified client certificate on a connection's transport, or None (no TLS, or
    the station sent none)."""
    ssl_object = transport.get_extra_info("ssl_object") if transport is not None else None
    if ssl_object is None:
        return None
    cert = ssl_object.getpeercert()
    if not cert:
        return None
    subject: dict[str, str] = {}
    for rdn in cert.get("subject", ()):
        for key, value in rdn:
            subject.setdefault(key, value)
    serial = cert.get("serialNumber")
    return PeerCertificate(subject.get("commonName"), subject.get("organizationName"),
                           int(serial, 16) if serial else None)


def is_tls(transport: Any) -> bool:
    return transport is not None and transport.get_extra_info("ssl_object") is not None
