"""The model file is the contract: one ONNX file whose `metadata_props` say how to use it.

Metadata keys (all strings):

- ``hollang.format``: format version of this contract (``FORMAT_VERSION``).
- ``hollang.model_version``: the version string recorded with every recommendation.
- ``hollang.input``: what the single input means; only ``scores-enfj/v1`` exists
  (see `model.scoring`).
- ``hollang.labels``: JSON array of hobby keys, one per output column. A key is a catalogue
  hobby's ``originalName``, the identity the original service used between its API and its
  inference server.
- ``hollang.description``: free text (optional).

The graph takes ``scores`` float32 ``[batch, 4]`` and returns ``logits`` float32
``[batch, len(labels)]``; a larger logit is a better fit.

`ModelFile.from_bytes` checks all of this by parsing the file with the `onnx` package only:
it never creates an ONNX Runtime session, because creating one already runs code chosen by
the file (constant folding, external data reads). A file must be self-contained: any tensor
whose data lives in another file (ONNX "external data", even a relative path such as
``hollang.db``) is refused here, before anything could open that file. Running the model is
untrusted work done by `model.sandbox`, in a child process.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from model.scoring import AXES, INPUT_KIND

if TYPE_CHECKING:
    import onnx

FORMAT_VERSION = "1"
INPUT_NAME = "scores"
OUTPUT_NAME = "logits"
_PREFIX = "hollang."
_MAX_VERSION_LENGTH = 64


class ModelFileError(ValueError):
    """A model file that does not meet the contract; the message says why."""


@dataclass(frozen=True)
class ModelMetadata:
    """What travels inside a model file besides the graph."""

    model_version: str
    labels: tuple[str, ...]
    input_kind: str = INPUT_KIND
    format_version: str = FORMAT_VERSION
    description: str = ""

    def to_props(self) -> dict[str, str]:
        props = {
            f"{_PREFIX}format": self.format_version,
            f"{_PREFIX}model_version": self.model_version,
            f"{_PREFIX}input": self.input_kind,
            f"{_PREFIX}labels": json.dumps(list(self.labels), ensure_ascii=False),
        }
        if self.description:
            props[f"{_PREFIX}description"] = self.description
        return props

    @classmethod
    def from_props(cls, props: Mapping[str, str]) -> ModelMetadata:
        def need(key: str) -> str:
            value = props.get(_PREFIX + key)
            if value is None or not value.strip():
                raise ModelFileError(f"metadata '{_PREFIX}{key}' is missing")
            return value

        format_version = need("format")
        if format_version != FORMAT_VERSION:
            raise ModelFileError(
                f"unsupported format version {format_version!r} (expected {FORMAT_VERSION!r})"
            )
        input_kind = need("input")
        if input_kind != INPUT_KIND:
            raise ModelFileError(f"unsupported input {input_kind!r} (expected {INPUT_KIND!r})")
        version = need("model_version").strip()
        if len(version) > _MAX_VERSION_LENGTH or not version.isprintable():
            raise ModelFileError("model_version must be printable and at most 64 characters")
        try:
            labels = json.loads(need("labels"))
        except json.JSONDecodeError as exc:
            raise ModelFileError(f"metadata '{_PREFIX}labels' is not JSON: {exc}") from exc
        if (
            not isinstance(labels, list)
            or len(labels) < 3
            or not all(isinstance(label, str) and label for label in labels)
        ):
            raise ModelFileError("labels must be a JSON array of at least 3 non-empty strings")
        if len(set(labels)) != len(labels):
            raise ModelFileError("labels must be unique")
        return cls(
            model_version=version,
            labels=tuple(labels),
            input_kind=input_kind,
            format_version=format_version,
            description=props.get(f"{_PREFIX}description", ""),
        )


@dataclass(frozen=True)
class ModelFile:
    """The bytes of a model file, checked against the contract, with its metadata."""

    data: bytes = field(repr=False)
    metadata: ModelMetadata
    sha256: str

    @classmethod
    def from_bytes(cls, data: bytes) -> ModelFile:
        """Parse and check a file: self-contained, metadata, declared names, types, shapes.

        Static: nothing in the file runs (see the module docstring)."""
        proto = parse_model(data)
        metadata = ModelMetadata.from_props({p.key: p.value for p in proto.metadata_props})
        check_signature(_DeclaredSignature(proto.graph), len(metadata.labels))
        return cls(data=data, metadata=metadata, sha256=hashlib.sha256(data).hexdigest())

    @classmethod
    def read(cls, path: str | Path) -> ModelFile:
        try:
            data = Path(path).read_bytes()
        except OSError as exc:
            raise ModelFileError(f"cannot read {path}: {exc.strerror}") from exc
        return cls.from_bytes(data)

    def describe(self) -> dict[str, object]:
        """A JSON-ready summary, for `hollang model inspect` and the admin API."""
        meta = self.metadata
        return {
            "modelVersion": meta.model_version,
            "formatVersion": meta.format_version,
            "input": meta.input_kind,
            "labels": list(meta.labels),
            "description": meta.description,
            "sha256": self.sha256,
            "sizeBytes": len(self.data),
        }


def parse_model(data: bytes) -> onnx.ModelProto:
    """The file as an ONNX protobuf, refused if it is not one or is not self-contained."""
    import onnx
    from google.protobuf.message import DecodeError

    try:
        proto: onnx.ModelProto = onnx.ModelProto.FromString(data)
    except (DecodeError, ValueError, RuntimeError) as exc:
        raise ModelFileError(f"not a loadable ONNX model: {_first_line(exc)}") from exc
    if not proto.HasField("graph"):
        raise ModelFileError("not a loadable ONNX model: the file has no graph")
    external = external_tensors(proto)
    if external:
        raise ModelFileError(
            f"{len(external)} tensor(s) use external data ({', '.join(external[:3])}); "
            "a model file must carry all its data itself"
        )
    return proto


def external_tensors(proto: onnx.ModelProto) -> list[str]:
    """Every tensor whose data would be read from another file: initializers, sparse
    initializers, attribute tensors, in the main graph, every subgraph and every function."""
    import onnx

    found: list[str] = []

    def tensor(item: onnx.TensorProto, where: str) -> None:
        if item.data_location == onnx.TensorProto.EXTERNAL or len(item.external_data) > 0:
            location = next((e.value for e in item.external_data if e.key == "location"), "")
            found.append(f"{where} {item.name!r} -> {location!r}")

    def sparse(item: onnx.SparseTensorProto, where: str) -> None:
        tensor(item.values, where)
        tensor(item.indices, where)

    def node(item: onnx.NodeProto) -> None:
        for attribute in item.attribute:
            where = f"attribute {attribute.name!r} of node {item.name or item.op_type!r}"
            if attribute.HasField("t"):
                tensor(attribute.t, where)
            for each in attribute.tensors:
                tensor(each, where)
            if attribute.HasField("sparse_tensor"):
                sparse(attribute.sparse_tensor, where)
            for each_sparse in attribute.sparse_tensors:
                sparse(each_sparse, where)
            if attribute.HasField("g"):
                graph(attribute.g)
            for subgraph in attribute.graphs:
                graph(subgraph)

    def graph(item: onnx.GraphProto) -> None:
        for each in item.initializer:
            tensor(each, "initializer")
        for each_sparse in item.sparse_initializer:
            sparse(each_sparse, "sparse initializer")
        for each_node in item.node:
            node(each_node)

    graph(proto.graph)
    for function in proto.functions:
        for each_node in function.node:
            node(each_node)
    return found


@dataclass(frozen=True)
class _Arg:
    """A graph input or output as ONNX Runtime's `NodeArg` shows it: name, type, shape."""

    name: str
    type: str
    shape: list[int | str | None]


