"""MicroBatcher on its own: pure asyncio, a numpy `run` function, no model and no server.

Every run function here computes an output that depends on its input row, so a caller that
received another caller's answer (or an answer out of order) is caught by exact equality.
Blocked run functions wait on a `threading.Event` that every test releases in `finally`,
so a failing assertion never leaves an executor thread stuck.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from batching.adaptive import BatcherClosed, BatchSettings, BatchStats, Overloaded
from model.batcher import MicroBatcher

# A guard for awaits that must not hang; far above anything a passing test waits.
HANG = 10.0


def row(i: int) -> np.ndarray:
    """A row unique to caller `i`."""
    return np.array([i, i + 0.5, -i, 7.0], dtype=np.float32)


def expected(i: int) -> np.ndarray:
    return row(i) * 2 + 1


class Recorder:
    """A run function that records every batch and answers ``x * 2 + 1`` per row, plus the
    batch's number and the row's position inside it (to check order within a batch)."""

    def __init__(self, delay: float = 0.0, poison: float | None = None) -> None:
        self.delay = delay
        self.poison = poison
        self.batches: list[np.ndarray] = []
        self.gate: threading.Event | None = None  # when set up, the FIRST call waits on it
        self.started = threading.Event()

    def block_first_call(self) -> threading.Event:
        self.gate = threading.Event()
        return self.gate

    def __call__(self, batch: np.ndarray) -> np.ndarray:
        number = len(self.batches)
        self.batches.append(batch.copy())
        self.started.set()
        if self.gate is not None and number == 0:
            assert self.gate.wait(HANG), "the test never released the run function"
        if self.delay:
            time.sleep(self.delay)
        if self.poison is not None and (batch[:, 0] == self.poison).any():
            raise ValueError(f"poison row in batch {number}")
        position = np.arange(len(batch), dtype=np.float32)[:, None]
        marker = np.full_like(position, number)
        return np.hstack([batch * 2 + 1, marker, position])

    @property
    def sizes(self) -> list[int]:
        return [len(batch) for batch in self.batches]


@contextlib.asynccontextmanager
async def batcher_for(
    run: Callable[[np.ndarray], np.ndarray], gate: threading.Event | None = None, **settings: float
) -> AsyncIterator[MicroBatcher]:
    """A batcher on its own one-thread executor; always released and closed afterwards."""
    executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="test-inference")
    batcher = MicroBatcher(run, BatchSettings(**settings), executor)  # type: ignore[arg-type]
    try:
        yield batcher
    finally:
        if gate is not None:
            gate.set()
        with contextlib.suppress(Exception):
            async with asyncio.timeout(HANG):
                await batcher.close()
        executor.shutdown(wait=False, cancel_futures=True)


async def until(condition: Callable[[], bool], what: str) -> None:
    """Yield to the loop until `condition` holds (e.g. the executor thread started a run)."""
    deadline = time.monotonic() + HANG
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        await asyncio.sleep(0.001)


def check_answer(recorder: Recorder, i: int, answer: np.ndarray) -> None:
    """Caller `i` got exactly its own row's answer, at the position its row had in its batch."""
    np.testing.assert_array_equal(answer[:4], expected(i))
    batch, position = int(answer[4]), int(answer[5])
    np.testing.assert_array_equal(recorder.batches[batch][position], row(i))


def check_stats(stats: BatchStats, sizes: list[int]) -> None:
    """The counters of successful batches agree with the batches that really ran."""
    assert stats.batches == len(sizes) == sum(stats.batch_sizes.values())
    assert stats.items == sum(sizes) == sum(size * n for size, n in stats.batch_sizes.items())
    assert stats.batch_sizes == {size: sizes.count(size) for size in set(sizes)}


def test_concurrent_callers_share_few_run_calls_and_each_gets_its_own_answer() -> None:
    recorder = Recorder(delay=0.002)
    callers = 200

    async def scenario() -> list[np.ndarray]:
        async with batcher_for(recorder, max_batch_size=64, max_queue_delay=0.0005) as batcher:

            async def caller(i: int) -> np.ndarray:
                await asyncio.sleep((i % 20) * 0.0005)  # arrivals spread over ~10 ms
                return await batcher.submit(row(i))

            async with asyncio.timeout(HANG):
                answers = await asyncio.gather(*(caller(i) for i in range(callers)))
            check_stats(batcher.stats, recorder.sizes)
            assert batcher.stats.failed_batches == batcher.stats.rejected == 0
            return answers

    answers = asyncio.run(scenario())
    print("batch sizes:", recorder.sizes)
    assert len(recorder.batches) < 50, recorder.sizes
    assert max(recorder.sizes) > 1
    assert sum(recorder.sizes) == callers
    assert all(size <= 64 for size in recorder.sizes)
    for i, answer in enumerate(answers):
        check_answer(recorder, i, answer)
    # every row ran exactly once
    ran = sorted(int(r[0]) for batch in recorder.batches for r in batch)
    assert ran == list(range(callers))


