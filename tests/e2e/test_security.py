"""Security Profiles 2 and 3 over real TLS sockets (OCPP 2.0.1 Part 2 A00, A05)."""

from __future__ import annotations

import ssl
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
import trustme
import websockets
from websockets.exceptions import InvalidHandshake

from csms import metrics
from csms.app import Csms
from csms.config import Config
from csms.passwords import hash_password
from simulators.station import ConnectionRefused, Station, StationSpec
from tests.e2e.test_handshake import basic
from tests.support import eventually

PASSWORD = "tls-station-secret-1"


@pytest.fixture
def certificate_authority() -> trustme.CA:
    """The CA of the CSMS's server certificate (what stations trust)."""
    return trustme.CA(key_type=trustme.KeyType.RSA)


@pytest.fixture
def tls_config(config: Config, tmp_path: Path, certificate_authority: trustme.CA) -> Config:
    """TLS with an RSA server certificate: the one every A00.FR.318 RSA suite needs."""
    server_cert = certificate_authority.issue_cert("127.0.0.1", "localhost",
                                                   key_type=trustme.KeyType.RSA)
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    server_cert.cert_chain_pems[0].write_to_path(str(cert))
    server_cert.private_key_pem.write_to_path(str(key))
    return replace(config, server=replace(config.server, tls_cert=str(cert), tls_key=str(key)))


@pytest.fixture
async def tls_csms(tls_config: Config) -> AsyncIterator[Csms]:
    csms = await Csms.start(tls_config)
    yield csms
    await csms.stop()


def trusting(ca: trustme.CA) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca.configure_trust(context)
    return context


def with_certificate(ca: trustme.CA, tmp_path: Path, cert_pem: str, key_pem: str
                     ) -> ssl.SSLContext:
    """A station's TLS context: trusts the CSMS, presents its own certificate (SP3)."""
    context = trusting(ca)
    cert, key = tmp_path / "station-cert.pem", tmp_path / "station-key.pem"
    cert.write_text(cert_pem)
    key.write_text(key_pem)
    context.load_cert_chain(str(cert), str(key))
    return context


def refused(reason: str) -> float:
    return metrics.refused.labels(reason)._value.get()


async def test_A_security_profile_2_tls_with_basic_auth(
    tls_csms: Csms, certificate_authority: trustme.CA
) -> None:
    csms = tls_csms
    await csms.store.stations.add("TLS01", hash_password(PASSWORD), csms.clock.now())
    url = f"wss://127.0.0.1:{csms.ocpp.port}/ocpp"

    station = Station(StationSpec("TLS01", password=PASSWORD), url=url,
                      ssl=trusting(certificate_authority))
    await station.start()
    assert station.boot_status == "Accepted"
    await station.stop()

    wrong = Station(StationSpec("TLS01", password="wrong-password-0000"), url=url,
                    ssl=trusting(certificate_authority))
    with pytest.raises(ConnectionRefused) as refusal:
        await wrong.start()
    assert refusal.value.status_code == 401
    await wrong.stop()

    untrusting = Station(StationSpec("TLS01", password=PASSWORD), url=url,
                         ssl=ssl.create_default_context())  # does not know our CA
    with pytest.raises((ssl.SSLError, ConnectionError, OSError)):
        await untrusting.start()
    await untrusting.stop()


@pytest.mark.parametrize("suite", ["AES128-GCM-SHA256", "AES256-GCM-SHA384"])
async def test_A00_FR_318_tls12_rsa_key_exchange_suites_are_offered(
    tls_csms: Csms, certificate_authority: trustme.CA, suite: str
) -> None:
    """A station that speaks only TLS 1.2 with TLS_RSA_WITH_AES_*_GCM_SHA* connects."""
    csms = tls_csms
    await csms.store.stations.add("TLS02", hash_password(PASSWORD), csms.clock.now())
    context = trusting(certificate_authority)
    context.maximum_version = ssl.TLSVersion.TLSv1_2
    context.set_ciphers(suite)
    async with websockets.connect(
        f"wss://127.0.0.1:{csms.ocpp.port}/ocpp/TLS02", ssl=context,
        subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        additional_headers=basic("TLS02", PASSWORD),
    ) as ws:
        name, version, _ = ws.transport.get_extra_info("cipher")
        assert (name, version) == (suite, "TLSv1.2")
        assert ws.subprotocol == "ocpp2.0.1"


