"""The HTTP API's first line: no request reaches a route holding what the CSMS cannot
compute with or store, and no hostile input turns into a 500.

`InputGuard` (an ASGI middleware, so it covers every route, those added later included)
answers 422 to a path or query holding NUL or a lone surrogate, and to a JSON body that
csms.jsontext refuses (NaN, Infinity, 1e309, 20+ digit integers, deep nesting, NUL, lone
surrogates); a body above `MAX_BODY_BYTES` is a 413. Behind it, the models bound each
field (ge/le, max_length, allow_inf_nan=False), and `install` maps what still slips
through (a value PostgreSQL refuses; a 422 that echoes an unencodable input) to a 422.
Bounds: docs/decisions/0021-csms-input-bounds.md.
"""

from __future__ import annotations

import json
import math
from typing import Any
from urllib.parse import unquote

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from csms import jsontext, metrics

log = structlog.get_logger()

MAX_BODY_BYTES = 1 << 20  # the largest body (a tariff, a charging profile) is a few kB


def _detail(where: str, problem: str) -> dict[str, Any]:
    return {"detail": [{"loc": [where], "msg": problem, "type": "value_error"}]}


class InputGuard:
    def __init__(self, app: ASGIApp, max_body_bytes: int = MAX_BODY_BYTES) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if jsontext.unstorable(scope.get("path", "")):
            await _reply(send, 422, _detail("path", "the path holds NUL or a lone surrogate"))
            return
        query = unquote(scope.get("query_string", b"").decode("latin-1"))
        if jsontext.unstorable(query):
            await _reply(send, 422, _detail("query", "the query holds NUL or a lone surrogate"))
            return
        if scope.get("method") not in ("POST", "PUT", "PATCH"):
            await self.app(scope, receive, send)
            return
        body, more = b"", True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away
                return
            body += message.get("body", b"")
            more = message.get("more_body", False)
            if len(body) > self.max_body_bytes:
                await _reply(send, 413, _detail("body", f"over {self.max_body_bytes} bytes"))
                return
        if problem := _body_problem(body):
            await _reply(send, 422, _detail("body", problem))
            return
        sent = False

        async def replay() -> Message:
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        await self.app(scope, replay, send)


def _body_problem(body: bytes) -> str | None:
    if not body:
        return None
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError:
        return "the body is not UTF-8"
    try:
        jsontext.loads(text)
    except jsontext.Unholdable as exc:
        return exc.problem
    except ValueError:
        return None  # not JSON: the route says so (a 422 naming the error)
    return None


async def _reply(send: Send, status: int, content: dict[str, Any]) -> None:
    body = json.dumps(content).encode()
    await send({"type": "http.response.start", "status": status, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
    ]})
    await send({"type": "http.response.body", "body": body})


def _printable(value: Any) -> Any:
    """`value` with what JSON or UTF-8 cannot carry written out (a 422 echoes the input)."""
    if isinstance(value, float) and not math.isfinite(value):
        return repr(value)
    if isinstance(value, str) and jsontext.unstorable(value):
        return value.encode("utf-8", "backslashreplace").decode().replace("\x00", "\\x00")
    if isinstance(value, dict):
        return {_printable(k): _printable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_printable(v) for v in value]
    return value


def install(app: FastAPI) -> None:
    """The guard and the error handlers behind it."""
    app.add_middleware(InputGuard)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        route = getattr(request.scope.get("route"), "path", "?")
        metrics.api_refused.labels(route).inc()
        log.info("api.refused", method=request.method, route=route,
                 fields=[".".join(map(str, e.get("loc", ()))) for e in exc.errors()][:5])
        return JSONResponse({"detail": _printable(jsonable_encoder(exc.errors()))},
                            status_code=422)

    @app.exception_handler(asyncpg.DataError)
    async def refused_by_database(request: Request, exc: asyncpg.DataError) -> JSONResponse:
        return JSONResponse(_detail("request", "a value is out of range or unstorable"),
                            status_code=422)

    @app.exception_handler(UnicodeError)
    async def unencodable(request: Request, exc: UnicodeError) -> JSONResponse:
        return JSONResponse(_detail("request", "a value holds an unencodable character"),
                            status_code=422)
