"""`csms ca server-cert` and `csms stations add --certificate` as an operator runs them: the
files they write let a station connect with Security Profile 3 over a real TLS socket."""

from __future__ import annotations

import ssl
import stat
from dataclasses import replace
from pathlib import Path

import websockets
from cryptography import x509
from cryptography.x509.oid import NameOID

from csms.app import Csms
from csms.config import Config
from simulators.station import Station, StationSpec
from tests.csms.test_cli import run


async def test_A00_stations_add_certificate_equips_a_station_for_profile_3(
    config: Config, database_url: str, tmp_path: Path
) -> None:
    common = ["--database-url", database_url, "--data-dir", config.database.data_dir]
    server, station_dir = tmp_path / "server", tmp_path / "station"
    made = run("ca", "server-cert", "127.0.0.1", "localhost", "--out", str(server), *common)
    assert made.returncode == 0, made.stderr
    added = run("stations", "add", "SP3CLI", "--certificate", str(station_dir), *common)
    assert added.returncode == 0, added.stderr
    assert "Security Profile 3" in added.stdout
    key, cert, root = (station_dir / "SP3CLI.key", station_dir / "SP3CLI.pem",
                       station_dir / "csms-root.pem")
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    leaf = x509.load_pem_x509_certificates(cert.read_bytes())[0]
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == "SP3CLI"
    assert "certificate" in run("stations", "list", *common).stdout

    tls = replace(config.server, tls_cert=str(server / "server-rsa.pem"),
                  tls_key=str(server / "server-rsa.key"),
                  tls_cert_2=str(server / "server-ec.pem"), tls_key_2=str(server / "server-ec.key"))
    csms = await Csms.start(replace(config, server=tls))
    try:
        context = ssl.create_default_context(cafile=str(root))
        context.load_cert_chain(str(cert), str(key))
        station = Station(StationSpec("SP3CLI", password=None),
                          url=f"wss://127.0.0.1:{csms.ocpp.port}/ocpp", ssl=context)
        await station.start()
        assert station.boot_status == "Accepted"
        await station.stop()
        listed = await csms.store.certificates.list("SP3CLI")
        assert [(c.source, c.serial) for c in listed] == [("cli", format(leaf.serial_number, "x"))]

        # the EC certificate serves the A00.FR.318 ECDHE-ECDSA suites
        ecdsa = ssl.create_default_context(cafile=str(root))
        ecdsa.maximum_version = ssl.TLSVersion.TLSv1_2
        ecdsa.set_ciphers("ECDHE-ECDSA-AES256-GCM-SHA384")
        ecdsa.load_cert_chain(str(cert), str(key))
        async with websockets.connect(
            f"wss://127.0.0.1:{csms.ocpp.port}/ocpp/SP3CLI", ssl=ecdsa,
            subprotocols=["ocpp2.0.1"],  # type: ignore[list-item]
        ) as ws:
            assert ws.transport.get_extra_info("cipher")[0] == "ECDHE-ECDSA-AES256-GCM-SHA384"
    finally:
        await csms.stop()
