"""`hollang model stamp`: our metadata onto an ONNX file made elsewhere, checked as the
server checks it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx
import pytest
from click.testing import CliRunner
from onnx import TensorProto, helper, numpy_helper

from cli.model import model_cli
from model.modelfile import ModelFile

LABELS = ["a", "b", "c"]


def foreign_onnx(
    path: Path,
    *,
    input_name: str = "scores",
    output_name: str = "logits",
    batch: str | int = "N",
    props: dict[str, str] | None = None,
) -> Path:
    """One Gemm, as an exporter would write it: its own names, no Hollang metadata."""
    rng = np.random.default_rng(0)
    weight = numpy_helper.from_array(rng.normal(size=(3, 4)).astype(np.float32), "w")
    bias = numpy_helper.from_array(rng.normal(size=3).astype(np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", [input_name, "w", "b"], [output_name], transB=1)],
        "exported",
        [helper.make_tensor_value_info(input_name, TensorProto.FLOAT, [batch, 4])],
        [helper.make_tensor_value_info(output_name, TensorProto.FLOAT, [batch, 3])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, props or {})
    path.write_bytes(model.SerializeToString())
    return path


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(LABELS), encoding="utf-8")
    return path


def stamp(*args: str) -> object:
    return CliRunner().invoke(model_cli, ["stamp", *args])


def test_stamp_adds_the_metadata_and_keeps_the_rest(tmp_path: Path, labels: Path) -> None:
    source = foreign_onnx(
        tmp_path / "in.onnx",
        props={"producer.note": "kept", "hollang.model_version": "old", "hollang.format": "0"},
    )
    out = tmp_path / "out.onnx"
    result = stamp(str(source), "--labels", str(labels), "--version", "ext-1",
                   "--description", "from elsewhere", "-o", str(out))  # fmt: skip
    assert result.exit_code == 0, result.output  # type: ignore[attr-defined]
    stamped = ModelFile.read(out)
    assert stamped.metadata.model_version == "ext-1"
    assert stamped.metadata.labels == tuple(LABELS)
    assert stamped.metadata.description == "from elsewhere"
    props = {p.key: p.value for p in onnx.load(out).metadata_props}
    assert props["producer.note"] == "kept"
    assert props["hollang.format"] == "1"
    assert list(props).count("hollang.model_version") == 1
    assert '"ok": true' in result.output  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        ({"input_name": "input"}, "exactly one input named 'scores'"),
        ({"output_name": "output"}, "first output must be named 'logits'"),
        ({"batch": 1}, "with a dynamic batch"),
    ],
)
def test_stamp_refuses_a_graph_that_breaks_the_contract(
    tmp_path: Path, labels: Path, change: dict[str, object], reason: str
) -> None:
    source = foreign_onnx(tmp_path / "in.onnx", **change)  # type: ignore[arg-type]
    out = tmp_path / "out.onnx"
    result = stamp(str(source), "--labels", str(labels), "--version", "x", "-o", str(out))
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert reason in result.stderr  # type: ignore[attr-defined]
    assert not out.exists()


def test_stamp_checks_labels(tmp_path: Path) -> None:
    source = foreign_onnx(tmp_path / "in.onnx")
    too_many = tmp_path / "labels.json"
    too_many.write_text(json.dumps(["a", "b", "c", "d"]), encoding="utf-8")
    result = stamp(str(source), "--labels", str(too_many), "--version", "x", "-o", "out.onnx")
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "output shape must be [batch, 4]" in result.stderr  # type: ignore[attr-defined]
    catalogue = tmp_path / "catalog.json"
    catalogue.write_text(json.dumps({"hobbies": [{"originalName": "a"}]}), encoding="utf-8")
    right = tmp_path / "three.json"
    right.write_text(json.dumps(LABELS), encoding="utf-8")
    result = stamp(str(source), "--labels", str(right), "--version", "x",
                   "--labels-from", str(catalogue), "-o", str(tmp_path / "o.onnx"))  # fmt: skip
    assert result.exit_code == 1  # type: ignore[attr-defined]
    assert "2 label(s) are not catalogue hobbies: 'b', 'c'" in result.stderr  # type: ignore[attr-defined]
