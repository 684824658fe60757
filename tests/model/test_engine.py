"""The engine without a server: `load_model` validation and `ModelEngine` swaps under load.

Valid models are real MLPs written by `build_mlp` with the bundled model's labels; broken
ones are written by hand with onnx.helper so each breaks exactly one rule.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import random
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper, numpy_helper

from batching.adaptive import BatchSettings
from model.engine import LoadedModel, ModelEngine, NoModelLoaded, Prediction, load_model
from model.modelfile import ModelFile, ModelFileError, ModelMetadata, build_mlp
from model.scoring import all_score_inputs

BUNDLED = Path(__file__).resolve().parents[2] / "model" / "bundled" / "default.onnx"
HANG = 30.0


@pytest.fixture(scope="module")
def bundled() -> ModelFile:
    return ModelFile.read(BUNDLED)


@pytest.fixture(scope="module")
def labels(bundled: ModelFile) -> tuple[str, ...]:
    return bundled.metadata.labels


def mlp_bytes(labels: tuple[str, ...], version: str, seed: int, *, nan_bias: bool = False) -> bytes:
    """A valid 4-16-len(labels) MLP with seeded random weights."""
    rng = np.random.default_rng(seed)
    hidden = 16
    layers = [
        (rng.normal(size=(hidden, 4)), rng.normal(size=hidden)),
        (rng.normal(size=(len(labels), hidden)), rng.normal(size=len(labels))),
    ]
    if nan_bias:
        layers[1][1][len(labels) // 2] = np.nan
    return build_mlp(layers, ModelMetadata(model_version=version, labels=labels))


def gemm_model(
    labels: tuple[str, ...],
    *,
    input_width: int = 4,
    output_width: int | None = None,
    declared_output_width: int | None = None,
    hide_output_shape: bool = False,
) -> bytes:
    """One Gemm ``scores [batch, input_width] -> logits [batch, output_width]``, with the
    contract's metadata; `hide_output_shape` routes the output through a Reshape whose target
    shape only exists at run time, so the graph keeps its (possibly false) declared shape."""
    width = len(labels) if output_width is None else output_width
    declared = width if declared_output_width is None else declared_output_width
    weight = numpy_helper.from_array(np.ones((width, input_width), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(width, np.float32), "b")
    ones = numpy_helper.from_array(np.array([1, 1], np.int64), "ones")
    gemm_out = "gemm" if hide_output_shape else "logits"
    nodes = [helper.make_node("Gemm", ["scores", "w", "b"], [gemm_out], transB=1)]
    if hide_output_shape:
        nodes += [
            helper.make_node("Shape", ["gemm"], ["shape"]),
            helper.make_node("Mul", ["shape", "ones"], ["runtime_shape"]),
            helper.make_node("Reshape", ["gemm", "runtime_shape"], ["logits"]),
        ]
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", input_width])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", declared])],
        [weight, bias, ones],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, ModelMetadata("hand-made", labels).to_props())
    return model.SerializeToString()


def unchecked(data: bytes, labels: tuple[str, ...]) -> ModelFile:
    """A ModelFile that skipped `from_bytes`, so `load_model`'s own checks are what is tested."""
    meta = ModelMetadata(model_version="unchecked", labels=labels)
    return ModelFile(data=data, metadata=meta, sha256=hashlib.sha256(data).hexdigest())


def rejected(file: ModelFile, *fragments: str, known: set[str] | None = None) -> str:
    with pytest.raises(ModelFileError) as caught:
        load_model(file, known)
    for fragment in fragments:
        assert fragment in str(caught.value)
    return str(caught.value)


# ---- load_model rejects, and says why ----


def test_a_valid_model_loads(labels: tuple[str, ...]) -> None:
    file = ModelFile.from_bytes(mlp_bytes(labels, "ok-1", seed=1))
    model = load_model(file, set(labels))
    assert model.version == "ok-1"
    assert model.labels == labels
    assert model.run(all_score_inputs()).shape == (256, len(labels))


@pytest.mark.parametrize("size", [3000, 100_000])
def test_random_bytes_are_refused(labels: tuple[str, ...], size: int) -> None:
    data = random.Random(size).randbytes(size)
    rejected(unchecked(data, labels), "not a loadable ONNX model")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        ModelFile.from_bytes(data)


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.9, 0.999])
def test_a_truncated_bundled_model_is_refused(bundled: ModelFile, keep: float) -> None:
    data = bundled.data[: int(len(bundled.data) * keep)]
    rejected(unchecked(data, bundled.metadata.labels), "not a loadable ONNX model")
    with pytest.raises(ModelFileError, match="not a loadable ONNX model"):
        ModelFile.from_bytes(data)


def test_an_input_width_of_3_is_refused(labels: tuple[str, ...]) -> None:
    data = gemm_model(labels, input_width=3)
    rejected(unchecked(data, labels), "input shape must be [batch, 4]", "['batch', 3]")
    with pytest.raises(ModelFileError, match=r"input shape must be \[batch, 4\]"):
        ModelFile.from_bytes(data)