async def test_A00_security_profile_3_client_certificate_identifies_the_station(
    tls_csms: Csms, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    csms = tls_csms
    assert csms.ca is not None
    await csms.store.stations.add("SP301", None, csms.clock.now())
    key_pem, issued = csms.ca.issue_station("SP301", csms.clock.now())
    station = Station(StationSpec("SP301", password=None),
                      url=f"wss://127.0.0.1:{csms.ocpp.port}/ocpp",
                      ssl=with_certificate(certificate_authority, tmp_path, issued.chain_pem,
                                           key_pem))
    await station.start()
    assert station.boot_status == "Accepted"
    await station.stop()
    record = await csms.store.stations.get("SP301")
    assert record is not None and record.security_profile == 3


async def test_A00_certificate_of_another_station_is_refused_logged_and_counted(
    tls_csms: Csms, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    csms = tls_csms
    assert csms.ca is not None
    now = csms.clock.now()
    await csms.store.stations.add("SP301", None, now)
    await csms.store.stations.add("SP302", None, now)
    key_pem, issued = csms.ca.issue_station("SP302", now)
    before = refused("certificate_mismatch")
    impostor = Station(StationSpec("SP301", password=None),
                       url=f"wss://127.0.0.1:{csms.ocpp.port}/ocpp",
                       ssl=with_certificate(certificate_authority, tmp_path, issued.chain_pem,
                                            key_pem))
    with pytest.raises(ConnectionRefused) as refusal:
        await impostor.start()
    assert refusal.value.status_code == 403
    await impostor.stop()
    assert refused("certificate_mismatch") == before + 1
    assert not csms.connections.is_connected("SP301")


async def test_A00_certificate_from_an_untrusted_ca_fails_the_tls_handshake(
    tls_csms: Csms, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    csms = tls_csms
    await csms.store.stations.add("SP301", None, csms.clock.now())
    rogue = trustme.CA().issue_cert("SP301", common_name="SP301")
    station = Station(StationSpec("SP301", password=None),
                      url=f"wss://127.0.0.1:{csms.ocpp.port}/ocpp",
                      ssl=with_certificate(certificate_authority, tmp_path,
                                           rogue.cert_chain_pems[0].bytes().decode(),
                                           rogue.private_key_pem.bytes().decode()))
    # TLS 1.3 checks the client's certificate after the client's handshake is done: then
    # the refusal is the socket closing before the HTTP answer
    with pytest.raises((ssl.SSLError, ConnectionError, OSError, InvalidHandshake)):
        await station.start()
    await station.stop()
    assert not csms.connections.is_connected("SP301")


async def test_A05_a_station_on_profile_3_cannot_fall_back_to_basic_auth(
    tls_csms: Csms, certificate_authority: trustme.CA, tmp_path: Path
) -> None:
    """Once a station connected with its certificate, its password no longer opens."""
    csms = tls_csms
    assert csms.ca is not None
    await csms.store.stations.add("SP303", hash_password(PASSWORD), csms.clock.now())
    url = f"wss://127.0.0.1:{csms.ocpp.port}/ocpp"
    by_password = Station(StationSpec("SP303", password=PASSWORD), url=url,
                          ssl=trusting(certificate_authority))
    await by_password.start()  # profile 2 until the upgrade
    await by_password.stop()
    key_pem, issued = csms.ca.issue_station("SP303", csms.clock.now())
    by_certificate = Station(StationSpec("SP303", password=None), url=url,
                             ssl=with_certificate(certificate_authority, tmp_path,
                                                  issued.chain_pem, key_pem))
    await by_certificate.start()
    await by_certificate.stop()

    before = refused("profile_downgrade")
    fallback = Station(StationSpec("SP303", password=PASSWORD), url=url,
                       ssl=trusting(certificate_authority))
    with pytest.raises(ConnectionRefused) as refusal:
        await fallback.start()
    assert refusal.value.status_code == 401
    await fallback.stop()
    assert refused("profile_downgrade") == before + 1


async def test_A05_a_station_marked_profile_2_is_refused_without_tls(
    csms: Csms, url: str
) -> None:
    await csms.store.stations.add("SP201", hash_password(PASSWORD), csms.clock.now())
    await csms.store.stations.set_security_profile("SP201", 2)
    station = Station(StationSpec("SP201", password=PASSWORD), url=url)
    with pytest.raises(ConnectionRefused) as refusal:
        await station.start()
    assert refusal.value.status_code == 401
    await station.stop()


async def test_A05_upgrade_from_profile_2_to_3_with_a_certificate_the_csms_signed(
    tls_csms: Csms, certificate_authority: trustme.CA
) -> None:
    """A02 then A05: a profile 2 station gets its certificate from the CSMS's CA over the
    wire, connects with it (profile 3), and from then on its password no longer opens."""
    from simulators.station.security import request_certificate

    csms = tls_csms
    await csms.store.stations.add("SP304", hash_password(PASSWORD), csms.clock.now())
    url = f"wss://127.0.0.1:{csms.ocpp.port}/ocpp"
    station = Station(StationSpec("SP304", password=PASSWORD), url=url,
                      ssl=trusting(certificate_authority))
    await station.start()
    try:
        assert (await csms.store.stations.get("SP304")).security_profile == 2  # type: ignore[union-attr]
        assert (await request_certificate(station))["status"] == "Accepted"

        async def delivered() -> bool:
            return bool(station.certificates.chain)

        await eventually(delivered)
        station.spec = replace(station.spec, password=None)  # profile 3: no Basic auth
        await station.disconnect()
        await station.reconnect()
        assert station.connected
        record = await csms.store.stations.get("SP304")
        assert record is not None and record.security_profile == 3
    finally:
        await station.stop()

    fallback = Station(StationSpec("SP304", password=PASSWORD), url=url,
                       ssl=trusting(certificate_authority))
    with pytest.raises(ConnectionRefused) as refusal:
        await fallback.start()
    assert refusal.value.status_code == 401
    await fallback.stop()
