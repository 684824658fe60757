"""Import an original-style PyTorch network as a Hollang model file.

The original service served a PyTorch MLP; this turns its weights into our ONNX contract so
the same recommendations can be served without PyTorch. torch is imported only inside the
functions here (the ``torch`` extra), never when the server imports `model`.

Two sources, and what each can prove:

- **A state dict** (``torch.save(net.state_dict())``) holds weights, not the architecture.
  We read every ``<prefix>.weight`` (2-D, ``[out, in]``) / ``<prefix>.bias`` (1-D) pair in
  state-dict order as one Linear layer and put the activation the caller names between
  layers (ReLU, the original's, unless ``activation`` says Tanh or Sigmoid). Whether that is
  the network's real activation, the weights cannot tell: a Tanh network read as ReLU once
  imported with exit 0 and agreed on 25% of first picks.
- **An exported program** (``torch.export.save(torch.export.export(net, ...))``) carries
  the graph too. We read the layers *and* the activations from it and refuse any operation
  we cannot reproduce (anything but linear, ReLU, Tanh and Sigmoid in a chain), naming it.

Either way, before anything is written, the ONNX file runs on all 256 inputs and must agree
with torch (`check_parity`): the exported program itself, or for a state dict the network
as torch computes it from those weights (which catches a lossy float conversion, not a wrong
activation; the program is the way to prove that).
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from model.modelfile import ModelFile, ModelFileError, ModelMetadata, build_mlp
from model.scoring import AXES, all_score_inputs

# torch's name -> the ONNX operator `build_mlp` writes
TORCH_ACTIVATIONS = {"relu": "Relu", "tanh": "Tanh", "sigmoid": "Sigmoid"}
# largest |onnx - torch| allowed, relative to the largest |logit| (float32 sums in another order)
PARITY_TOLERANCE = 1e-4
TORCH_HINT = "PyTorch is needed to read .pt files: pip install 'hollang[torch]'"
_VERSION_PREFIX = "torch-"
Layer = tuple[str, tuple[np.ndarray, np.ndarray]]  # (state-dict prefix, (weight, bias))


class TorchNotInstalledError(RuntimeError):
    """torch is an optional extra; the CLI turns this into an install hint."""


def import_torch_state_dict(
    state_dict_path: str | Path,
    labels_path: str | Path,
    model_version: str | None = None,
    activation: str = "relu",
) -> bytes:
    """Convert a state dict + labels file into model-file bytes (checked against the contract
    and, on every input, against torch).

    The default version, ``torch-`` + 12 hex of the file's sha256, names the exact weights, so
    importing the same file twice gives the same version and different weights never collide.
    """
    if activation not in TORCH_ACTIVATIONS:
        raise ModelFileError(f"activation must be one of {sorted(TORCH_ACTIVATIONS)}")
    path = Path(state_dict_path)
    raw = _read(path)
    state_dict = _load_state_dict(raw, path)
    layers = linear_layers(state_dict)
    kinds = [TORCH_ACTIVATIONS[activation]] * (len(layers) - 1)
    data = _build(path, "state dict", raw, layers, kinds, labels_path, model_version)
    check_parity(data, _torch_reference(state_dict, layers, activation))
    return data


def import_torch_program(
    program_path: str | Path, labels_path: str | Path, model_version: str | None = None
) -> bytes:
    """Convert a ``torch.export`` program (.pt2) + labels file into model-file bytes,
    reading the activations from its graph and refusing operations we cannot reproduce."""
    path = Path(program_path)
    raw = _read(path)
    program = _load_program(raw, path)
    layers, kinds = _program_layers(program)
    data = _build(path, "exported program", raw, layers, kinds, labels_path, model_version)
    check_parity(data, _program_reference(program))
    return data


def check_parity(data: bytes, reference: np.ndarray) -> None:
    """The file's logits on all 256 inputs must equal torch's (float32 rounding aside) and
    give the same top 3 in the same order; else `ModelFileError` saying where they part."""
    import onnxruntime as ort

    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    ours = session.run(None, {"scores": all_score_inputs()})[0].astype(np.float64)
    tolerance = PARITY_TOLERANCE * max(1.0, float(np.abs(reference).max()))
    worst = float(np.abs(ours - reference).max())
    ranked = np.argsort(-ours, axis=1, kind="stable")[:, :3]
    expected = np.argsort(-reference, axis=1, kind="stable")[:, :3]
    differ = np.flatnonzero((ranked != expected).any(axis=1))
    if worst > tolerance or len(differ):
        first = all_score_inputs()[differ[0] if len(differ) else 0].astype(int).tolist()
        raise ModelFileError(
            f"the converted model does not reproduce torch: logits differ by up to {worst:.4g} "
            f"(allowed {tolerance:.3g}) and the top 3 differs on {len(differ)} of 256 inputs "
            f"(first: {first}); not written"
        )


def _read(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}") from exc


def _build(
    path: Path,
    what: str,
    raw: bytes,
    layers: list[Layer],
    kinds: list[str],
    labels_path: str | Path,
    model_version: str | None,
) -> bytes:
    digest = hashlib.sha256(raw).hexdigest()
    labels = read_labels(labels_path)
    _check_chain(layers, len(labels))
    shapes = "-".join([str(layers[0][1][0].shape[1])] + [str(w.shape[0]) for _, (w, _b) in layers])
    between = sorted(set(kinds))
    metadata = ModelMetadata(
        model_version=model_version if model_version is not None else _VERSION_PREFIX + digest[:12],
        labels=tuple(labels),
        description=(
            f"Imported from PyTorch {what} {path.name} (sha256 {digest}); "
            f"MLP {shapes} with {'/'.join(between) or 'no activation'} between layers."
        ),
    )
    data = build_mlp([pair for _, pair in layers], metadata, kinds)
    ModelFile.from_bytes(data)  # the same checks the server applies, so bad labels fail here
    return data


def _torch_reference(
    state_dict: Mapping[str, object], layers: list[Layer], activation: str
) -> np.ndarray:
    """The network torch computes from the state dict's own tensors (their own dtype)."""
    import torch

    function = {"relu": torch.relu, "tanh": torch.tanh, "sigmoid": torch.sigmoid}[activation]
    tensors = {str(key): value for key, value in state_dict.items()}
    first = tensors[_key(layers[0][0], "weight")]
    assert isinstance(first, torch.Tensor)
    out = torch.from_numpy(all_score_inputs()).to(first.dtype)
    with torch.no_grad():
        for index, (name, _) in enumerate(layers):
            weight, bias = tensors[_key(name, "weight")], tensors[_key(name, "bias")]
            assert isinstance(weight, torch.Tensor) and isinstance(bias, torch.Tensor)
            out = torch.nn.functional.linear(out, weight.to(out.dtype), bias.to(out.dtype))
            if index < len(layers) - 1:
                out = function(out)
    result: np.ndarray = out.to(torch.float64).numpy()
    return result


