"""A headless Chromium driven by Playwright, and the CSMS with its API for the pages.

The browser is Debian's `chromium` (installed by .ci/run), not a Playwright download: set
CHROMIUM to use another binary. A machine without it fails these tests rather than
skipping them, so a missing browser cannot pass unnoticed.
"""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path

import pytest
from playwright.async_api import Browser, async_playwright

from csms.api.auth import new_token
from csms.app import Csms
from csms.config import ApiConfig, Config
from csms.store.api_tokens import ApiTokenRepo
from tests.e2e.conftest import make_station  # noqa: F401  (a fixture, for stations)


def chromium_path() -> str:
    path = os.environ.get("CHROMIUM") or shutil.which("chromium") \
        or shutil.which("chromium-browser")
    if not path or not Path(path).exists():
        pytest.fail("no chromium found: the dashboard's browser tests need Debian's "
                    "`chromium` package (apt-get install chromium) or CHROMIUM=/path/to/it",
                    pytrace=False)
    return path


@pytest.fixture(scope="session")
async def browser() -> AsyncIterator[Browser]:
    async with async_playwright() as pw:
        # --no-sandbox: CI runs as root, where Chromium's sandbox refuses to start
        found = await pw.chromium.launch(executable_path=chromium_path(), headless=True,
                                         args=["--no-sandbox", "--disable-gpu"])
        yield found
        await found.close()


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, api=ApiConfig(enabled=True, host="127.0.0.1", port=0))


async def add_token(csms: Csms, role: str, nodes: tuple[str, ...] = ()) -> str:
    token, hashed = new_token()
    name = f"dashboard-{role}-{secrets.token_hex(4)}"
    assert await ApiTokenRepo(csms.store.pool).add(name, role, hashed, csms.clock.now(), nodes)
    return token