def test_results_keep_the_order_of_their_batch() -> None:
    """Rows queued while a batch runs form the next batch in arrival order, answers too."""
    recorder = Recorder()
    gate = recorder.block_first_call()

    async def scenario() -> None:
        async with batcher_for(recorder, gate, max_batch_size=64, max_queue_delay=0) as batcher:
            first = asyncio.ensure_future(batcher.submit(row(100)))
            await until(recorder.started.is_set, "the first batch runs")
            rest = [asyncio.ensure_future(batcher.submit(row(i))) for i in range(10)]
            await asyncio.sleep(0)
            gate.set()
            async with asyncio.timeout(HANG):
                answers = await asyncio.gather(*rest)
                check_answer(recorder, 100, await first)
            assert recorder.sizes == [1, 10]
            np.testing.assert_array_equal(
                recorder.batches[1], np.stack([row(i) for i in range(10)])
            )
            for i, answer in enumerate(answers):
                check_answer(recorder, i, answer)
                assert (int(answer[4]), int(answer[5])) == (1, i)

    asyncio.run(scenario())


def test_a_lone_request_does_not_wait_for_the_queue_delay() -> None:
    recorder = Recorder()

    async def scenario() -> None:
        async with batcher_for(recorder, max_batch_size=64, max_queue_delay=10.0) as batcher:
            for i in range(3):  # sequential lone requests, each on its own
                started = time.perf_counter()
                async with asyncio.timeout(HANG):
                    answer = await batcher.submit(row(i))
                elapsed = time.perf_counter() - started
                assert elapsed < 2.0, f"a lone request waited {elapsed:.2f} s"
                check_answer(recorder, i, answer)
            assert batcher.stats.batch_sizes == {1: 3}

    asyncio.run(scenario())
    assert recorder.sizes == [1, 1, 1]


def test_a_full_queue_rejects_at_once_and_the_queued_rows_still_complete() -> None:
    recorder = Recorder()
    gate = recorder.block_first_call()

    async def scenario() -> None:
        async with batcher_for(
            recorder, gate, max_batch_size=64, max_queue_delay=0, max_queue_size=4
        ) as batcher:
            running = asyncio.ensure_future(batcher.submit(row(0)))
            await until(recorder.started.is_set, "the first batch runs (and blocks)")
            queued = [asyncio.ensure_future(batcher.submit(row(i))) for i in range(1, 5)]
            await asyncio.sleep(0)
            assert batcher.queue_depth == 4
            for i in range(5, 8):  # the 5th, 6th and 7th waiting callers
                started = time.perf_counter()
                with pytest.raises(Overloaded, match="queue is full"):
                    async with asyncio.timeout(HANG):
                        await batcher.submit(row(i))
                assert time.perf_counter() - started < 1.0  # refused at once, not queued
            assert batcher.stats.rejected == 3
            assert not running.done() and not any(task.done() for task in queued)
            gate.set()
            async with asyncio.timeout(HANG):
                check_answer(recorder, 0, await running)
                for i, task in enumerate(queued, start=1):
                    check_answer(recorder, i, await task)
            # room again: a new caller is served
            async with asyncio.timeout(HANG):
                check_answer(recorder, 8, await batcher.submit(row(8)))
            assert recorder.sizes == [1, 4, 1]
            check_stats(batcher.stats, recorder.sizes)
            assert batcher.stats.rejected == 3

    asyncio.run(scenario())


