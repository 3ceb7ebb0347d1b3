"""`csms serve --workers N`: N worker processes on one machine, sharing the OCPP and HTTP
ports (SO_REUSEPORT: the kernel spreads new connections over them), one database and one
broker. This parent holds what the workers share and starts, restarts and stops them.

Without `--broker-url` the parent starts a nats-server on loopback (as it starts the
embedded PostgreSQL without `--database-url`) and this machine is the whole cluster; with
one, this machine is one node of several (deploy/).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import tempfile
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import structlog

from csms.clock import Clock
from csms.cluster.broker import EmbeddedBroker, end_with_parent, free_port
from csms.config import Config
from csms.store import Store, open_database

log = structlog.get_logger()

START_TIMEOUT_S = 120.0  # a worker opens its pool, runs no migration, binds: seconds
RESTARTS_PER_MINUTE = 5  # more crashes than this: something is wrong, stop everything
READY = "CSMS listening"
_draining: set[asyncio.Task[None]] = set()  # workers' stdout after READY, read to its end


@dataclass(frozen=True)
class Shared:
    """What every worker is started with."""

    database_url: str
    broker_url: str
    port: int
    api_port: int


WorkerArgv = Callable[[int, Shared], list[str]]


async def run_workers(config: Config, count: int, argv: WorkerArgv, clock: Clock,
                      out: Callable[[str], None]) -> int:
    db = await open_database(config.database.url, Path(config.database.data_dir),
                             min_size=1, max_size=2)
    broker: EmbeddedBroker | None = None
    metrics_dir = tempfile.mkdtemp(prefix="csms-metrics-")
    workers: dict[int, asyncio.subprocess.Process] = {}
    try:
        if not config.cluster.broker_url:  # this machine is the whole cluster
            store = Store(db.pool)
            await store.stations.mark_all_offline(clock.now())
            await store.close()
            broker = await EmbeddedBroker.start()
        shared = Shared(db.url, config.cluster.broker_url or (broker.url if broker else ""),
                        config.server.port or free_port(config.server.host),
                        config.api.port or free_port(config.api.host))
        env = {**os.environ, "PROMETHEUS_MULTIPROC_DIR": metrics_dir}
        for index in range(count):
            workers[index] = await _spawn(argv(index, shared), env)
        out(f"CSMS listening on ws://{config.server.host}:{shared.port}/ocpp/<stationId> "
            f"({count} workers, broker {shared.broker_url})")
        if config.api.enabled:
            out(f"HTTP API on http://{config.api.host}:{shared.api_port}/ (docs: /docs)")
        return await _supervise(workers, lambda i: _spawn(argv(i, shared), env), clock)
    finally:
        await _stop_all(workers)
        if broker is not None:
            await broker.stop()
        await db.close()
        shutil.rmtree(metrics_dir, ignore_errors=True)


async def _spawn(argv: list[str], env: dict[str, str]) -> asyncio.subprocess.Process:
    """Start a worker and wait for its READY line; its later output is passed through."""
    # a session of its own: Ctrl-C reaches this parent only, which stops the workers in
    # order (SIGTERM), rather than every process at once while this one restarts them
    process = await asyncio.create_subprocess_exec(*argv, env=env, start_new_session=True,
                                                   stdout=asyncio.subprocess.PIPE,
                                                   preexec_fn=end_with_parent)
    assert process.stdout is not None
    try:
        while True:
            line = await asyncio.wait_for(process.stdout.readline(), START_TIMEOUT_S)
            if not line:
                raise RuntimeError(f"a worker exited while starting ({await process.wait()})")
            if line.startswith(READY.encode()):
                break
    except BaseException:
        await _stop_all({0: process})
        raise
    draining = asyncio.create_task(_drain(process.stdout))
    _draining.add(draining)
    draining.add_done_callback(_draining.discard)
    return process


async def _drain(stream: asyncio.StreamReader) -> None:
    while await stream.readline():
        pass


async def _supervise(workers: dict[int, asyncio.subprocess.Process],
                     respawn: Callable[[int], Awaitable[asyncio.subprocess.Process]],
                     clock: Clock) -> int:
    """Until SIGINT/SIGTERM (0); a worker that dies is restarted, unless they keep dying."""
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    crashes: list[datetime] = []
    stopping = asyncio.create_task(stop.wait())
    try:
        while True:
            waits = {asyncio.create_task(p.wait()): i for i, p in workers.items()}
            done, _ = await asyncio.wait({stopping, *waits}, return_when=asyncio.FIRST_COMPLETED)
            for task in waits:
                task.cancel()
            if stopping in done or stop.is_set():
                return 0
            for task in done:
                index = waits[task]
                log.error("cluster.worker_died", worker=index, code=task.result())
                now = clock.now()
                crashes = [t for t in crashes if now - t < timedelta(minutes=1)] + [now]
                if len(crashes) > RESTARTS_PER_MINUTE:
                    log.error("cluster.workers_keep_dying", crashes=len(crashes))
                    return 1
                await clock.sleep(1.0)
                if stop.is_set():
                    return 0
                workers[index] = await respawn(index)
    finally:
        stopping.cancel()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)


async def _stop_all(workers: dict[int, asyncio.subprocess.Process]) -> None:
    for process in workers.values():
        if process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                process.terminate()
    for process in workers.values():
        try:
            await asyncio.wait_for(process.wait(), 30)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
