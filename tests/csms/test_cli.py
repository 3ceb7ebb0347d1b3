"""The `csms` command as a user runs it: provisioning, and `serve` on a fresh data folder."""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from csms.cli import build_parser
from simulators.station import Station, StationSpec

CSMS = [sys.executable, "-m", "csms.cli"]


def run(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*CSMS, *args], capture_output=True, text=True, timeout=60, env=env)


def test_stations_and_tokens_are_provisioned_listed_and_removed(database_url: str) -> None:
    db = ["--database-url", database_url]
    added = run("stations", "add", "CS001", *db)
    assert added.returncode == 0, added.stderr
    assert "added station CS001" in added.stdout
    assert "password: " in added.stdout  # generated and shown once
    generated = added.stdout.split("password: ")[1].strip()
    assert len(generated) == 32
    assert run("stations", "add", "CS002", "--password", "short", *db).returncode == 2
    assert run("stations", "add", "CS002", "--no-password", *db).returncode == 0
    listed = run("stations", "list", *db).stdout
    assert "CS001" in listed and "password" in listed and "CS002" in listed
    assert run("stations", "remove", "CS002", *db).returncode == 0
    assert "CS002" not in run("stations", "list", *db).stdout
    assert run("stations", "remove", "CS002", *db).returncode == 1

    assert run("tokens", "add", "TAG1", "--type", "ISO14443", *db).returncode == 0
    assert run("tokens", "add", "TAG2", "--status", "Blocked", *db).returncode == 0
    tokens = run("tokens", "list", *db).stdout
    assert "TAG1" in tokens and "Blocked" in tokens
    assert run("tokens", "remove", "TAG1", *db).returncode == 0
    assert "TAG1" not in run("tokens", "list", *db).stdout


def test_database_url_from_the_environment(database_url: str) -> None:
    env = os.environ | {"DATABASE_URL": database_url}
    assert run("tokens", "add", "ENV1", env=env).returncode == 0
    assert "ENV1" in run("tokens", "list", "--database-url", database_url).stdout


def test_a_bad_config_file_is_reported(tmp_path: Path) -> None:
    bad = tmp_path / "csms.toml"
    bad.write_text("[server]\nprot = 9000\n")
    result = run("stations", "list", "--config", str(bad))
    assert result.returncode == 2 and "prot" in result.stderr


def test_a_one_shot_command_prints_no_database_log_lines(database_url: str) -> None:
    """Opening and migrating a fresh database logs at info: `serve` shows it, a
    provisioning command only prints its own answer."""
    listed = run("tokens", "list", "--database-url", database_url)
    assert listed.returncode == 0 and "database." not in listed.stderr + listed.stdout
    assert listed.stdout.startswith("token ")


def test_verbose_shows_the_database_log_lines(database_url: str) -> None:
    listed = run("tokens", "list", "-v", "--database-url", database_url)
    assert listed.returncode == 0 and "database.migrated" in listed.stderr + listed.stdout


def test_every_option_says_what_it_is_for() -> None:
    shown = run("serve", "--help").stdout
    assert "--host HOST           address the OCPP server listens on" in shown
    assert "--port PORT           OCPP WebSocket port" in shown
    parsers = [build_parser()]
    for parser in parsers:  # every subcommand, depth first
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                parsers.extend(action.choices.values())
            elif not isinstance(action, argparse._HelpAction):
                assert action.help, (parser.prog, action.dest)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _serve_and_boot(data_dir: Path, port: int, password: str) -> str | None:
    proc = await asyncio.create_subprocess_exec(
        *CSMS, "serve", "--data-dir", str(data_dir), "--host", "127.0.0.1", "--port", str(port),
        "--api-port", "0",
        stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
    )
    try:
        assert proc.stdout is not None
        while True:
            line = (await asyncio.wait_for(proc.stdout.readline(), 60)).decode()
            assert line, "csms serve exited"
            if "CSMS listening" in line:
                break
        station = Station(StationSpec("HOME1", password=password),
                          url=f"ws://127.0.0.1:{port}/ocpp")
        await station.start()
        status = station.boot_status
        await station.stop()
        return status
    finally:
        proc.send_signal(signal.SIGTERM)
        assert await asyncio.wait_for(proc.wait(), 30) == 0


async def test_serve_on_a_fresh_data_folder_then_restart_keeps_everything(
    private_dir: Path,
) -> None:
    data_dir = private_dir / "pgdata"
    port = free_port()
    password = "home-charger-secret-01"
    added = run("stations", "add", "HOME1", "--password", password, "--data-dir", str(data_dir))
    assert added.returncode == 0, added.stderr
    assert await _serve_and_boot(data_dir, port, password) == "Accepted"
    # a second start on the same data: the station, its boot and its password are still there
    assert await _serve_and_boot(data_dir, port, password) == "Accepted"
    listed = run("stations", "list", "--data-dir", str(data_dir)).stdout
    assert "HOME1" in listed and "Accepted" in listed
