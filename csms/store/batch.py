"""Group commit and group read: many callers' rows in one statement.

A reconnect storm or thousands of meter values per minute would otherwise cost one round
trip (and one socket write, the CSMS's largest cost in a storm) per station. With group
commit each caller awaits `write()`; one task writes everything queued meanwhile, so a
handler still only answers after its data is stored. Handlers validate rows before they
queue them; should a batch fail all the same, its callers' rows are written again one
caller at a time, so only the caller whose rows fail hears of it (one station's bad row
never fails another station's write). Group read does the same for lookups by key.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

import asyncpg
import structlog

log = structlog.get_logger()

T = TypeVar("T")

# Errors a row's content causes (a value PostgreSQL refuses, one asyncpg cannot encode):
# worth retrying the batch's callers apart. Others (a lost connection) fail every caller.
ROW_ERRORS = (
    asyncpg.DataError,
    asyncpg.IntegrityConstraintViolationError,
    asyncpg.exceptions.ProgramLimitExceededError,
    ValueError,
    TypeError,
    OverflowError,
)


class GroupCommit(Generic[T]):
    def __init__(self, flush: Callable[[list[T]], Awaitable[None]], name: str,
                 max_batch: int = 20_000) -> None:
        self.flush = flush
        self.name = name
        self.max_batch = max_batch
        self._queue: deque[tuple[Sequence[T], asyncio.Future[None]]] = deque()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.batches = 0
        self.items_written = 0

    async def write(self, items: Sequence[T]) -> None:
        if not items:
            return
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._queue.append((items, fut))
        self._wake.set()
        await fut

    async def close(self) -> None:
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None
        for _, fut in self._queue:
            if not fut.done():
                fut.set_exception(RuntimeError(f"{self.name} closed"))
        self._queue.clear()

    async def _run(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            while self._queue:
                batch: list[tuple[Sequence[T], asyncio.Future[None]]] = []
                count = 0
                while self._queue and count < self.max_batch:
                    entry = self._queue.popleft()
                    batch.append(entry)
                    count += len(entry[0])
                await self._flush_batch(batch)

    async def _flush_batch(self, batch: list[tuple[Sequence[T], asyncio.Future[None]]]) -> None:
        items = [item for entries, _ in batch for item in entries]
        try:
            await self.flush(items)
        except Exception as exc:
            if len(batch) == 1:
                log.error("store.batch_failed", writer=self.name, items=len(items),
                          error=str(exc))
                self._settle(batch[0][1], exc)
                return
            if not isinstance(exc, ROW_ERRORS):  # e.g. the database is down: all fail alike
                log.error("store.batch_failed", writer=self.name, items=len(items),
                          error=str(exc))
                for _, fut in batch:
                    self._settle(fut, exc)
                return
            log.warning("store.batch_split", writer=self.name, callers=len(batch),
                        error=str(exc))
            half = len(batch) // 2  # halves: a few round trips find the guilty caller
            await self._flush_batch(batch[:half])
            await self._flush_batch(batch[half:])
            return
        self.batches += 1
        self.items_written += len(items)
        for _, fut in batch:
            self._settle(fut, None)

    @staticmethod
    def _settle(fut: asyncio.Future[None], exc: Exception | None) -> None:
        if fut.done():
            return
        if exc is None:
            fut.set_result(None)
        else:
            fut.set_exception(exc)


K = TypeVar("K")
V = TypeVar("V")


class GroupRead(Generic[K, V]):
    """Concurrent lookups by key answered by one query: in a reconnect storm thousands of
    handshakes each need their station's row at once. A lookup that arrives while a
    query is running joins the next one."""

    def __init__(self, fetch: Callable[[list[K]], Awaitable[dict[K, V]]], name: str) -> None:
        self.fetch = fetch
        self.name = name
        self._waiting: dict[K, list[asyncio.Future[V | None]]] = {}
        self._task: asyncio.Task[None] | None = None

    async def get(self, key: K) -> V | None:
        fut: asyncio.Future[V | None] = asyncio.get_running_loop().create_future()
        self._waiting.setdefault(key, []).append(fut)
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name=self.name)
        return await fut

    async def _run(self) -> None:
        try:
            while self._waiting:
                waiting, self._waiting = self._waiting, {}
                try:
                    found = await self.fetch(list(waiting))
                except BaseException as exc:
                    for futs in waiting.values():
                        for fut in futs:
                            if not fut.done():
                                fut.set_exception(exc)
                    if not isinstance(exc, Exception):
                        raise
                    continue
                for key, futs in waiting.items():
                    for fut in futs:
                        if not fut.done():
                            fut.set_result(found.get(key))
        finally:
            self._task = None
