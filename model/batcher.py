"""Adaptive micro-batching: concurrent callers share one model `run` call.

The batcher knows nothing about hobbies: it batches rows of a 2-D float32 array. One flush
loop (an asyncio task) takes whatever is queued, up to `max_batch_size`, and runs it in the
executor so inference never blocks the event loop, except for batches of at most
`inline_rows` rows, which run on the event loop itself (see `MicroBatcher`). A lone request
runs at once. When more than one caller is queued (evidence of concurrency) the loop keeps
gathering for as long as new callers keep arriving, bounded by `max_queue_delay`, and stops
at the first moment nobody new came: it never waits idly. While one batch runs, the next
accumulates, so under load batches grow by themselves.

The queue is bounded: past `max_queue_size` waiting rows, `submit` raises `Overloaded`
at once instead of letting latency grow without limit.

The gathering rule itself is `AdaptiveBatcher`, generic over what is batched; the database
write path (`db/write_batcher.py`) batches submissions with it. This module imports nothing
of the database.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Generic, Protocol, TypeVar

import numpy as np

RunFunction = Callable[[np.ndarray], np.ndarray]
In = TypeVar("In")
Out = TypeVar("Out")


class Overloaded(RuntimeError):
    """The queue is full; the caller should retry later (the API answers 503)."""


class BatcherClosed(RuntimeError):
    """The batcher was closed before this row was accepted."""


class BadModelOutput(RuntimeError):
    """A batch's outputs were not finite or not one row per input: its callers get this
    (the API answers 503) and nothing is made up in its place."""


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


class BatchObserver(Protocol):
    """Told about every batch once its callers have their answers (see `MicroBatcher`)."""

    def batch_done(self, inputs: np.ndarray, outputs: np.ndarray, seconds: float) -> None: ...

    def batch_refused(self, rows: int, nonfinite_rows: int) -> None: ...


class MicroBatcher(AdaptiveBatcher[np.ndarray, np.ndarray]):
    """Gathers concurrent `submit` calls into batched `run` calls.

    `inline_rows`: batches of at most this many rows run on the event loop instead of the
    executor. For a model whose batch costs less than a thread hand-off (the bundled MLP:
    ~13 µs for one row, ~10-20 µs for 64, against ~50-100 µs for the hand-off and the
    wake-ups it costs on a small machine), the hand-off is pure overhead: the loop would
    wait that long anyway, blocked on nothing. The owner decides from the model's measured
    cost (`ModelEngine`); the default 0 always uses the executor.

    Every batch's outputs are checked before anyone gets a row: one row per input (and
    `output_width` columns, if given) and all finite, else the batch's callers get
    `BadModelOutput`. Validation ran every batch size, so this only fires for a model that
    behaves differently at serving time; the check is two O(batch) numpy calls.

    `observer` (per-model metrics, shadow scoring) hears of each batch through
    `loop.call_soon` after the futures are resolved: the callers' wake-ups were scheduled
    first, so a lone request's answer is written before the observer runs. Without an
    observer that costs one attribute check.
    """

    what = "inference"

    def __init__(
        self,
        run: RunFunction,
        settings: BatchSettings,
        executor: Executor | None = None,
        stats: BatchStats | None = None,
        inline_rows: int = 0,
        output_width: int | None = None,
        observer: BatchObserver | None = None,
    ) -> None:
        super().__init__(settings, stats)
        self._run = run
        self._executor = executor
        self._inline_rows = inline_rows
        self._output_width = output_width
        self._observer = observer

    async def _run_batch(self, batch: list[tuple[np.ndarray, asyncio.Future[np.ndarray]]]) -> None:
        if not batch:
            return
        started = time.perf_counter()
        outputs: np.ndarray | None = None
        try:
            # np.array, not np.stack: 4x cheaper for small rows; rows of another shape fail
            inputs = np.array([row for row, _ in batch])
            if len(batch) <= self._inline_rows:
                outputs = self._run(inputs)
            else:
                loop = asyncio.get_running_loop()
                outputs = await loop.run_in_executor(self._executor, self._run, inputs)
            shape = outputs.shape
            if (
                len(shape) != 2
                or shape[0] != len(batch)
                or (self._output_width is not None and shape[1] != self._output_width)
                or not np.isfinite(outputs).all()
            ):
                rows = shape[0] if shape else 0
                raise BadModelOutput(
                    f"the model returned {rows} rows for {len(batch)} inputs (outputs "
                    f"{'x'.join(map(str, shape))}"
                    + (")" if np.isfinite(outputs).all() else ", not all finite)")
                )
        except Exception as exc:  # isolate the failure to this batch's callers
            self.stats.failed_batches += 1
            if isinstance(exc, BadModelOutput):
                self.stats.bad_output_batches += 1
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if isinstance(exc, BadModelOutput) and self._observer is not None:
                self._observer.batch_refused(len(batch), _nonfinite_rows(outputs))
            return
        seconds = time.perf_counter() - started
        self.stats.record(len(batch), seconds)
        for (_, future), output in zip(batch, outputs, strict=True):
            if not future.done():
                future.set_result(output)
        if self._observer is not None:
            asyncio.get_running_loop().call_soon(
                self._observer.batch_done, inputs, outputs, seconds
            )


def _nonfinite_rows(outputs: np.ndarray | None) -> int:
    """Rows of a refused batch that hold a NaN or an infinity (0 if there were no rows)."""
    if outputs is None or outputs.ndim != 2:
        return 0
    return int((~np.isfinite(outputs)).any(axis=1).sum())