class _DeclaredSignature:
    """The graph's declared inputs and outputs, read from the protobuf, in the shape
    `check_signature` expects of a session, so both paths give the same messages."""

    def __init__(self, graph: onnx.GraphProto) -> None:
        initialized = {item.name for item in graph.initializer}
        self._inputs = [_arg(v) for v in graph.input if v.name not in initialized]
        self._outputs = [_arg(v) for v in graph.output]

    def get_inputs(self) -> list[_Arg]:
        return self._inputs

    def get_outputs(self) -> list[_Arg]:
        return self._outputs


def _arg(value: onnx.ValueInfoProto) -> _Arg:
    import onnx

    kind = value.type.tensor_type
    if not value.type.HasField("tensor_type"):
        return _Arg(value.name, "not a tensor", [])
    name = onnx.TensorProto.DataType.Name(kind.elem_type).lower() if kind.elem_type else "?"
    type_name = "tensor(float)" if kind.elem_type == onnx.TensorProto.FLOAT else f"tensor({name})"
    shape: list[int | str | None] = []
    for dim in kind.shape.dim:
        if dim.HasField("dim_value"):
            shape.append(dim.dim_value)
        else:
            shape.append(dim.dim_param or None)
    return _Arg(value.name, type_name, shape)


def check_signature(session: object, label_count: int) -> None:
    """The graph must take ``scores`` [batch, 4] float32 and give ``logits`` [batch, labels]."""
    inputs = session.get_inputs()  # type: ignore[attr-defined]
    outputs = session.get_outputs()  # type: ignore[attr-defined]
    if len(inputs) != 1 or inputs[0].name != INPUT_NAME:
        raise ModelFileError(f"the graph must have exactly one input named '{INPUT_NAME}'")
    if len(outputs) < 1 or outputs[0].name != OUTPUT_NAME:
        raise ModelFileError(f"the graph's first output must be named '{OUTPUT_NAME}'")
    for arg, width, what in ((inputs[0], len(AXES), "input"), (outputs[0], label_count, "output")):
        if arg.type != "tensor(float)":
            raise ModelFileError(f"{what} must be float32, not {arg.type}")
        shape = arg.shape
        if len(shape) != 2 or shape[1] != width or isinstance(shape[0], int):
            raise ModelFileError(
                f"{what} shape must be [batch, {width}] with a dynamic batch, not {shape}"
            )


ACTIVATIONS = ("Relu", "Tanh", "Sigmoid")