def _key(prefix: str, kind: str) -> str:
    return kind if prefix == "<root>" else f"{prefix}.{kind}"


def _load_program(raw: bytes, path: Path) -> Any:
    try:
        import torch
    except ImportError as exc:
        raise TorchNotInstalledError(TORCH_HINT) from exc
    try:
        return torch.export.load(io.BytesIO(raw))
    except Exception as exc:  # torch raises many unrelated types for a bad file
        text = str(exc).strip().splitlines()
        reason = text[0][:300] if text else type(exc).__name__
        raise ModelFileError(f"cannot load {path} as an exported program: {reason}") from exc


def _program_layers(program: Any) -> tuple[list[Layer], list[str]]:
    """The chain linear -> activation -> ... -> linear of an exported program's graph."""
    import torch

    aten = torch.ops.aten
    activation_ops = {
        aten.relu.default: "Relu",
        aten.tanh.default: "Tanh",
        aten.sigmoid.default: "Sigmoid",
    }
    parameters = {**program.graph_signature.inputs_to_parameters}
    state = program.state_dict
    layers: list[Layer] = []
    kinds: list[str] = []
    pending: str | None = None  # an activation seen since the last linear
    for node in program.graph.nodes:
        if node.op in ("placeholder", "output"):
            continue
        if node.op != "call_function":
            raise ModelFileError(f"cannot reproduce graph node {node.op} {node.target}")
        if node.target is aten.linear.default:
            if layers and pending is None:
                raise ModelFileError("two linear layers with no activation between them")
            if pending is not None:
                kinds.append(pending)
            names = [parameters.get(getattr(arg, "name", ""), "") for arg in node.args[1:3]]
            if len(names) != 2 or not all(names):
                raise ModelFileError("a linear layer without both a weight and a bias parameter")
            weight, bias = (
                state[name].detach().to(device="cpu", dtype=torch.float32).numpy() for name in names
            )
            layers.append((names[0].rpartition(".")[0] or "<root>", (weight, bias)))
            pending = None
        elif node.target in activation_ops:
            if not layers or pending is not None:
                raise ModelFileError(f"cannot reproduce {node.target} at that place in the chain")
            pending = activation_ops[node.target]
        else:
            raise ModelFileError(
                f"cannot reproduce the operation {node.target}: import-torch converts chains "
                "of linear layers with ReLU, Tanh or Sigmoid between them; export other "
                "networks with torch.onnx.export and `hollang model stamp` them "
                "(docs/ml-workflow.md)"
            )
    if pending is not None:
        raise ModelFileError("the network ends in an activation; its logits must be linear")
    if not layers:
        raise ModelFileError("the exported program has no linear layers")
    return layers, kinds


