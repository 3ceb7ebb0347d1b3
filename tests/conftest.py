"""Shared fixtures: one real PostgreSQL for the test session (embedded, or DATABASE_URL),
a fresh database per test, and a running CSMS on a free port."""

from __future__ import annotations

import fcntl
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import AsyncIterator, Iterator
from dataclasses import replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import pytest

from csms.app import Csms
from csms.config import ApiConfig, Config, ServerConfig, load


@pytest.fixture(scope="session")
def postgres_url() -> Iterator[str]:
    if url := os.environ.get("TEST_DATABASE_URL"):
        yield url
        return
    # Not under pytest's tmp_path: a concurrent pytest run prunes those folders.
    folder = Path(tempfile.mkdtemp(prefix="csms-test-pg-"))
    # One start at a time across pytest-xdist's workers: run as root, pgserver creates its
    # system user and fixes folder permissions on first use, and two workers doing that
    # at once failed initdb with "Permission denied" on a fresh machine.
    with (open(Path(tempfile.gettempdir()) / "csms-test-pgserver.lock", "w") as lock,
          warnings.catch_warnings()):
        fcntl.flock(lock, fcntl.LOCK_EX)
        warnings.simplefilter("ignore")
        import pgserver

        server = pgserver.get_server(folder, cleanup_mode="delete")
    yield server.get_uri()
    server.cleanup()


@pytest.fixture
def private_dir() -> Iterator[Path]:
    """A folder for a PostgreSQL data directory: not under pytest's tmp folders, which a
    concurrent pytest run prunes while this one still uses them."""
    folder = Path(tempfile.mkdtemp(prefix="csms-test-"))
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


def with_database(url: str, name: str) -> str:
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path="/" + name))


@pytest.fixture
async def database_url(postgres_url: str) -> AsyncIterator[str]:
    name = "t_" + uuid.uuid4().hex[:12]
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f"CREATE DATABASE {name}")
    await admin.close()
    yield with_database(postgres_url, name)
    admin = await asyncpg.connect(postgres_url)
    await admin.execute(f"DROP DATABASE {name} WITH (FORCE)")
    await admin.close()


@pytest.fixture
def config(database_url: str, tmp_path: Path) -> Config:
    base = load(None, database_url=database_url, data_dir=str(tmp_path / "unused"))
    return replace(base, server=ServerConfig(host="127.0.0.1", port=0, call_timeout_s=5.0),
                   api=ApiConfig(enabled=False))  # tests/api/ turn it on


@pytest.fixture
async def csms(config: Config) -> AsyncIterator[Csms]:
    app = await Csms.start(config)
    yield app
    await app.stop()


@pytest.fixture
def url(csms: Csms) -> str:
    return f"ws://127.0.0.1:{csms.ocpp.port}/ocpp"
