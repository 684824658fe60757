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
``[batch, len(labels)]``; a larger logit is a better fit. `ModelFile.from_bytes` checks all
of this with ONNX Runtime alone, so the server never needs the `onnx` package; only
`build_mlp`, used by the offline tools, does.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.scoring import AXES, INPUT_KIND

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
        """Parse and check a file: metadata, and input/output names, types and shapes."""
        import onnxruntime as ort

        try:
            session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as exc:  # ORT raises several private exception types
            raise ModelFileError(f"not a loadable ONNX model: {_first_line(exc)}") from exc
        metadata = ModelMetadata.from_props(session.get_modelmeta().custom_metadata_map)
        check_signature(session, len(metadata.labels))
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


def build_mlp(layers: Sequence[tuple[np.ndarray, np.ndarray]], metadata: ModelMetadata) -> bytes:
    """Write an MLP (Gemm + ReLU between layers) as a model file.

    Weights use PyTorch's ``Linear`` layout, ``[out, in]``; the last layer has no ReLU. Used by
    `hollang model train` and `hollang model import-torch`, so both write the same format.
    """
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    if layers[-1][0].shape[0] != len(metadata.labels):
        raise ModelFileError("the last layer's width must equal the number of labels")
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
            nodes.append(helper.make_node("Relu", [out], [f"layer{index}.relu"]))
            current = f"layer{index}.relu"
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