def test_a_failing_batch_fails_only_its_own_callers() -> None:
    poison = -1.0
    recorder = Recorder(poison=poison)
    gate = recorder.block_first_call()
    bad = np.array([poison, 0, 0, 0], dtype=np.float32)

    async def scenario() -> None:
        async with batcher_for(recorder, gate, max_batch_size=2, max_queue_delay=0) as batcher:
            first = asyncio.ensure_future(batcher.submit(row(1)))
            await until(recorder.started.is_set, "the first batch runs")
            # queued while batch 0 runs: batch 1 = [poison, 2], batch 2 = [3, 4]
            poisoned = asyncio.ensure_future(batcher.submit(bad))
            neighbour = asyncio.ensure_future(batcher.submit(row(2)))
            others = [asyncio.ensure_future(batcher.submit(row(i))) for i in (3, 4)]
            await asyncio.sleep(0)
            gate.set()
            async with asyncio.timeout(HANG):
                check_answer(recorder, 1, await first)
                for task in (poisoned, neighbour):
                    with pytest.raises(ValueError, match="poison row in batch 1"):
                        await task
                for i, task in zip((3, 4), others, strict=True):
                    check_answer(recorder, i, await task)
                # the loop survived: later callers are served, poison included
                check_answer(recorder, 5, await batcher.submit(row(5)))
                with pytest.raises(ValueError, match="poison"):
                    await batcher.submit(bad)
                check_answer(recorder, 6, await batcher.submit(row(6)))
            assert recorder.sizes == [1, 2, 2, 1, 1, 1]
            assert batcher.stats.failed_batches == 2
            check_stats(batcher.stats, [1, 2, 1, 1])  # the successful batches only

    asyncio.run(scenario())


def test_a_run_function_returning_the_wrong_row_count_fails_that_batch() -> None:
    calls: list[int] = []

    def short(batch: np.ndarray) -> np.ndarray:
        calls.append(len(batch))
        return batch[:-1] if len(calls) == 1 else batch * 2 + 1

    async def scenario() -> None:
        async with batcher_for(short, max_batch_size=8, max_queue_delay=0.01) as batcher:
            async with asyncio.timeout(HANG):
                results = await asyncio.gather(
                    *(batcher.submit(row(i)) for i in range(3)), return_exceptions=True
                )
                assert all(isinstance(r, RuntimeError) for r in results), results
                assert "returned 2 rows for 3 inputs" in str(results[0])
                np.testing.assert_array_equal(await batcher.submit(row(9)), expected(9))
            assert batcher.stats.failed_batches == 1
            check_stats(batcher.stats, [1])

    asyncio.run(scenario())


def test_a_cancelled_caller_does_not_break_the_others() -> None:
    recorder = Recorder()
    gate = recorder.block_first_call()

    async def scenario() -> None:
        async with batcher_for(recorder, gate, max_batch_size=64, max_queue_delay=0) as batcher:
            running = asyncio.ensure_future(batcher.submit(row(0)))
            await until(recorder.started.is_set, "the first batch runs")
            queued = {i: asyncio.ensure_future(batcher.submit(row(i))) for i in range(1, 6)}
            await asyncio.sleep(0)
            # one caller gives up while queued, another while its batch is running
            queued[3].cancel()
            running.cancel()
            await asyncio.sleep(0)
            gate.set()
            async with asyncio.timeout(HANG):
                with pytest.raises(asyncio.CancelledError):
                    await running
                with pytest.raises(asyncio.CancelledError):
                    await queued[3]
                for i in (1, 2, 4, 5):
                    check_answer(recorder, i, await queued[i])
                check_answer(recorder, 6, await batcher.submit(row(6)))
            # the cancelled queued row never ran; the running one had already started
            assert recorder.sizes == [1, 4, 1]
            assert row(3)[0] not in recorder.batches[1][:, 0]
            check_stats(batcher.stats, recorder.sizes)
            assert batcher.stats.failed_batches == 0

    asyncio.run(scenario())


def test_a_batch_whose_callers_all_left_is_skipped() -> None:
    recorder = Recorder()
    gate = recorder.block_first_call()

    async def scenario() -> None:
        async with batcher_for(recorder, gate, max_batch_size=64, max_queue_delay=0) as batcher:
            running = asyncio.ensure_future(batcher.submit(row(0)))
            await until(recorder.started.is_set, "the first batch runs")
            gone = [asyncio.ensure_future(batcher.submit(row(i))) for i in range(1, 4)]
            await asyncio.sleep(0)
            for task in gone:
                task.cancel()
            gate.set()
            async with asyncio.timeout(HANG):
                check_answer(recorder, 0, await running)
                check_answer(recorder, 4, await batcher.submit(row(4)))
            assert recorder.sizes == [1, 1]

    asyncio.run(scenario())


