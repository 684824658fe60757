"""The adaptive gathering rule: callers that arrive together share one batch.

One flush loop (an asyncio task) takes whatever is queued, up to `max_batch_size`. A lone
caller is served at once. When more than one caller is queued (evidence of concurrency) the
loop keeps gathering for as long as new callers keep arriving, bounded by
`max_queue_delay`, and stops at the first moment nobody new came: it never waits idly.
While one batch runs, the next accumulates, so under load batches grow by themselves.

The queue is bounded: past `max_queue_size` waiting items, `submit` raises `Overloaded`
at once instead of letting latency grow without limit.

`AdaptiveBatcher` is generic over what is batched: the model's rows
(`model.batcher.MicroBatcher`) and the database's submissions (`db.write_batcher`) use
the same rule, so it lives here, below both, and imports neither.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Generic, TypeVar

In = TypeVar("In")
Out = TypeVar("Out")


class Overloaded(RuntimeError):
    """The queue is full; the caller should retry later (the API answers 503)."""


class BatcherClosed(RuntimeError):
    """The batcher was closed before this item was accepted."""


@dataclass
class BatchStats:
    """Counters kept by the batcher; the metrics endpoint reads them."""

    batches: int = 0
    items: int = 0
    failed_batches: int = 0
    bad_output_batches: int = 0  # of failed_batches: non-finite or misshapen outputs
    rejected: int = 0
    inference_seconds: float = 0.0
    batch_sizes: dict[int, int] = field(default_factory=dict)

    def record(self, size: int, seconds: float) -> None:
        self.batches += 1
        self.items += size
        self.inference_seconds += seconds
        self.batch_sizes[size] = self.batch_sizes.get(size, 0) + 1


@dataclass(frozen=True)
class BatchSettings:
    """The batcher's knobs; defaults suit a sub-millisecond model on a small machine."""

    max_batch_size: int = 64
    max_queue_delay: float = 0.0005  # seconds; only ever waited when callers are queued
    max_queue_size: int = 2048
    # Batches the model runs faster than this run on the event loop (see MicroBatcher).
    max_inline_seconds: float = 0.0002


class AdaptiveBatcher(Generic[In, Out]):
    """The gathering rule, for items of any kind: one flush loop takes what is queued (up to
    `max_batch_size`), gathers more only while callers keep arriving (see `_fill`), and
    hands the batch to `_run_batch`, which must settle every future of it."""

    what = "batch"  # names the queue in the Overloaded message

    def __init__(self, settings: BatchSettings, stats: BatchStats | None = None) -> None:
        if settings.max_batch_size < 1 or settings.max_queue_size < 1:
            raise ValueError("max_batch_size and max_queue_size must be at least 1")
        self._settings = settings
        self.stats = stats if stats is not None else BatchStats()
        self._pending: deque[tuple[In, asyncio.Future[Out]]] = deque()
        self._wakeup = asyncio.Event()
        self._closing = False
        self._task: asyncio.Task[None] | None = None

    @property
    def queue_depth(self) -> int:
        return len(self._pending)

    async def submit(self, item: In) -> Out:
        """Queue one item and wait for its result."""
        if self._closing:
            raise BatcherClosed("the batcher is closed")
        if len(self._pending) >= self._settings.max_queue_size:
            self.stats.rejected += 1
            raise Overloaded(f"{self.what} queue is full ({self._settings.max_queue_size} waiting)")
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._flush_loop())
        future: asyncio.Future[Out] = asyncio.get_running_loop().create_future()
        self._pending.append((item, future))
        self._wakeup.set()
        return await future

    async def close(self) -> None:
        """Stop accepting items, finish everything queued, then stop the loop."""
        self._closing = True
        self._wakeup.set()
        if self._task is not None:
            await self._task

    async def _flush_loop(self) -> None:
        while True:
            if not self._pending:
                if self._closing:
                    return
                self._wakeup.clear()
                await self._wakeup.wait()
                continue
            batch = self._take(self._settings.max_batch_size)
            if (
                1 < len(batch) < self._settings.max_batch_size
                and self._settings.max_queue_delay > 0
            ):
                await self._fill(batch)
            if batch:
                await self._run_batch(batch)

    def _take(self, limit: int) -> list[tuple[In, asyncio.Future[Out]]]:
        batch: list[tuple[In, asyncio.Future[Out]]] = []
        while self._pending and len(batch) < limit:
            item, future = self._pending.popleft()
            if not future.cancelled():  # the caller went away (client disconnected)
                batch.append((item, future))
        return batch

    async def _fill(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        """Gather more items while callers keep arriving, for at most `max_queue_delay`.

        Each round yields the event loop once, so requests that are already parsed and
        about to submit join this batch. The first round that brings nobody ends the wait:
        we never sit idle hoping for callers that are not coming.
        """
        deadline = time.perf_counter() + self._settings.max_queue_delay
        limit = self._settings.max_batch_size
        while len(batch) < limit and not self._closing and time.perf_counter() < deadline:
            await asyncio.sleep(0)
            if not self._pending:
                return
            batch.extend(self._take(limit - len(batch)))

    async def _run_batch(self, batch: list[tuple[In, asyncio.Future[Out]]]) -> None:
        raise NotImplementedError