def test_weights_that_do_not_fit_the_declared_input_are_refused(labels: tuple[str, ...]) -> None:
    """Declares ``[batch, 4]`` but its first layer reads 3 columns: ORT cannot even load it."""
    rng = np.random.default_rng(3)
    layers = [
        (rng.normal(size=(8, 3)), np.zeros(8)),
        (rng.normal(size=(len(labels), 8)), np.zeros(len(labels))),
    ]
    data = build_mlp(layers, ModelMetadata("misfit", labels))
    rejected(unchecked(data, labels), "not a loadable ONNX model", "Gemm")


def test_an_output_width_other_than_the_label_count_is_refused(labels: tuple[str, ...]) -> None:
    data = gemm_model(labels, output_width=5)
    message = rejected(unchecked(data, labels), f"output shape must be [batch, {len(labels)}]")
    assert "['batch', 5]" in message
    with pytest.raises(ModelFileError, match="output shape must be"):
        ModelFile.from_bytes(data)


def test_an_output_that_lies_about_its_width_is_caught_by_the_smoke_batch(
    labels: tuple[str, ...],
) -> None:
    """Declares ``[batch, 19]``, passes the signature check, but really returns 5 columns."""
    data = gemm_model(
        labels, output_width=5, declared_output_width=len(labels), hide_output_shape=True
    )
    file = ModelFile.from_bytes(data)  # the signature alone looks right
    rejected(file, "a batch of 1 returned shape [1, 5], not [1, 19]")


def test_labels_unknown_to_the_catalogue_are_refused(bundled: ModelFile) -> None:
    labels = bundled.metadata.labels
    missing = labels[4]
    known = set(labels) - {missing}
    rejected(
        bundled, "1 label(s) are not hobbies of the active catalogue", repr(missing), known=known
    )
    # all labels known: fine, and None means "no catalogue check"
    assert load_model(bundled, set(labels)).version == bundled.metadata.model_version
    assert load_model(bundled, None).version == bundled.metadata.model_version


def test_many_unknown_labels_are_counted_and_a_few_named(bundled: ModelFile) -> None:
    message = rejected(bundled, "19 label(s) are not hobbies", known={"something else"})
    assert message.count("'") == 6  # three labels quoted, not nineteen


def test_a_nan_bias_is_refused(labels: tuple[str, ...]) -> None:
    file = ModelFile.from_bytes(mlp_bytes(labels, "nan-1", seed=4, nan_bias=True))
    rejected(file, "a batch of 1 returned non-finite logits")


def test_logits_that_overflow_on_some_inputs_only_are_refused(labels: tuple[str, ...]) -> None:
    """Finite for the all-zero input, infinite for the others: every input is smoke-tested."""
    huge = np.full((len(labels), 4), 3e38)
    data = build_mlp([(huge, np.zeros(len(labels)))], ModelMetadata("inf-1", labels))
    file = ModelFile.from_bytes(data)
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    zero_row = session.run(None, {"scores": np.zeros((1, 4), np.float32)})[0]
    assert np.isfinite(zero_row).all()  # a one-row smoke test would have passed
    rejected(file, "non-finite")


# ---- ModelEngine ----


def test_predict_without_a_model_raises_no_model_loaded() -> None:
    async def scenario() -> None:
        engine = ModelEngine()
        assert engine.model is None and engine.queue_depth == 0
        with pytest.raises(NoModelLoaded):
            await engine.predict([1, 2, 3, 0])
        await engine.close()

    asyncio.run(scenario())


def test_swap_under_concurrent_load_attributes_every_answer_to_its_own_model(
    labels: tuple[str, ...],
) -> None:
    model_a = load_model(ModelFile.from_bytes(mlp_bytes(labels, "swap-a", seed=10)), set(labels))
    model_b = load_model(ModelFile.from_bytes(mlp_bytes(labels, "swap-b", seed=11)), set(labels))
    inputs = all_score_inputs()
    # the two models disagree on every input, so an answer identifies its model
    gap = np.abs(model_a.run(inputs) - model_b.run(inputs)).max(axis=1)
    assert gap.min() > 0.1
    calls, swaps = 2000, 20

    async def scenario() -> tuple[list[tuple[int, Prediction]], list[str], ModelEngine]:
        engine = ModelEngine(BatchSettings(max_batch_size=64))
        assert engine.swap(model_a) is None
        installed: list[str] = []
        rng = random.Random(5)
        delays = sorted(rng.uniform(0, 0.6) for _ in range(calls))

        async def caller(i: int, delay: float) -> tuple[int, Prediction]:
            await asyncio.sleep(delay)
            return i, await engine.predict(inputs[i % len(inputs)].tolist())

        async def swapper() -> None:
            for n in range(swaps):
                await asyncio.sleep(0.025)
                model = model_b if n % 2 == 0 else model_a
                previous = engine.swap(model)
                assert previous is not None and previous is not model
                installed.append(model.version)

        async with asyncio.timeout(HANG):
            *results, _ = await asyncio.gather(
                *(caller(i, d) for i, d in enumerate(delays)), swapper()
            )
            await engine.close()
        return results, installed, engine  # type: ignore[return-value]

    results, installed, engine = asyncio.run(scenario())
    assert len(results) == calls and len(installed) == swaps
    served = {"swap-a": 0, "swap-b": 0}
    for i, prediction in results:
        x = inputs[i % len(inputs)]
        own = prediction.model.run(x[None, :])[0]
        other = (model_b if prediction.model is model_a else model_a).run(x[None, :])[0]
        np.testing.assert_allclose(prediction.logits, own, rtol=1e-5, atol=1e-5)
        assert np.abs(prediction.logits - other).max() > 0.1
        served[prediction.model.version] += 1
    assert min(served.values()) > 100, served  # both models really served under load
    stats = engine.stats
    assert stats.failed_batches == 0 and stats.rejected == 0
    assert stats.items == calls
    assert stats.batches < calls  # batching happened
    assert sum(size * n for size, n in stats.batch_sizes.items()) == calls
    assert engine.model is (model_a if swaps % 2 == 0 else model_b)


