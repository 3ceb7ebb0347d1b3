"""Running the API with uvicorn inside the CSMS's event loop, started and stopped with it."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import structlog
import uvicorn
from fastapi import FastAPI

from csms.config import ApiConfig

log = structlog.get_logger()


class _EmbeddedServer(uvicorn.Server):
    """uvicorn, minus its signal handling: the CSMS process owns SIGINT/SIGTERM and stops
    the API itself (uvicorn would replace those handlers and re-raise the signal after)."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ApiServer:
    def __init__(self, config: ApiConfig, app: FastAPI, stopping: asyncio.Event) -> None:
        self.config = config
        self.app = app
        self.stopping = stopping
        self._server: _EmbeddedServer | None = None
        self._task: asyncio.Task[None] | None = None
        self._socket: socket.socket | None = None
        self.port = 0  # the bound port, once started

    async def start(self) -> None:
        # Bound here rather than by uvicorn: a port in use is an OSError for the caller,
        # where uvicorn would call sys.exit; and port 0 gives a free port we can report.
        family = socket.AF_INET6 if ":" in self.config.host else socket.AF_INET
        self._socket = socket.create_server((self.config.host, self.config.port), family=family,
                                            reuse_port=self.config.reuse_port)
        self.port = int(self._socket.getsockname()[1])
        self._server = _EmbeddedServer(uvicorn.Config(
            self.app, log_config=None, access_log=False, lifespan="off",
            timeout_graceful_shutdown=2,
        ))
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]),
                                         name="http-api")
        while not self._server.started:
            if self._task.done():
                self._socket.close()
                await self._task  # raises what stopped it
                raise RuntimeError("the HTTP API stopped while starting")
            await asyncio.sleep(0.01)
        log.info("api.listening", host=self.config.host, port=self.port)

    async def stop(self) -> None:
        self.stopping.set()  # live feeds end, so their connections can close
        if self._server is not None and self._task is not None:
            self._server.should_exit = True
            await asyncio.gather(self._task, return_exceptions=True)
        if self._socket is not None:
            self._socket.close()
