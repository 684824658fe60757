"""Batches the model runs faster than `max_inline_seconds` skip the inference thread.

A small model's batch costs less than a thread hand-off, so the engine runs it on the event
loop; a slow model's batches still go to the one inference thread, so they never block the
loop. Which one applies follows from the cost `load_model` measured. The tests tell the two
paths apart by occupying the inference thread: an inline batch is answered anyway, a
threaded one waits for the thread.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from batching.adaptive import BatchSettings
from model.engine import LoadedModel, ModelEngine, load_model
from model.modelfile import ModelFile
from model.scoring import all_score_inputs

BUNDLED = Path(__file__).resolve().parents[2] / "model" / "bundled" / "default.onnx"
HANG = 30.0


@pytest.fixture(scope="module")
def model() -> LoadedModel:
    return load_model(ModelFile.read(BUNDLED))


def costs(single: float, per_row: float, sizes: int = 64) -> tuple[float, ...]:
    """Measured seconds for batches of 1..sizes rows of a model with a linear cost."""
    return tuple(single + (n - 1) * per_row for n in range(1, sizes + 1))


def test_load_measures_every_batch_size(model: LoadedModel) -> None:
    assert len(model.batch_seconds) == 64
    assert all(0 < seconds < 1 for seconds in model.batch_seconds)
    assert model.single_row_seconds == model.batch_seconds[0]


def test_rows_within_follows_the_measured_cost(model: LoadedModel) -> None:
    costed = replace(model, batch_seconds=costs(10e-6, 1e-6))
    assert costed.rows_within(200e-6, 64) == 64  # 10 + 63 x 1 µs fits in 200 µs
    assert costed.rows_within(50e-6, 64) == 41  # 10 + 40 x 1 µs = 50 µs
    assert costed.rows_within(10e-6, 64) == 1
    assert costed.rows_within(9e-6, 64) == 0  # not even one row fits
    assert costed.rows_within(0, 64) == 0  # inline switched off
    never_measured = replace(model, batch_seconds=())
    assert never_measured.rows_within(1.0, 64) == 0


def test_rows_within_stops_at_the_first_slow_size(model: LoadedModel) -> None:
    """Fast at 1 and at 64, slow at 7: no batch of 7 or more may run on the event loop."""
    measured = list(costs(10e-6, 0.1e-6))
    measured[6] = 1.2  # a batch of 7 took 1.2 s
    costed = replace(model, batch_seconds=tuple(measured))
    assert costed.rows_within(200e-6, 64) == 6
    assert costed.rows_within(200e-6, 3) == 3


async def _answers_while_thread_is_held(engine: ModelEngine, rows: list[list[float]]) -> bool:
    """Whether `rows` are answered while the inference thread is busy with something else."""
    release = threading.Event()
    engine.executor.submit(release.wait, HANG)
    try:
        tasks = [asyncio.ensure_future(engine.predict(row)) for row in rows]
        done, _ = await asyncio.wait(tasks, timeout=2.0)
        answered = len(done) == len(tasks)
    finally:
        release.set()
    await asyncio.wait_for(asyncio.gather(*tasks), HANG)
    return answered


def test_a_fast_model_runs_on_the_event_loop_and_still_batches(model: LoadedModel) -> None:
    fast = replace(model, batch_seconds=costs(10e-6, 0.2e-6))
    inputs = all_score_inputs()

    async def scenario() -> tuple[bool, bool, ModelEngine, list[np.ndarray]]:
        engine = ModelEngine(BatchSettings(max_inline_seconds=200e-6))
        engine.swap(fast)
        try:
            lone = await _answers_while_thread_is_held(engine, [[1, 2, 3, 0]])
            many = await _answers_while_thread_is_held(engine, inputs.tolist())
            concurrent = await asyncio.gather(*(engine.predict(x) for x in inputs.tolist()))
        finally:
            await engine.close()
        return lone, many, engine, [p.logits for p in concurrent]

    lone, many, engine, logits = asyncio.run(scenario())
    assert lone and many
    assert max(engine.stats.batch_sizes) > 1  # concurrent callers still share batches
    np.testing.assert_allclose(np.stack(logits), model.run(inputs), rtol=1e-5, atol=1e-6)


def test_a_slow_model_uses_the_inference_thread(model: LoadedModel) -> None:
    slow = replace(model, batch_seconds=costs(5e-3, 1e-3))

    async def scenario() -> bool:
        engine = ModelEngine(BatchSettings(max_inline_seconds=200e-6))
        engine.swap(slow)
        try:
            return await _answers_while_thread_is_held(engine, [[1, 2, 3, 0]])
        finally:
            await engine.close()

    assert asyncio.run(scenario()) is False


def test_inline_off_uses_the_inference_thread(model: LoadedModel) -> None:
    async def scenario() -> bool:
        engine = ModelEngine(BatchSettings(max_inline_seconds=0))
        engine.swap(model)
        try:
            return await _answers_while_thread_is_held(engine, [[1, 2, 3, 0]])
        finally:
            await engine.close()

    assert asyncio.run(scenario()) is False


def test_only_batches_within_the_budget_run_inline(model: LoadedModel) -> None:
    """A model that fits 4 rows in the budget: a lone row runs inline, a crowd waits."""
    costed = replace(model, batch_seconds=costs(10e-6, 30e-6))  # 4 rows: 100 µs

    async def scenario() -> tuple[bool, bool]:
        engine = ModelEngine(BatchSettings(max_inline_seconds=100e-6, max_batch_size=64))
        engine.swap(costed)
        try:
            lone = await _answers_while_thread_is_held(engine, [[1, 2, 3, 0]])
            crowd = await _answers_while_thread_is_held(engine, all_score_inputs().tolist())
        finally:
            await engine.close()
        return lone, crowd

    assert asyncio.run(scenario()) == (True, False)
