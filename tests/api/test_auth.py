"""API tokens and roles: 401 without a valid token, 403 for a role without the permission,
and each role's reach over every resource (the matrix from csms/api/auth.py)."""

from __future__ import annotations

import re
import subprocess
import sys

import httpx
import pytest

from csms.app import Csms
from csms.store.api_tokens import ApiTokenRepo
from tests.api.conftest import Client

READ = ["admin", "operator", "viewer"]
WRITE = ["admin", "operator"]

# (method, path, body, roles allowed). Bodies are valid, so an allowed role gets past auth
# to the route itself (a 2xx or a 404/409 about the resource, never 401/403).
MATRIX: list[tuple[str, str, dict | None, list[str]]] = [
    ("GET", "/api/stations", None, READ),
    ("GET", "/api/stations/NOPE", None, READ),
    ("POST", "/api/stations", {"id": "M1", "no_password": True}, WRITE),
    ("DELETE", "/api/stations/NOPE", None, WRITE),
    ("GET", "/api/id-tokens", None, READ),
    ("POST", "/api/id-tokens", {"id_token": "M1"}, WRITE),
    ("PUT", "/api/id-tokens/ISO14443/M2", {"status": "Blocked"}, WRITE),
    ("DELETE", "/api/id-tokens/ISO14443/NOPE", None, WRITE),
    ("GET", "/api/transactions", None, READ),
    ("GET", "/api/transactions/S/T", None, READ),
    ("GET", "/api/sessions", None, READ),
    ("PUT", "/api/sessions/S/T", {"charge_now": True}, WRITE),
    ("POST", "/api/stations/NOPE/commands/reset", {"type": "OnIdle"}, WRITE),
    ("GET", "/metrics", None, READ),
    ("GET", "/api/sites", None, ["admin", "operator", "viewer", "grid"]),
    ("GET", "/api/whoami", None, ["admin", "operator", "viewer", "grid"]),
]


async def test_no_token_or_a_wrong_one_is_401(client: Client) -> None:
    anonymous = client(None)
    for method, path, body, _ in MATRIX:
        reply = await anonymous.request(method, path, json=body)
        assert reply.status_code == 401, (method, path)
        assert reply.headers["www-authenticate"] == "Bearer"
    wrong = httpx.AsyncClient(base_url=str(anonymous.base_url),
                              headers={"Authorization": "Bearer csms_not-a-token"})
    async with wrong:
        reply = await wrong.get("/api/stations")
    assert reply.status_code == 401 and "unknown" in reply.json()["detail"]
    basic = await anonymous.get("/api/stations", auth=("admin", "secret"))
    assert basic.status_code == 401


@pytest.mark.parametrize("role", ["admin", "operator", "grid", "viewer"])
async def test_role_matrix(client: Client, role: str) -> None:
    caller = client(role)
    for method, path, body, allowed in MATRIX:
        reply = await caller.request(method, path, json=body)
        if role in allowed:
            assert reply.status_code not in (401, 403), (role, method, path, reply.text)
        else:
            assert reply.status_code == 403, (role, method, path, reply.text)
            assert "may not" in reply.json()["detail"]


async def test_whoami_and_health(client: Client) -> None:
    me = (await client("grid").get("/api/whoami")).json()
    assert me == {"name": "test-grid", "role": "grid", "nodes": ["site-1/transformer"],
                  "permissions": ["carbon:read", "carbon:write", "limits:write",
                                  "sites:read"]}
    assert (await client(None).get("/api/health")).json() == {"status": "ok"}


async def test_a_removed_token_stops_working_at_once(csms: Csms, client: Client) -> None:
    viewer = client("viewer")
    assert (await viewer.get("/api/stations")).status_code == 200
    repo = ApiTokenRepo(csms.store.pool)
    assert await repo.remove("test-viewer")
    assert (await viewer.get("/api/stations")).status_code == 401
    assert not await repo.remove("test-viewer")
    assert not await repo.add("test-admin", "viewer", b"x" * 32, csms.clock.now())  # name taken


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "csms.cli", *args],
                          capture_output=True, text=True, timeout=60)


async def test_cli_makes_a_token_that_is_stored_only_as_a_hash(
    csms: Csms, client: Client, database_url: str
) -> None:
    db = ["--database-url", database_url]
    added = cli("api-tokens", "add", "ops-desk", "--role", "operator", *db)
    assert added.returncode == 0, added.stderr
    token = added.stdout.strip().splitlines()[-1]
    assert token.startswith("csms_") and len(token) > 40
    stored = await csms.store.pool.fetchval(
        "SELECT token_hash FROM api_tokens WHERE name = 'ops-desk'")
    assert token.encode() not in stored and len(stored) == 32  # a SHA-256, not the token

    async with httpx.AsyncClient(base_url=str(client(None).base_url),
                                 headers={"Authorization": f"Bearer {token}"}) as ops:
        assert (await ops.get("/api/whoami")).json()["role"] == "operator"
        assert cli("api-tokens", "add", "dso", "--role", "grid", *db).returncode == 2  # no node
        listed = cli("api-tokens", "list", *db).stdout
        assert "ops-desk" in listed and "operator" in listed and token not in listed
        assert cli("api-tokens", "remove", "ops-desk", *db).returncode == 0
        assert (await ops.get("/api/whoami")).status_code == 401


async def test_every_documented_operation_needs_a_token(client: Client) -> None:
    """Through HTTP, not the app's route table (routers included in FastAPI are not listed
    there as routes): every operation in the OpenAPI document but the health check
    answers 401 to a request without a token, before it looks at the path or the body."""
    http = client(None)
    spec = (await http.get("/openapi.json")).json()
    operations = [(method.upper(), path) for path, item in spec["paths"].items()
                  for method in item if method in ("get", "post", "put", "patch", "delete")]
    assert len(operations) > 40  # the whole API, not just the app's own few routes
    open_ops = []
    for method, path in operations:
        concrete = re.sub(r"\{[^}]+\}", "1", path)
        reply = await http.request(method, concrete, json={})
        if reply.status_code != 401:
            open_ops.append((method, path, reply.status_code))
    assert open_ops == [("GET", "/api/health", 200)]


async def test_dashboard_pages_send_a_visitor_without_a_token_to_sign_in(
        client: Client) -> None:
    http = client(None)
    for page in ("/", "/sites/site-1"):
        reply = await http.get(page)
        assert reply.status_code in (302, 303, 307), page
        assert reply.headers["location"].startswith("/login"), page
    assert (await http.get("/login")).status_code == 200
