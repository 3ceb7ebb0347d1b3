"""The CSMS with its HTTP API on a free port, API tokens for every role, and HTTP clients
that talk to it over a real socket."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import replace

import httpx
import pytest

from csms.api.auth import ROLES, new_token
from csms.app import Csms
from csms.config import ApiConfig, Config
from csms.store.api_tokens import ApiTokenRepo
from tests.e2e.conftest import make_station  # noqa: F401  (a fixture, for commands)

Client = Callable[[str | None], httpx.AsyncClient]


@pytest.fixture
def config(config: Config) -> Config:
    return replace(config, api=ApiConfig(enabled=True, host="127.0.0.1", port=0))


@pytest.fixture
def base_url(csms: Csms) -> str:
    assert csms.api is not None
    return f"http://127.0.0.1:{csms.api.port}"


@pytest.fixture
async def api_tokens(csms: Csms) -> dict[str, str]:
    """One token per role, by role name."""
    repo = ApiTokenRepo(csms.store.pool)
    tokens = {}
    for role in ROLES:
        token, hashed = new_token()
        nodes = ("site-1/transformer",) if role == "grid" else ()
        assert await repo.add(f"test-{role}", role, hashed, csms.clock.now(), nodes)
        tokens[role] = token
    return tokens


@pytest.fixture
async def client(base_url: str, api_tokens: dict[str, str]) -> AsyncIterator[Client]:
    """`client("operator")`: an HTTP client with that role's token; `client(None)`: none."""
    opened: list[httpx.AsyncClient] = []

    def make(role: str | None) -> httpx.AsyncClient:
        headers = {"Authorization": f"Bearer {api_tokens[role]}"} if role else {}
        c = httpx.AsyncClient(base_url=base_url, headers=headers, timeout=15.0)
        opened.append(c)
        return c

    yield make
    for c in opened:
        await c.aclose()


@pytest.fixture
def admin(client: Client) -> httpx.AsyncClient:
    return client("admin")