def build_mlp(
    layers: Sequence[tuple[np.ndarray, np.ndarray]],
    metadata: ModelMetadata,
    activations: Sequence[str] | None = None,
) -> bytes:
    """Write an MLP (Gemm + an activation between layers, ReLU unless `activations` names
    one of `ACTIVATIONS` per gap) as a model file.

    Weights use PyTorch's ``Linear`` layout, ``[out, in]``; the last layer has no
    activation. Used by `hollang model train` and `hollang model import-torch`, so both
    write the same format.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layers[-1][0].shape[0] != len(metadata.labels):
        raise ModelFileError("the last layer's width must equal the number of labels")
    between = list(activations) if activations is not None else ["Relu"] * (len(layers) - 1)
    if len(between) != len(layers) - 1 or any(kind not in ACTIVATIONS for kind in between):
        raise ModelFileError(f"one activation of {ACTIVATIONS} is needed between each two layers")
    nodes = []
    initializers = []
    current = INPUT_NAME
    for index, (weight, bias) in enumerate(layers):
        w_name, b_name = f"layer{index}.weight", f"layer{index}.bias"
        initializers.append(numpy_helper.from_array(np.asarray(weight, np.float32), w_name))
        initializers.append(numpy_helper.from_array(np.asarray(bias, np.float32), b_name))
        last = index == len(layers) - 1
        out = OUTPUT_NAME if last else f"layer{index}.linear"
        nodes.append(helper.make_node("Gemm", [current, w_name, b_name], [out], transB=1))
        if not last:
            kind = between[index]
            nodes.append(helper.make_node(kind, [out], [f"layer{index}.{kind.lower()}"]))
            current = f"layer{index}.{kind.lower()}"
    graph = helper.make_graph(
        nodes,
        "hollang_recommender",
        [helper.make_tensor_value_info(INPUT_NAME, TensorProto.FLOAT, ["batch", len(AXES)])],
        [
            helper.make_tensor_value_info(
                OUTPUT_NAME, TensorProto.FLOAT, ["batch", len(metadata.labels)]
            )
        ],
        initializers,
    )
    model = helper.make_model(
        graph, producer_name="hollang", opset_imports=[helper.make_opsetid("", 17)]
    )
    model.ir_version = 8  # readable by every ONNX Runtime from 1.14 on
    helper.set_model_props(model, metadata.to_props())
    onnx.checker.check_model(model)
    data: bytes = model.SerializeToString()
    return data


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:300] if text else type(exc).__name__


def read_mlp(data: bytes) -> list[tuple[np.ndarray, np.ndarray]] | None:
    """The layers of a file that is exactly the MLP `build_mlp` writes (Gemm with
    ``transB=1``, Relu between, the last Gemm giving ``logits``), ``[out, in]`` each; None
    for any other graph. Lets feedback training start from the served weights themselves
    (`model.refine`), so what nobody rated stays exactly as it was."""
    from onnx import numpy_helper

    graph = parse_model(data).graph
    weights = {item.name: numpy_helper.to_array(item) for item in graph.initializer}
    layers: list[tuple[np.ndarray, np.ndarray]] = []
    current = INPUT_NAME
    nodes = list(graph.node)
    index = 0
    while index < len(nodes):
        gemm = nodes[index]
        attributes = {a.name: a for a in gemm.attribute}
        if (
            gemm.op_type != "Gemm"
            or gemm.domain not in ("", "ai.onnx")
            or len(gemm.input) != 3
            or gemm.input[0] != current
            or gemm.input[1] not in weights
            or gemm.input[2] not in weights
            or attributes.get("transB") is None
            or attributes["transB"].i != 1
            or any(name in attributes and attributes[name].i != 0 for name in ("transA",))
            or any(name in attributes and attributes[name].f != 1.0 for name in ("alpha", "beta"))
        ):
            return None
        weight, bias = weights[gemm.input[1]], weights[gemm.input[2]]
        if weight.ndim != 2 or bias.ndim != 1 or bias.shape[0] != weight.shape[0]:
            return None
        layers.append((weight, bias))
        current = gemm.output[0]
        index += 1
        if current == OUTPUT_NAME:
            break
        if (
            index >= len(nodes)
            or nodes[index].op_type != "Relu"
            or nodes[index].input[0] != current
        ):
            return None
        current = nodes[index].output[0]
        index += 1
    if current != OUTPUT_NAME or index != len(nodes):
        return None
    return layers


def stamp(data: bytes, metadata: ModelMetadata) -> bytes:
    """`data` (an ONNX file exported elsewhere, e.g. by ``torch.onnx.export``) with our
    metadata: every ``hollang.*`` key it had is replaced, other keys are kept. The result
    is checked statically (`ModelFile.from_bytes`); running it is `model.sandbox`'s job."""
    proto = parse_model(data)
    kept = [(p.key, p.value) for p in proto.metadata_props if not p.key.startswith(_PREFIX)]
    del proto.metadata_props[:]
    for key, value in [*kept, *metadata.to_props().items()]:
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value
    stamped: bytes = proto.SerializeToString()
    ModelFile.from_bytes(stamped)
    return stamped