def _program_reference(program: Any) -> np.ndarray:
    """The program's own outputs on all inputs, in batches of the size it was exported with
    when that size is fixed."""
    import torch

    inputs = torch.from_numpy(all_score_inputs())
    user_inputs = program.graph_signature.user_inputs
    size = len(inputs)
    for node in program.graph.nodes:
        if node.op == "placeholder" and node.name in user_inputs:
            value = node.meta.get("val")
            first = value.shape[0] if value is not None and value.dim() == 2 else None
            size = first if isinstance(first, int) else size
    module = program.module()
    rows = []
    with torch.no_grad():
        for start in range(0, len(inputs), size):
            batch = inputs[start : start + size]
            padded = torch.cat([batch, inputs[: size - len(batch)]]) if len(batch) < size else batch
            rows.append(module(padded)[: len(batch)].to(torch.float64))
    result: np.ndarray = torch.cat(rows).numpy()
    return result


def read_labels(path: str | Path) -> list[str]:
    """Labels from a num2content-style object (``{"0": name, ...}``) or a plain JSON list.

    Object keys must be exactly ``"0"``..``"n-1"``: a gap or an ``"01"`` would silently shift
    every hobby onto another output column.
    """
    path = Path(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ModelFileError(f"cannot read labels {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise ModelFileError(f"labels file {path} is not JSON: {exc}") from exc
    if isinstance(data, dict):
        expected = [str(index) for index in range(len(data))]
        if sorted(data, key=lambda key: (len(key), key)) != expected:
            raise ModelFileError(
                f"labels file {path}: object keys must be exactly '0'..'{len(data) - 1}'"
            )
        labels = [data[key] for key in expected]
    elif isinstance(data, list):
        labels = data
    else:
        raise ModelFileError(f"labels file {path} must hold a JSON object or array")
    if not all(isinstance(label, str) and label.strip() for label in labels):
        raise ModelFileError(f"labels file {path}: every label must be a non-empty string")
    if len(set(labels)) != len(labels):
        raise ModelFileError(f"labels file {path}: labels must be unique")
    return labels


def linear_layers(state_dict: Mapping[str, object]) -> list[Layer]:
    """Group ``<prefix>.weight``/``<prefix>.bias`` into (prefix, (weight, bias)) in dict order."""
    import torch

    grouped: dict[str, dict[str, np.ndarray]] = {}
    for key, value in state_dict.items():
        prefix, _, kind = str(key).rpartition(".")
        if kind not in ("weight", "bias"):
            raise ModelFileError(
                f"unsupported state-dict key {key!r}: only Linear weight/bias pairs are supported"
            )
        if not isinstance(value, torch.Tensor):
            raise ModelFileError(f"state-dict entry {key!r} is not a tensor")
        if not value.is_floating_point():
            raise ModelFileError(f"state-dict entry {key!r} is {value.dtype}, not floating point")
        # float32 stays bit-exact; wider/narrower floats are rounded to what ONNX will serve
        array = value.detach().to(device="cpu", dtype=torch.float32).numpy()
        if not np.isfinite(array).all():
            raise ModelFileError(f"state-dict entry {key!r} has non-finite values")
        grouped.setdefault(prefix, {})[kind] = array
    layers = []
    for prefix, pair in grouped.items():
        name = prefix or "<root>"
        if set(pair) != {"weight", "bias"}:
            missing = "bias" if "weight" in pair else "weight"
            raise ModelFileError(f"layer {name!r} has no {missing}")
        weight, bias = pair["weight"], pair["bias"]
        if weight.ndim != 2 or bias.ndim != 1:
            raise ModelFileError(
                f"layer {name!r}: weight must be 2-D and bias 1-D, "
                f"got {list(weight.shape)} and {list(bias.shape)}"
            )
        if bias.shape[0] != weight.shape[0]:
            raise ModelFileError(
                f"layer {name!r}: bias has {bias.shape[0]} values for {weight.shape[0]} outputs"
            )
        layers.append((name, (weight, bias)))
    if not layers:
        raise ModelFileError("the state dict has no Linear layers")
    return layers


def _check_chain(layers: list[Layer], label_count: int) -> None:
    width = len(AXES)
    previous = "the input"
    for name, (weight, _bias) in layers:
        if weight.shape[1] != width:
            raise ModelFileError(
                f"layer {name!r} takes {weight.shape[1]} inputs but {previous} gives {width}"
            )
        width, previous = weight.shape[0], f"layer {name!r}"
    if width != label_count:
        raise ModelFileError(
            f"the last layer gives {width} outputs but the labels file has {label_count} labels"
        )


def _load_state_dict(raw: bytes, path: Path) -> Mapping[str, object]:
    try:
        import torch
    except ImportError as exc:
        raise TorchNotInstalledError(TORCH_HINT) from exc
    try:
        # weights_only: a .pt file is a pickle; never run code from a file someone handed us
        loaded = torch.load(io.BytesIO(raw), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many unrelated types for a bad file
        text = str(exc).strip().splitlines()
        reason = text[0][:300] if text else type(exc).__name__
        raise ModelFileError(f"cannot load {path} as a state dict: {reason}") from exc
    if not isinstance(loaded, Mapping):
        raise ModelFileError(
            f"{path} holds a {type(loaded).__name__}, not a state dict (save model.state_dict())"
        )
    return loaded