def test_a_swap_lets_queued_requests_finish_on_the_old_model(labels: tuple[str, ...]) -> None:
    """Requests queued on the old batcher when the swap happens are answered by the old model."""
    model_a = load_model(ModelFile.from_bytes(mlp_bytes(labels, "queued-a", seed=20)))
    model_b = load_model(ModelFile.from_bytes(mlp_bytes(labels, "queued-b", seed=21)))

    async def scenario() -> list[Prediction]:
        engine = ModelEngine(BatchSettings(max_batch_size=4))
        engine.swap(model_a)
        before = [asyncio.ensure_future(engine.predict([i % 4, 1, 2, 3])) for i in range(40)]
        await asyncio.sleep(0)  # all 40 queued on model A's batcher
        assert engine.queue_depth == 40
        engine.swap(model_b)
        assert engine.queue_depth == 0  # the new batcher starts empty
        after = [asyncio.ensure_future(engine.predict([i % 4, 1, 2, 3])) for i in range(10)]
        async with asyncio.timeout(HANG):
            done = await asyncio.gather(*before, *after)
            await engine.close()
        return done

    done = asyncio.run(scenario())
    assert [p.model.version for p in done] == ["queued-a"] * 40 + ["queued-b"] * 10
    for prediction in done[:40]:
        assert prediction.model is model_a


def test_the_bundled_model_ranks_deterministically(bundled: ModelFile) -> None:
    inputs = all_score_inputs()

    async def rankings(model: LoadedModel, concurrent: bool) -> list[list[int]]:
        engine = ModelEngine()
        engine.swap(model)
        async with asyncio.timeout(HANG):
            if concurrent:
                predictions = await asyncio.gather(*(engine.predict(x) for x in inputs.tolist()))
            else:
                predictions = [await engine.predict(x) for x in inputs.tolist()]
            await engine.close()
        return [p.ranking for p in predictions]

    first = load_model(bundled, set(bundled.metadata.labels))
    second = load_model(ModelFile.read(BUNDLED))
    lone = asyncio.run(rankings(first, concurrent=False))
    batched = asyncio.run(rankings(first, concurrent=True))
    reloaded = asyncio.run(rankings(second, concurrent=True))
    assert lone == batched == reloaded
    # the same as a stable sort of one whole-batch run
    direct = np.argsort(-first.run(inputs), axis=1, kind="stable").tolist()
    assert lone == direct
    for ranking in lone:
        assert sorted(ranking) == list(range(len(bundled.metadata.labels)))


def test_prediction_ranking_breaks_ties_by_label_order(bundled: ModelFile) -> None:
    model = load_model(bundled)
    logits = np.array([1.0, 3.0, 3.0, 0.5, 3.0] + [0.0] * 14, dtype=np.float32)
    prediction = Prediction(logits=logits, model=model)
    assert prediction.ranking[:5] == [1, 2, 4, 0, 3]
    assert prediction.top(2) == [bundled.metadata.labels[1], bundled.metadata.labels[2]]


def test_one_malformed_request_does_not_stall_the_engine(bundled: ModelFile) -> None:
    model = load_model(bundled)

    async def scenario() -> None:
        engine = ModelEngine()
        engine.swap(model)
        try:
            async with asyncio.timeout(2.0):  # with the bug, this is where it hangs
                outcomes = await asyncio.gather(
                    *(engine.predict([i % 4, 1, 2, 3]) for i in range(5)),
                    engine.predict([1, 2, 3]),  # one caller sends a row of 3 scores
                    return_exceptions=True,
                )
                assert isinstance(outcomes[-1], Exception)
                # the engine keeps serving well-formed requests
                prediction = await engine.predict([3, 0, 2, 1])
                assert prediction.model is model
        finally:
            with contextlib.suppress(Exception):  # with the bug, re-raises the loop's error
                await engine.close()
            engine.executor.shutdown(wait=False)

    asyncio.run(scenario())
