"""Import an original-style PyTorch ``state_dict`` as a Hollang model file.

The original service served a PyTorch MLP; this turns its weights into our ONNX contract so
the same recommendations can be served without PyTorch. torch is imported only inside the
functions here (the ``torch`` extra), never when the server imports `model`.

A state dict holds weights, not the architecture. We read every ``<prefix>.weight`` (2-D,
``[out, in]``) / ``<prefix>.bias`` (1-D) pair in state-dict order as one Linear layer and,
like the original, put a ReLU between layers. A network with other activations would still
"import", which is why the tests compare the result with the original's own outputs.
"""

from __future__ import annotations

import hashlib
import io
import json
from collections.abc import Mapping
from pathlib import Path

import numpy as np

from model.modelfile import ModelFile, ModelFileError, ModelMetadata, build_mlp
from model.scoring import AXES

TORCH_HINT = "PyTorch is needed to read .pt files: pip install 'hollang[torch]'"
_VERSION_PREFIX = "torch-"
Layer = tuple[str, tuple[np.ndarray, np.ndarray]]  # (state-dict prefix, (weight, bias))


class TorchNotInstalledError(RuntimeError):
    """torch is an optional extra; the CLI turns this into an install hint."""


def import_torch_state_dict(
    state_dict_path: str | Path, labels_path: str | Path, model_version: str | None = None
) -> bytes:
    """Convert a state dict + labels file into model-file bytes (checked against the contract).

    The default version, ``torch-`` + 12 hex of the file's sha256, names the exact weights, so
    importing the same file twice gives the same version and different weights never collide.
    """
    path = Path(state_dict_path)
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise ModelFileError(f"cannot read {path}: {exc.strerror}") from exc
    digest = hashlib.sha256(raw).hexdigest()
    labels = read_labels(labels_path)
    layers = linear_layers(_load_state_dict(raw, path))
    _check_chain(layers, len(labels))
    shapes = "-".join([str(layers[0][1][0].shape[1])] + [str(w.shape[0]) for _, (w, _b) in layers])
    metadata = ModelMetadata(
        model_version=model_version if model_version is not None else _VERSION_PREFIX + digest[:12],
        labels=tuple(labels),
        description=(
            f"Imported from PyTorch state dict {path.name} (sha256 {digest}); "
            f"MLP {shapes} with ReLU between layers."
        ),
    )
    data = build_mlp([pair for _, pair in layers], metadata)
    ModelFile.from_bytes(data)  # the same checks the server applies, so bad labels fail here
    return data


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