def test_close_drains_the_queue_then_stops() -> None:
    recorder = Recorder()
    gate = recorder.block_first_call()

    async def scenario() -> None:
        async with batcher_for(recorder, gate, max_batch_size=4, max_queue_delay=10.0) as batcher:
            running = asyncio.ensure_future(batcher.submit(row(0)))
            await until(recorder.started.is_set, "the first batch runs")
            queued = [asyncio.ensure_future(batcher.submit(row(i))) for i in range(1, 8)]
            await asyncio.sleep(0)
            closing = asyncio.ensure_future(batcher.close())
            await asyncio.sleep(0.01)
            assert not closing.done()  # still draining: the first batch is blocked
            with pytest.raises(BatcherClosed):
                await batcher.submit(row(99))
            gate.set()
            async with asyncio.timeout(HANG):
                await closing  # returns only once everything queued is answered
            # the last batch (3 of 4) did not wait the 10 s queue delay to fill
            assert running.done() and all(task.done() for task in queued)
            check_answer(recorder, 0, running.result())
            for i, task in enumerate(queued, start=1):
                check_answer(recorder, i, task.result())
            assert recorder.sizes == [1, 4, 3]
            with pytest.raises(BatcherClosed):
                await batcher.submit(row(100))
            assert recorder.sizes == [1, 4, 3]  # nothing ran after close
            check_stats(batcher.stats, recorder.sizes)
            await batcher.close()  # closing twice is harmless

    asyncio.run(scenario())


def test_close_of_an_idle_batcher_returns_at_once() -> None:
    async def scenario() -> None:
        batcher = MicroBatcher(lambda x: x, BatchSettings())
        async with asyncio.timeout(HANG):
            await batcher.close()
        with pytest.raises(BatcherClosed):
            await batcher.submit(row(1))

    asyncio.run(scenario())


def test_stats_add_up_over_a_mixed_run() -> None:
    """Successes, a failed batch and rejections, each counted once and only where it belongs."""
    poison = -1.0
    recorder = Recorder(poison=poison)
    gate = recorder.block_first_call()
    stats = BatchStats()

    async def scenario() -> None:
        executor = ThreadPoolExecutor(max_workers=1)
        settings = BatchSettings(max_batch_size=4, max_queue_delay=0, max_queue_size=6)
        batcher = MicroBatcher(recorder, settings, executor, stats)
        try:
            submitted: list[asyncio.Future[np.ndarray]] = [
                asyncio.ensure_future(batcher.submit(row(0)))
            ]
            await until(recorder.started.is_set, "the first batch runs")
            bad = np.array([poison, 0, 0, 0], dtype=np.float32)
            # queued: [1, 2, poison, 3] then [4, 5]; two more are rejected
            for r in (row(1), row(2), bad, row(3), row(4), row(5)):
                submitted.append(asyncio.ensure_future(batcher.submit(r)))
            await asyncio.sleep(0)
            for i in (6, 7):
                with pytest.raises(Overloaded):
                    await batcher.submit(row(i))
            gate.set()
            async with asyncio.timeout(HANG):
                results = await asyncio.gather(*submitted, return_exceptions=True)
                extra = await asyncio.gather(*(batcher.submit(row(i)) for i in range(10, 13)))
            failed = [r for r in results if isinstance(r, Exception)]
            assert len(failed) == 4 and all(isinstance(r, ValueError) for r in failed)
            assert len(extra) == 3
            await batcher.close()
        finally:
            gate.set()
            executor.shutdown(wait=False)

    asyncio.run(scenario())
    assert recorder.sizes[:3] == [1, 4, 2]
    ok_sizes = [size for n, size in enumerate(recorder.sizes) if n != 1]
    assert stats.failed_batches == 1
    assert stats.rejected == 2
    check_stats(stats, ok_sizes)
    assert stats.items == 1 + 2 + 3  # every answered row, and only those
    assert stats.inference_seconds > 0


def test_invalid_settings_are_refused() -> None:
    for settings in (BatchSettings(max_batch_size=0), BatchSettings(max_queue_size=0)):
        with pytest.raises(ValueError, match="at least 1"):
            MicroBatcher(lambda x: x, settings)


def test_a_malformed_row_fails_only_its_batch_and_the_loop_keeps_serving() -> None:
    recorder = Recorder()
    gate = recorder.block_first_call()

    async def scenario() -> None:
        async with batcher_for(recorder, gate, max_batch_size=64, max_queue_delay=0) as batcher:
            first = asyncio.ensure_future(batcher.submit(row(0)))
            await until(recorder.started.is_set, "the first batch runs")
            # queued together while batch 0 runs: one row of width 3 among rows of width 4
            good = asyncio.ensure_future(batcher.submit(row(1)))
            short = asyncio.ensure_future(batcher.submit(np.zeros(3, dtype=np.float32)))
            await asyncio.sleep(0)
            gate.set()
            async with asyncio.timeout(2.0):  # hangs forever with the bug
                check_answer(recorder, 0, await first)
                outcomes = await asyncio.gather(good, short, return_exceptions=True)
                assert isinstance(outcomes[1], Exception)
                # a caller after the bad batch is still served
                check_answer(recorder, 2, await batcher.submit(row(2)))

    asyncio.run(scenario())
