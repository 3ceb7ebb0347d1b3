"""Security Profile 2: Basic auth over TLS (wss://)."""

from __future__ import annotations

import ssl
from dataclasses import replace
from pathlib import Path

import pytest
import trustme

from csms.app import Csms
from csms.config import Config
from csms.passwords import hash_password
from simulators.station import ConnectionRefused, Station, StationSpec


@pytest.fixture
def certificate_authority() -> trustme.CA:
    return trustme.CA()


async def test_A_security_profile_2_tls_with_basic_auth(
    config: Config, tmp_path: Path, certificate_authority: trustme.CA
) -> None:
    server_cert = certificate_authority.issue_cert("127.0.0.1", "localhost")
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    config = replace(config, server=replace(config.server, tls_cert=str(cert), tls_key=str(key)))
    csms = await Csms.start(config)
    try:
        await csms.store.stations.add("TLS01", hash_password("tls-station-secret-1"),
                                      csms.clock.now())
        trusted = ssl.create_default_context()
        certificate_authority.configure_trust(trusted)
        url = f"wss://127.0.0.1:{csms.ocpp.port}/ocpp"

        station = Station(StationSpec("TLS01", password="tls-station-secret-1"), url=url,
                          ssl=trusted)
        await station.start()
        assert station.boot_status == "Accepted"
        await station.stop()

        wrong = Station(StationSpec("TLS01", password="wrong-password-0000"), url=url,
                        ssl=trusted)
        with pytest.raises(ConnectionRefused) as refused:
            await wrong.start()
        assert refused.value.status_code == 401
        await wrong.stop()

        untrusting = Station(StationSpec("TLS01", password="tls-station-secret-1"), url=url,
                             ssl=ssl.create_default_context())  # does not know our CA
        with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
            await untrusting.start()
        await untrusting.stop()
    finally:
        await csms.stop()
