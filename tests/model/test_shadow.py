"""The shadow scorer on a real engine and real ONNX sessions: it runs only after the
active model's callers have their answers, gathers the rows of many requests into one run
(never larger than the largest batch validated), agrees with the active model exactly when
the two models' top hobbies agree, and a shadow that breaks on live rows changes no answer."""

from __future__ import annotations

import asyncio

import numpy as np

from batching.adaptive import BatchSettings
from model.engine import LoadedModel, ModelEngine, open_session
from model.modelfile import ModelFile
from model.scoring import all_score_inputs
from model.shadow import ShadowScorer
from tests.model import hostile


def session(data: bytes, rows: int = 64) -> LoadedModel:
    """A session with a measured-looking cost, so the engine runs batches inline."""
    model = open_session(ModelFile.from_bytes(data))
    return LoadedModel(model.file, model.session, model.loaded_at, (1e-6,) * rows)


def scorer(model: LoadedModel, inline: bool = True) -> ShadowScorer:
    return ShadowScorer(model, max_inline_seconds=1e-3 if inline else 0.0, max_batch_size=64)


async def scored(shadow: ShadowScorer, rows: int) -> None:
    """Until the shadow has scored (or failed on) `rows` rows: its gathering timer ran."""
    for _ in range(1000):
        if shadow.stats.rows + shadow.stats.failed_rows >= rows:
            return
        await asyncio.sleep(0.01)
    raise AssertionError(f"the shadow scored {shadow.stats.rows} of {rows} rows")


def test_the_shadow_runs_after_the_caller_has_its_answer() -> None:
    active = session(hostile.mlp("active", seed=1))
    shadow = scorer(session(hostile.mlp("candidate", seed=2)))

    async def run() -> tuple[int, int, int]:
        engine = ModelEngine(BatchSettings(max_batch_size=8))
        engine.swap(active)
        engine.set_shadow(shadow)
        try:
            await engine.predict([1, 2, 3, 0])
            when_answered = shadow.stats.rows  # the caller resumed before the shadow ran
            await asyncio.sleep(0)
            a_turn_later = shadow.stats.rows  # gathered, waiting for more rows
            await scored(shadow, 1)
            return when_answered, a_turn_later, shadow.stats.runs
        finally:
            await engine.close()

    assert asyncio.run(run()) == (0, 0, 1)


def test_lone_requests_are_scored_together_in_batches_no_larger_than_validated() -> None:
    """20 requests one after another (each a batch of one for the active model) are scored
    in 3 runs: 8 rows, 8 rows (the largest batch size validated), then the last 4 when the
    gathering time is up."""
    active_bytes, candidate_bytes = hostile.mlp("active", seed=6), hostile.mlp("cand", seed=7)
    shadow = ShadowScorer(
        session(candidate_bytes, rows=8), max_inline_seconds=1e-3, max_batch_size=8
    )
    inputs = all_score_inputs()[:20]

    async def run() -> None:
        engine = ModelEngine(BatchSettings(max_batch_size=8))
        engine.swap(session(active_bytes))
        engine.set_shadow(shadow)
        try:
            for row in inputs:
                await engine.predict(row.tolist())
            await scored(shadow, len(inputs))
        finally:
            await engine.close()

    asyncio.run(run())
    assert (shadow.stats.rows, shadow.stats.runs, shadow.stats.failed_rows) == (20, 3, 0)
    assert (shadow.stats.top1_agreements, shadow.stats.top3_agreements) == expected_agreement(
        active_bytes, candidate_bytes, inputs
    )


def test_rows_still_gathered_when_the_shadow_stops_are_counted_as_skipped() -> None:
    shadow = scorer(session(hostile.mlp("candidate", seed=8)))

    async def run() -> None:
        engine = ModelEngine(BatchSettings(max_batch_size=8))
        engine.swap(session(hostile.mlp("active", seed=9)))
        engine.set_shadow(shadow)
        try:
            await engine.predict([1, 2, 3, 0])
            await asyncio.sleep(0)  # the batch's observer ran: the row is gathered
            engine.set_shadow(None)
        finally:
            await engine.close()

    asyncio.run(run())
    assert (shadow.stats.rows, shadow.stats.skipped_rows) == (0, 1)


def expected_agreement(a: bytes, b: bytes, inputs: np.ndarray) -> tuple[int, int]:
    first, second = session(a), session(b)
    ours, theirs = first.run(inputs), second.run(inputs)
    top_a = np.argsort(-ours, axis=1, kind="stable")[:, :3]
    top_b = np.argsort(-theirs, axis=1, kind="stable")[:, :3]
    top1 = int((top_a[:, 0] == top_b[:, 0]).sum())
    top3 = sum(set(x) == set(y) for x, y in zip(top_a.tolist(), top_b.tolist(), strict=True))
    return top1, top3


def test_agreement_counts_every_input_of_every_batch_inline_and_threaded() -> None:
    active_bytes, candidate_bytes = hostile.mlp("active", seed=3), hostile.mlp("cand", seed=4)
    inputs = all_score_inputs()
    top1, top3 = expected_agreement(active_bytes, active_bytes, inputs)
    assert (top1, top3) == (len(inputs), len(inputs))  # a model agrees with itself
    for inline in (True, False):
        shadow = scorer(session(candidate_bytes), inline=inline)

        async def run(shadow: ShadowScorer = shadow) -> None:
            engine = ModelEngine(BatchSettings(max_batch_size=16))
            engine.swap(session(active_bytes))
            engine.set_shadow(shadow)
            try:
                for start in range(0, len(inputs), 16):  # batches of 16 concurrent callers
                    rows = inputs[start : start + 16]
                    await asyncio.gather(*(engine.predict(row.tolist()) for row in rows))
                    while shadow.stats.rows + shadow.stats.skipped_rows < start + len(rows):
                        await asyncio.sleep(0.001)  # the threaded run reports back
            finally:
                await engine.close()

        asyncio.run(run())
        stats = shadow.stats
        assert stats.failed_rows == 0 and stats.last_error is None
        assert stats.rows + stats.skipped_rows == len(inputs)
        if inline:  # every batch scored: the counts are exactly the whole input space's
            expected = expected_agreement(active_bytes, candidate_bytes, inputs)
            assert (stats.top1_agreements, stats.top3_agreements) == expected
            assert 0 < expected[0] < len(inputs)
        assert stats.runs >= 1


def test_a_shadow_that_breaks_on_live_rows_changes_no_answer() -> None:
    """NaN for batches of more than one row: validation would refuse it; here it got in."""
    active_bytes = hostile.mlp("active", seed=5)
    shadow = scorer(session(hostile.nan_at_other_sizes()))
    rows = [[i % 4, 1, 2, 3] for i in range(5)]

    async def run() -> list[np.ndarray]:
        engine = ModelEngine(BatchSettings(max_batch_size=8))
        engine.swap(session(active_bytes))
        engine.set_shadow(shadow)
        try:
            answers = await asyncio.gather(*(engine.predict(row) for row in rows))
            await scored(shadow, len(rows))
            return [answer.logits for answer in answers]
        finally:
            await engine.close()

    served = asyncio.run(run())
    alone = session(active_bytes).run(np.asarray(rows, np.float32))
    np.testing.assert_allclose(np.array(served), alone, rtol=1e-5)
    assert shadow.stats.failed_rows == 5 and shadow.stats.rows == 0
    assert "not all finite" in (shadow.stats.last_error or "")
