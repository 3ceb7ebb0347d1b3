"""Issue 11, defect 5: hostile input to the HTTP API is a 422 (or 404), never a 500.

`test_every_operation_refuses_hostile_values` walks the OpenAPI document, so a route added
later is covered without touching this file: every path parameter, query parameter and
body field of every operation gets NUL, lone surrogates, NaN, infinities and huge
integers in turn."""

from __future__ import annotations

import json
import re
from typing import Any

import httpx

from tests.api.conftest import Client

# A lone surrogate cannot be written in UTF-8: in a URL it arrives as its CESU-8 bytes, in
# JSON as an escape.
PATH_VALUES = ["A%00B", "%ED%A0%80"]
QUERY_VALUES = ["x%00y", "%ED%A0%80", "NaN", "1e309", "9" * 30]
BODY_VALUES = ['"A\\u0000B"', '"\\ud800"', "NaN", "-Infinity", "1e309", "9" * 30]
GOOD = {"string": "x", "integer": 1, "number": 1.0, "boolean": False}


def _resolve(spec: dict[str, Any], schema: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in schema:
        schema = spec["components"]["schemas"][schema["$ref"].rsplit("/", 1)[1]]
    return schema


def _example(spec: dict[str, Any], schema: dict[str, Any], depth: int = 0) -> Any:
    """A small value the schema accepts (best effort: the walk only needs plausible bodies)."""
    schema = _resolve(spec, schema)
    for key in ("anyOf", "oneOf", "allOf"):
        if key in schema:
            options = [s for s in schema[key] if _resolve(spec, s).get("type") != "null"]
            return _example(spec, options[0], depth) if options else None
    if "enum" in schema:
        return schema["enum"][0]
    if "const" in schema:
        return schema["const"]
    kind = schema.get("type")
    if kind == "object" or "properties" in schema:
        if depth > 4:
            return {}
        return {name: _example(spec, sub, depth + 1)
                for name, sub in schema.get("properties", {}).items()
                if name in schema.get("required", [])}
    if kind == "array":
        return []
    if kind == "string" and schema.get("format") == "date-time":
        return "2026-11-25T18:00:00+00:00"
    if kind == "string" and schema.get("pattern", "").startswith("^(Z|"):
        return "Z"
    if kind in ("integer", "number"):
        return max(GOOD[kind], schema.get("minimum", 0), schema.get("exclusiveMinimum", 0) + 1)
    return GOOD.get(str(kind), "x")


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    if isinstance(value, dict):
        return [p for k, v in value.items() for p in _leaves(v, (*path, k))] or [path]
    return [path]


def _with(body: Any, path: tuple[Any, ...], raw: str) -> str:
    """`body` as JSON text with the value at `path` replaced by the raw JSON text `raw`."""
    marker = "__HOSTILE__"
    if not path:
        return raw
    copy = json.loads(json.dumps(body))
    node = copy
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = marker
    return json.dumps(copy).replace(f'"{marker}"', raw)


def _fill(template: str, params: dict[str, str]) -> str:
    return re.sub(r"\{(\w+)\}", lambda m: params.get(m.group(1), "x"), template)


def _operations(spec: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(path, method.upper(), op) for path, item in spec["paths"].items()
            for method, op in item.items() if method in ("get", "post", "put", "patch", "delete")]


async def _send(http: httpx.AsyncClient, method: str, url: str, body: str | None,
                seen: list[str], label: str) -> int:
    headers = {"Content-Type": "application/json"} if body is not None else {}
    # streamed: a live feed a valid query opens is never read to its end
    async with http.stream(method, url, content=body, headers=headers) as reply:
        if reply.status_code >= 500:
            text = (await reply.aread()).decode(errors="replace")
            seen.append(f"{reply.status_code} {method} {url} {label} {text[:200]}")
    return reply.status_code


async def test_every_operation_refuses_hostile_values(client: Client) -> None:
    http = client("admin")
    spec = (await http.get("/openapi.json")).json()
    failures: list[str] = []
    requests = 0
    for template, method, op in _operations(spec):
        params = [p for p in op.get("parameters", []) if "$ref" not in p]
        path_params = [p["name"] for p in params if p["in"] == "path"]
        query_params = [p["name"] for p in params if p["in"] == "query"]
        base = {name: "CS001" for name in path_params}
        for name in path_params:
            for value in PATH_VALUES:
                status = await _send(http, method, _fill(template, {**base, name: value}),
                                     "{}" if method in ("POST", "PUT", "PATCH") else None,
                                     failures, f"path {name}")
                requests += 1
                if "%00" in value:
                    assert status == 422, (method, template, name, value, status)
        for name in query_params:
            for value in QUERY_VALUES:
                url = f"{_fill(template, base)}?{name}={value}"
                status = await _send(http, method, url, None if method in ("GET", "DELETE")
                                     else "{}", failures, f"query {name}")
                requests += 1
                if "%00" in value:
                    assert status == 422, (method, template, name, value, status)
        content = op.get("requestBody", {}).get("content", {}).get("application/json")
        if content is None:
            continue
        body = _example(spec, content["schema"])
        schema = _resolve(spec, content["schema"])
        fields = _leaves(body) + [(name,) for name in schema.get("properties", {})
                                  if name not in (body or {})]
        # every value in the first field, then one value per field, in turn (time-boxed)
        variants = [(fields[0], raw) for raw in BODY_VALUES] + [
            (field, BODY_VALUES[i % len(BODY_VALUES)]) for i, field in enumerate(fields[1:])]
        for field, raw in variants:
            status = await _send(http, method, _fill(template, base),
                                 _with(body, field, raw), failures, f"body {field}={raw}")
            requests += 1
            assert status in (404, 413, 422), (method, template, field, raw, status)
    assert not failures, "\n".join(failures)
    assert requests > 200  # the walk reached the API's operations


async def test_named_cases_from_the_issue_are_422(client: Client) -> None:
    http = client("admin")
    cases = [
        ("GET", "/api/stations/CS%00001", None),
        ("GET", "/api/transactions?id_token=A%00B", None),
        ("GET", "/api/transactions/CS001/TX%ED%A0%80", None),
        ("PUT", "/api/sessions/CS001/TX1", '{"energy_wanted_wh": NaN}'),
        ("PUT", "/api/sessions/CS001/TX\\u0000", '{"energy_wanted_wh": 1000}'),
        ("POST", "/api/id-tokens", '{"id_token": "A\\u0000", "type": "ISO14443"}'),
        ("POST", "/api/id-tokens", '{"id_token": "\\ud800", "type": "ISO14443"}'),
        ("POST", "/api/sites/test-small/events",
         '{"node": "transformer", "kind": "limit", "kw": 1e309}'),
        ("PUT", "/api/sites/test-small/nodes/transformer/limit", '{"limit_kw": NaN}'),
    ]
    for method, url, body in cases:
        headers = {"Content-Type": "application/json"} if body else {}
        reply = await http.request(method, url, content=body, headers=headers)
        assert reply.status_code in (404, 422), (method, url, reply.status_code, reply.text)
        reply.json()  # a JSON error body, not a crash page


async def test_an_oversized_body_is_413(client: Client) -> None:
    reply = await client("admin").post(
        "/api/id-tokens", content='{"id_token": "' + "A" * (2 << 20) + '"}',
        headers={"Content-Type": "application/json"})
    assert reply.status_code == 413
