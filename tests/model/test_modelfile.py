"""The model-file contract rejects every kind of bad file with the reason in the message.

Bad models are built by hand with onnx.helper so each test breaks exactly one rule.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
from onnx import TensorProto, helper, numpy_helper

from model.modelfile import (
    FORMAT_VERSION,
    ModelFile,
    ModelFileError,
    ModelMetadata,
    build_mlp,
)
from model.scoring import INPUT_KIND

LABELS = ("a", "b", "c", "d")


def props(**overrides: str | None) -> dict[str, str]:
    """Valid metadata with some keys replaced (or dropped when the value is None)."""
    base = {
        "format": FORMAT_VERSION,
        "model_version": "test-1",
        "input": INPUT_KIND,
        "labels": json.dumps(list(LABELS)),
    }
    base.update(overrides)
    return {f"hollang.{key}": value for key, value in base.items() if value is not None}


def onnx_model(
    metadata: dict[str, str] | None = None,
    *,
    input_type: int = TensorProto.FLOAT,
    input_shape: tuple[object, ...] = ("batch", 4),
    output_width: int = len(LABELS),
    batch: object = "batch",
    input_name: str = "scores",
    output_name: str = "logits",
) -> bytes:
    """A one-Gemm graph: Cast(input) -> Gemm -> logits, loadable by ONNX Runtime."""
    width = input_shape[1]
    weight = numpy_helper.from_array(np.ones((output_width, width), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(output_width, np.float32), "b")
    nodes = [
        helper.make_node("Cast", [input_name], ["as_float"], to=TensorProto.FLOAT),
        helper.make_node("Gemm", ["as_float", "w", "b"], [output_name], transB=1),
    ]
    graph = helper.make_graph(
        nodes,
        "test",
        [helper.make_tensor_value_info(input_name, input_type, list(input_shape))],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, output_width])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props() if metadata is None else metadata)
    return model.SerializeToString()


def rejects(data: bytes, *fragments: str) -> None:
    with pytest.raises(ModelFileError) as caught:
        ModelFile.from_bytes(data)
    for fragment in fragments:
        assert fragment in str(caught.value)


def test_the_helper_builds_a_valid_model() -> None:
    assert ModelFile.from_bytes(onnx_model()).metadata.labels == LABELS


@pytest.mark.parametrize(
    "data", [b"", b"definitely not onnx", onnx_model()[:40], onnx_model()[:-9]]
)
def test_not_onnx_or_truncated(data: bytes) -> None:
    rejects(data, "not a loadable ONNX model")


@pytest.mark.parametrize("key", ["format", "model_version", "input", "labels"])
def test_missing_metadata_key(key: str) -> None:
    rejects(onnx_model(props(**{key: None})), f"'hollang.{key}' is missing")


def test_blank_metadata_counts_as_missing() -> None:
    rejects(onnx_model(props(model_version="  ")), "'hollang.model_version' is missing")


def test_wrong_format_version() -> None:
    rejects(onnx_model(props(format="2")), "unsupported format version '2'")


def test_wrong_input_kind() -> None:
    rejects(onnx_model(props(input="answers-12/v1")), "unsupported input 'answers-12/v1'")


@pytest.mark.parametrize(
    ("labels", "reason"),
    [
        ("[not json", "is not JSON"),
        (json.dumps(["a", "b", "a", "d"]), "labels must be unique"),
        (json.dumps(["a", "b"]), "at least 3"),
        (json.dumps({"0": "a", "1": "b", "2": "c"}), "JSON array"),
        (json.dumps(["a", "", "c"]), "non-empty strings"),
        (json.dumps(["a", 2, "c"]), "non-empty strings"),
    ],
)
def test_bad_labels(labels: str, reason: str) -> None:
    rejects(onnx_model(props(labels=labels)), reason)


@pytest.mark.parametrize("version", ["x" * 65, "tab\there"])
def test_bad_model_version(version: str) -> None:
    rejects(onnx_model(props(model_version=version)), "model_version must be printable")


def test_input_of_width_3() -> None:
    rejects(onnx_model(input_shape=("batch", 3)), "input shape must be [batch, 4]")


def test_fixed_batch_dimension() -> None:
    rejects(onnx_model(input_shape=(1, 4), batch=1), "dynamic batch")


def test_output_width_differs_from_label_count() -> None:
    rejects(onnx_model(output_width=len(LABELS) + 1), "output shape must be [batch, 4]")


@pytest.mark.parametrize("input_type", [TensorProto.DOUBLE, TensorProto.INT64])
def test_non_float_input(input_type: int) -> None:
    rejects(onnx_model(input_type=input_type), "input must be float32")


def test_wrong_input_and_output_names() -> None:
    rejects(onnx_model(input_name="x"), "exactly one input named 'scores'")
    rejects(onnx_model(output_name="y"), "first output must be named 'logits'")


def test_build_mlp_round_trips_metadata() -> None:
    rng = np.random.default_rng(0)
    layers = [
        (rng.normal(size=(8, 4)).astype(np.float32), rng.normal(size=8).astype(np.float32)),
        (rng.normal(size=(5, 8)).astype(np.float32), rng.normal(size=5).astype(np.float32)),
    ]
    metadata = ModelMetadata(
        model_version="round-trip-1",
        labels=("취미 하나", "two", "three", "four", "five"),
        description="round trip",
    )
    model_file = ModelFile.from_bytes(build_mlp(layers, metadata))
    assert model_file.metadata == metadata
    described = model_file.describe()
    assert described["modelVersion"] == "round-trip-1"
    assert described["labels"] == list(metadata.labels)
    assert described["sizeBytes"] == len(model_file.data)


def test_build_mlp_refuses_a_last_layer_narrower_than_the_labels() -> None:
    layer = (np.zeros((3, 4), np.float32), np.zeros(3, np.float32))
    with pytest.raises(ModelFileError, match="number of labels"):
        build_mlp([layer], ModelMetadata(model_version="v", labels=LABELS))
