"""Hostile model files, built with the `onnx` helper API: each one is a valid ONNX file with
the right metadata and signature, and each misbehaves in one way a validator must catch.

"Other sizes" means batch sizes other than 1 and 256, the only two the old validation ran.
`validator_pids` finds the sandbox children that are validating one.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from model.modelfile import ModelFile, ModelMetadata, build_mlp

BUNDLED = Path(__file__).resolve().parents[2] / "model" / "bundled" / "default.onnx"
LABELS: tuple[str, ...] = ModelFile.read(BUNDLED).metadata.labels
WIDTH = len(LABELS)


def _model(version: str, nodes: list[onnx.NodeProto], inits: list[onnx.TensorProto]) -> bytes:
    """A graph `scores [batch, 4] -> logits [batch, labels]` with Hollang's metadata."""
    graph = helper.make_graph(
        nodes,
        version,
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 4])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", WIDTH])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, ModelMetadata(version, LABELS).to_props())
    data: bytes = model.SerializeToString()
    return data


def _good(seed: int = 5) -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing a sound answer into `good` ([batch, labels])."""
    rng = np.random.default_rng(seed)
    inits = [
        numpy_helper.from_array(rng.normal(size=(WIDTH, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(size=WIDTH).astype(np.float32), "b"),
    ]
    return [helper.make_node("Gemm", ["scores", "w", "b"], ["good"], transB=1)], inits


def _ok_sizes() -> tuple[list[onnx.NodeProto], list[onnx.TensorProto]]:
    """Nodes computing `ok`: a bool scalar, true when the batch has 1 or 256 rows."""
    inits = [
        numpy_helper.from_array(np.array(0, np.int64), "zero"),
        numpy_helper.from_array(np.array(1, np.int64), "one"),
        numpy_helper.from_array(np.array(256, np.int64), "n256"),
    ]
    nodes = [
        helper.make_node("Shape", ["scores"], ["shape"]),
        helper.make_node("Gather", ["shape", "zero"], ["rows"], axis=0),
        helper.make_node("Equal", ["rows", "one"], ["is1"]),
        helper.make_node("Equal", ["rows", "n256"], ["is256"]),
        helper.make_node("Or", ["is1", "is256"], ["ok"]),
    ]
    return nodes, inits


def external_data(location: str = "hollang.db") -> bytes:
    """Its weight matrix lives in `location`, read relative to the working directory."""
    nodes, inits = _good()
    weight = TensorProto(name="w", data_type=TensorProto.FLOAT, dims=[WIDTH, 4])
    weight.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(WIDTH * 16))):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    nodes.append(helper.make_node("Identity", ["good"], ["logits"]))
    return _model("external-data", nodes, [weight, inits[1]])


def external_data_in_a_subgraph(location: str = "hollang.db") -> bytes:
    """The same, hidden in the `then` branch of an If (an attribute's subgraph)."""
    nodes, inits = _good()
    hidden = TensorProto(name="hidden", data_type=TensorProto.FLOAT, dims=[1])
    hidden.data_location = TensorProto.EXTERNAL
    entry = hidden.external_data.add()
    entry.key, entry.value = "location", location
    branch = helper.make_graph(
        [helper.make_node("Add", ["good", "hidden"], ["then_out"])],
        "then",
        [],
        [helper.make_tensor_value_info("then_out", TensorProto.FLOAT, None)],
        [hidden],
    )
    other = helper.make_graph(
        [helper.make_node("Identity", ["good"], ["else_out"])],
        "else",
        [],
        [helper.make_tensor_value_info("else_out", TensorProto.FLOAT, None)],
    )
    inits.append(numpy_helper.from_array(np.array(True), "yes"))
    nodes.append(helper.make_node("If", ["yes"], ["logits"], then_branch=branch, else_branch=other))
    return _model("external-in-subgraph", nodes, inits)


def nan_at_other_sizes() -> bytes:
    nodes, inits = _good()
    more, more_inits = _ok_sizes()
    inits += [*more_inits, numpy_helper.from_array(np.array(np.nan, np.float32), "nan")]
    nodes += [
        *more,
        helper.make_node("Add", ["good", "nan"], ["poisoned"]),
        helper.make_node("Where", ["ok", "good", "poisoned"], ["logits"]),
    ]
    return _model("nan-other-sizes", nodes, inits)


def extra_row_at_other_sizes() -> bytes:
    nodes, inits = _good()
    more, more_inits = _ok_sizes()
    inits += [*more_inits, numpy_helper.from_array(np.array([0], np.int64), "start")]
    nodes += [
        *more,
        helper.make_node("Not", ["ok"], ["bad"]),
        helper.make_node("Cast", ["bad"], ["extra"], to=TensorProto.INT64),
        helper.make_node("Unsqueeze", ["extra", "start"], ["end"]),  # [0] or [1]
        helper.make_node("Slice", ["good", "start", "end", "start"], ["extra_rows"]),
        helper.make_node("Concat", ["good", "extra_rows"], ["logits"], axis=0),
    ]
    return _model("extra-row-other-sizes", nodes, inits)


def _loop(trip_count_name: str, out: str) -> onnx.NodeProto:
    """A Loop of `trip_count_name` iterations that adds 1 to a float each time."""
    body = helper.make_graph(
        [
            helper.make_node("Identity", ["cond_in"], ["cond_out"]),
            helper.make_node("Add", ["acc_in", "step"], ["acc_out"]),
        ],
        "body",
        [
            helper.make_tensor_value_info("i", TensorProto.INT64, []),
            helper.make_tensor_value_info("cond_in", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_in", TensorProto.FLOAT, []),
        ],
        [
            helper.make_tensor_value_info("cond_out", TensorProto.BOOL, []),
            helper.make_tensor_value_info("acc_out", TensorProto.FLOAT, []),
        ],
        [numpy_helper.from_array(np.array(1.0, np.float32), "step")],
    )
    return helper.make_node("Loop", [trip_count_name, "true", "acc0"], [out], body=body)


def _loop_inits() -> list[onnx.TensorProto]:
    return [
        numpy_helper.from_array(np.array(True), "true"),
        numpy_helper.from_array(np.array(0.0, np.float32), "acc0"),
        numpy_helper.from_array(np.array(0.0, np.float32), "nothing"),
    ]


def slow_at_other_sizes(iterations: int = 300_000) -> bytes:
    """Fast at 1 and 256 rows; a long Loop (hundreds of ms) at every other size."""
    nodes, inits = _good()
    more, more_inits = _ok_sizes()
    inits += [
        *more_inits,
        *_loop_inits(),
        numpy_helper.from_array(np.array(iterations, np.int64), "many"),
    ]
    nodes += [
        *more,
        helper.make_node("Where", ["ok", "zero", "many"], ["trips"]),
        _loop("trips", "spent"),
        helper.make_node("Mul", ["spent", "nothing"], ["zeroed"]),
        helper.make_node("Add", ["good", "zeroed"], ["logits"]),
    ]
    return _model("slow-other-sizes", nodes, inits)


def endless_loop() -> bytes:
    """A Loop of 1e13 iterations: it never finishes."""
    nodes, inits = _good()
    inits += [*_loop_inits(), numpy_helper.from_array(np.array(10**13, np.int64), "forever")]
    nodes += [
        _loop("forever", "spent"),
        helper.make_node("Mul", ["spent", "nothing"], ["zeroed"]),
        helper.make_node("Add", ["good", "zeroed"], ["logits"]),
    ]
    return _model("endless-loop", nodes, inits)


def allocates_1gib() -> bytes:
    """2 KB on disk; at run time a 1 GiB tensor whose shape depends on the input, so no
    constant folding at session creation can see it coming."""
    nodes, inits = _good()
    inits += [
        numpy_helper.from_array(np.array([0], np.int64), "first"),
        numpy_helper.from_array(np.array([1 << 28], np.int64), "quarter_giga"),
        numpy_helper.from_array(np.array(0.0, np.float32), "nothing"),
    ]
    nodes += [
        helper.make_node("Shape", ["scores"], ["shape"]),
        helper.make_node("Gather", ["shape", "first"], ["rows"], axis=0),  # [batch]
        helper.make_node("Min", ["rows", "first"], ["zero_from_input"]),  # [0]
        helper.make_node("Add", ["zero_from_input", "quarter_giga"], ["huge_shape"]),
        helper.make_node(
            "ConstantOfShape",
            ["huge_shape"],
            ["huge"],
            value=numpy_helper.from_array(np.array([1.0], np.float32)),
        ),
        helper.make_node("ReduceSum", ["huge"], ["total"], keepdims=0),
        helper.make_node("Mul", ["total", "nothing"], ["zeroed"]),
        helper.make_node("Add", ["good", "zeroed"], ["logits"]),
    ]
    return _model("allocates-1gib", nodes, inits)


def constant(version: str = "constant") -> bytes:
    """The same logits, so the same three hobbies, for every input."""
    rng = np.random.default_rng(9)
    layers = [(np.zeros((WIDTH, 4)), rng.normal(size=WIDTH))]
    return build_mlp(layers, ModelMetadata(version, LABELS))


def reordered_labels(data: bytes, version: str) -> bytes:
    """`data`'s graph with its label list reversed: its answers under the wrong names."""
    model = onnx.load_from_string(data)
    meta = ModelFile.from_bytes(data).metadata
    del model.metadata_props[:]
    helper.set_model_props(model, ModelMetadata(version, tuple(reversed(meta.labels))).to_props())
    reordered: bytes = model.SerializeToString()
    return reordered


def mlp(version: str, seed: int) -> bytes:
    """A sound 4-16-labels MLP with seeded weights."""
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(size=(16, 4)), rng.normal(size=16)),
        (rng.normal(size=(WIDTH, 16)), rng.normal(size=WIDTH)),
    ]
    return build_mlp(layers, ModelMetadata(version, LABELS))


def validator_pids(parent: int) -> list[int]:
    """Pids of the sandbox children (`python -m model.sandbox`) of process `parent`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            cmdline = (entry / "cmdline").read_bytes()
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == parent and b"model.sandbox" in cmdline:
            found.append(int(entry.name))
    return found
