"""Train Hollang's own default model with numpy alone (``hollang model train``).

The recipe, in one place:

1. **Table.** ``model/training/default.json`` lists hobbies (labels, in table order) with an
   ``affinity`` per axis E, N, F, J in [-1, 1] and a ``base``. For each of the 256 score
   inputs ``s`` (`model.scoring.all_score_inputs`), ``z = (s - 1.5) / 1.5`` (each axis in
   [-1, 1]) and ``utility_h = affinity_h . z + base_h``. The soft target is
   ``softmax(TEMPERATURE * utility)``: a distribution, not a one-hot, so the model also learns
   the order of the 2nd and 3rd picks, which we serve.
2. **Ratings** (optional, ``--export``; gzipped JSON Lines, one test response a line). Every
   rated hobby of a response is one more example at that response's scores whose target is the
   table's, with that hobby's probability multiplied by ``RATING_STEP ** (satisfaction - 3)``
   (1 -> x1/3, 2 -> x1/sqrt3, 3 -> unchanged, 4 -> xsqrt3, 5 -> x3) and renormalised; a 3
   still counts, as a vote for the table. The table counts as ``TABLE_WEIGHT`` such examples
   per input. A factor, not a one-hot "right answer", because a rating judges one recommended
   hobby, not the whole ranking. Keys that are not labels are counted and ignored; unrated
   hobbies (satisfaction null) are ignored. Cross-entropy is linear in the target, so all
   examples at one input equal a single example whose target is their mean: we keep counts
   per (input, hobby, satisfaction), and memory stays bounded by the 256 inputs however long
   the export is.
3. **Weights.** Every input weighs the same in the loss, however many ratings it has: the
   model must answer all 256 inputs, and popular inputs must not starve rare ones.
4. **Fit.** MLP 4 -> ``HIDDEN`` (ReLU) -> hobbies, He-normal init from
   ``np.random.default_rng(seed)``, zero biases; full-batch Adam on soft-target cross-entropy
   for ``EPOCHS`` steps, learning rate ``LEARNING_RATE`` with cosine decay to 0 (the last steps
   barely move the weights, so the result does not hinge on where training stops). The network
   sees the raw scores (0..3 floats), exactly what the server feeds it. All math is float64;
   the weights are cast to float32 once, when the model file is written.

Same table, exports, seed, epochs and hidden sizes give the same file, byte for byte, on the
same machine (on another CPU, float rounding can differ in the last bits).
"""

from __future__ import annotations

import gzip
import hashlib
import itertools
import json
import math
import time
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.modelfile import INPUT_NAME, ModelFile, ModelMetadata, build_mlp
from model.scoring import AXES, all_score_inputs

DEFAULT_TABLE = Path(__file__).resolve().parent / "training" / "default.json"
DEFAULT_MODEL_VERSION = "hollang-default-1"
DEFAULT_SEED = 2024
TEMPERATURE = 4.0
HIDDEN = (32,)
EPOCHS = 3000
LEARNING_RATE = 0.01
TABLE_WEIGHT = 5.0
RATING_STEP = math.sqrt(3.0)
_ADAM_BETAS = (0.9, 0.999)
_ADAM_EPS = 1e-8
_SATISFACTIONS = 5
_CELLS = 4 ** len(AXES)


class TrainingDataError(ValueError):
    """A table or export that cannot be trained on; the message says where and why."""


@dataclass(frozen=True)
class HobbyTable:
    """The hand-written affinity table: the prior the default model is trained to follow."""

    name: str
    sha256: str
    labels: tuple[str, ...]
    affinity: np.ndarray  # [hobbies, 4], float64
    base: np.ndarray  # [hobbies], float64

    def utilities(self) -> np.ndarray:
        """``affinity . z + base`` for all 256 inputs, [256, hobbies]."""
        z = (all_score_inputs().astype(np.float64) - 1.5) / 1.5
        utilities: np.ndarray = z @ self.affinity.T + self.base
        return utilities

    def targets(self) -> np.ndarray:
        return _softmax(TEMPERATURE * self.utilities())


@dataclass
class Feedback:
    """Ratings from exports, aggregated per input cell (bounded memory)."""

    counts: np.ndarray  # [256, hobbies, 5] ratings per (input, hobby, satisfaction)
    rows_read: int = 0
    rows_used: int = 0
    ratings_used: int = 0
    unrated: int = 0
    unknown_keys: Counter[str] = field(default_factory=Counter)


@dataclass(frozen=True)
class TrainReport:
    """What a training run did, for the CLI and for deciding whether to ship the file."""

    model_version: str
    sha256: str
    labels: int
    final_loss: float  # weighted soft-target cross-entropy
    final_kl: float  # the part of the loss the model could still remove (0 = perfect fit)
    top1_agreement: float  # share of the 256 inputs whose first pick is a table best
    top3_overlap: float  # mean share of the table's top 3 found in the model's top 3
    rows_read: int
    rows_used: int
    ratings_used: int
    unrated: int
    unknown_keys: dict[str, int]
    epochs: int
    seed: int
    hidden: tuple[int, ...]
    seconds: float

    def as_dict(self) -> dict[str, object]:
        return {
            "modelVersion": self.model_version,
            "sha256": self.sha256,
            "labels": self.labels,
            "finalLoss": round(self.final_loss, 6),
            "finalKl": round(self.final_kl, 6),
            "top1Agreement": round(self.top1_agreement, 4),
            "top3Overlap": round(self.top3_overlap, 4),
            "rowsRead": self.rows_read,
            "rowsUsed": self.rows_used,
            "ratingsUsed": self.ratings_used,
            "unrated": self.unrated,
            "unknownKeys": self.unknown_keys,
            "epochs": self.epochs,
            "seed": self.seed,
            "hidden": list(self.hidden),
            "seconds": round(self.seconds, 3),
        }


def train(
    table_path: str | Path,
    exports: Iterable[str | Path] = (),
    *,
    model_version: str,
    seed: int = DEFAULT_SEED,
    epochs: int = EPOCHS,
    hidden: Sequence[int] = HIDDEN,
) -> tuple[bytes, TrainReport]:
    """Train on the table (plus export ratings) and return model-file bytes and a report."""
    if epochs < 1 or not hidden or any(width < 1 for width in hidden):
        raise ValueError("epochs and every hidden width must be at least 1")
    started = time.perf_counter()
    table = load_table(table_path)
    feedback = read_exports(exports, table.labels)
    targets = soft_targets(table, feedback)
    layers, final_loss = fit(
        all_score_inputs().astype(np.float64), targets, hidden=hidden, epochs=epochs, seed=seed
    )
    shape = "-".join(str(width) for width in (len(AXES), *hidden, len(table.labels)))
    metadata = ModelMetadata(
        model_version=model_version,
        labels=table.labels,
        description=(
            f"Trained by `hollang model train` on {table.name} "
            f"(sha256 {table.sha256[:12]}) and {feedback.ratings_used} ratings; MLP {shape}, "
            f"seed {seed}, {epochs} epochs, temperature {TEMPERATURE:g}."
        ),
    )
    data = build_mlp([(w.astype(np.float32), b.astype(np.float32)) for w, b in layers], metadata)
    model_file = ModelFile.from_bytes(data)
    top1, top3 = _agreement(model_file, table.utilities())
    entropy = float(-(targets * np.log(np.clip(targets, 1e-300, None))).sum(axis=1).mean())
    report = TrainReport(
        model_version=model_version,
        sha256=model_file.sha256,
        labels=len(table.labels),
        final_loss=final_loss,
        final_kl=final_loss - entropy,
        top1_agreement=top1,
        top3_overlap=top3,
        rows_read=feedback.rows_read,
        rows_used=feedback.rows_used,
        ratings_used=feedback.ratings_used,
        unrated=feedback.unrated,
        unknown_keys=dict(sorted(feedback.unknown_keys.items())),
        epochs=epochs,
        seed=seed,
        hidden=tuple(hidden),
        seconds=time.perf_counter() - started,
    )
    return data, report


def load_table(path: str | Path) -> HobbyTable:
    """Read and validate a training table; errors name the hobby at fault."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        data = json.loads(raw)
    except OSError as exc:
        raise TrainingDataError(f"cannot read table {path}: {exc.strerror}") from exc
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"table {path} is not JSON: {exc}") from exc
    if not isinstance(data, dict) or data.get("axes") != list(AXES):
        raise TrainingDataError(f"table {path}: 'axes' must be {list(AXES)}")
    hobbies = data.get("hobbies")
    if not isinstance(hobbies, list) or len(hobbies) < 3:
        raise TrainingDataError(f"table {path}: 'hobbies' must list at least 3 hobbies")
    labels, affinity, base = [], [], []
    for index, hobby in enumerate(hobbies):
        where = f"table {path}, hobby #{index}"
        name = hobby.get("originalName") if isinstance(hobby, dict) else None
        if not isinstance(name, str) or not name.strip():
            raise TrainingDataError(f"{where}: 'originalName' must be a non-empty string")
        values = hobby.get("affinity")
        if not isinstance(values, dict) or set(values) != set(AXES):
            raise TrainingDataError(f"{where} ({name}): 'affinity' must have exactly {AXES}")
        row = [values[axis] for axis in AXES]
        if not all(_is_number(v) and -1.0 <= v <= 1.0 for v in row):
            raise TrainingDataError(f"{where} ({name}): affinities must be numbers in [-1, 1]")
        if not _is_number(hobby.get("base")) or not math.isfinite(hobby["base"]):
            raise TrainingDataError(f"{where} ({name}): 'base' must be a finite number")
        labels.append(name)
        affinity.append(row)
        base.append(hobby["base"])
    duplicates = sorted(name for name, count in Counter(labels).items() if count > 1)
    if duplicates:
        raise TrainingDataError(f"table {path}: duplicate originalName {duplicates}")
    return HobbyTable(
        name=path.name,
        sha256=hashlib.sha256(raw).hexdigest(),
        labels=tuple(labels),
        affinity=np.array(affinity, dtype=np.float64),
        base=np.array(base, dtype=np.float64),
    )


def read_exports(paths: Iterable[str | Path], labels: Sequence[str]) -> Feedback:
    """Stream gzipped JSON Lines exports into per-input rating counts."""
    index = {label: i for i, label in enumerate(labels)}
    feedback = Feedback(counts=np.zeros((_CELLS, len(labels), _SATISFACTIONS), dtype=np.int64))
    for path in paths:
        for where, row in export_lines(Path(path)):
            feedback.rows_read += 1
            cell, ratings = parse_export_row(row, where)
            used = 0
            for key, satisfaction in ratings:
                if key not in index:
                    feedback.unknown_keys[key] += 1
                elif satisfaction is None:
                    feedback.unrated += 1
                else:
                    feedback.counts[cell, index[key], satisfaction - 1] += 1
                    used += 1
            feedback.ratings_used += used
            feedback.rows_used += used > 0
    return feedback


def soft_targets(table: HobbyTable, feedback: Feedback | None = None) -> np.ndarray:
    """Per-input targets [256, hobbies]: the table's, mixed with the ratings' (see module doc)."""
    prior = table.targets()
    if feedback is None or not feedback.counts.any():
        return prior
    factors = RATING_STEP ** (np.arange(1, _SATISFACTIONS + 1) - 3.0)  # [5]
    # One rating (h, s) at cell c has target prior[c] with prior[c, h] scaled by factors[s],
    # divided by its new sum 1 + prior[c, h] * (factors[s] - 1). Summed over all ratings:
    counts = feedback.counts.astype(np.float64)
    scaled = counts / (1.0 + prior[:, :, None] * (factors - 1.0))  # [256, hobbies, 5]
    summed = prior * (scaled.sum(axis=(1, 2))[:, None] + (scaled * (factors - 1.0)).sum(axis=2))
    total = counts.sum(axis=(1, 2))[:, None]
    blended: np.ndarray = (TABLE_WEIGHT * prior + summed) / (TABLE_WEIGHT + total)
    return blended


def fit(
    x: np.ndarray,
    targets: np.ndarray,
    *,
    hidden: Sequence[int] = HIDDEN,
    epochs: int = EPOCHS,
    seed: int = DEFAULT_SEED,
    learning_rate: float = LEARNING_RATE,
    loss: str = "cross_entropy",
    initial: Sequence[tuple[np.ndarray, np.ndarray]] | None = None,
) -> tuple[list[tuple[np.ndarray, np.ndarray]], float]:
    """Full-batch Adam on soft-target cross-entropy; returns float64 layers and the final loss.

    ``loss="mse"`` fits the outputs to `targets` by least squares instead (distillation of
    another model's logits, `model.refine`); `initial` starts from given layers (a warm
    start) instead of He-normal ones. Layers use PyTorch's ``[out, in]`` layout, as
    `build_mlp` expects.
    """
    if loss not in ("cross_entropy", "mse"):
        raise ValueError(f"unknown loss {loss!r}")
    rng = np.random.default_rng(seed)
    sizes = [x.shape[1], *hidden, targets.shape[1]]
    params: list[np.ndarray] = []
    if initial is not None:
        for weight, bias in initial:
            params += [np.array(weight, dtype=np.float64), np.array(bias, dtype=np.float64)]
    else:
        for fan_in, fan_out in itertools.pairwise(sizes):
            params.append(rng.normal(0.0, math.sqrt(2.0 / fan_in), size=(fan_out, fan_in)))
            params.append(np.zeros(fan_out))
    moments = [np.zeros_like(p) for p in params]
    squares = [np.zeros_like(p) for p in params]
    beta1, beta2 = _ADAM_BETAS
    for step in range(1, epochs + 1):
        _, grads = _loss_and_grads(params, x, targets, loss)
        rate = learning_rate * 0.5 * (1.0 + math.cos(math.pi * (step - 1) / epochs))
        correction = math.sqrt(1.0 - beta2**step) / (1.0 - beta1**step)
        for p, g, m, v in zip(params, grads, moments, squares, strict=True):
            m *= beta1
            m += (1.0 - beta1) * g
            v *= beta2
            v += (1.0 - beta2) * g * g
            p -= rate * correction * m / (np.sqrt(v) + _ADAM_EPS)
    final, _ = _loss_and_grads(params, x, targets, loss)
    layers = [(params[i], params[i + 1]) for i in range(0, len(params), 2)]
    return layers, final


def forward(layers: Sequence[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
    """The MLP's outputs (ReLU between layers), in float64: what `fit` optimises."""
    out = x
    for index, (weight, bias) in enumerate(layers):
        out = out @ np.asarray(weight, np.float64).T + np.asarray(bias, np.float64)
        if index < len(layers) - 1:
            out = np.maximum(out, 0.0)
    return out


def _loss_and_grads(
    params: list[np.ndarray], x: np.ndarray, targets: np.ndarray, kind: str = "cross_entropy"
) -> tuple[float, list[np.ndarray]]:
    activations = [x]
    pre: list[np.ndarray] = []
    count = len(params) // 2
    out = x
    for i in range(count):
        z = out @ params[2 * i].T + params[2 * i + 1]
        pre.append(z)
        out = np.maximum(z, 0.0) if i < count - 1 else z
        activations.append(out)
    rows = x.shape[0]
    if kind == "mse":
        error = out - targets
        loss = float((error * error).mean())
        delta = 2.0 * error / error.size
    else:
        shifted = out - out.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        loss = float(-(targets * log_probs).sum() / rows)
        delta = (np.exp(log_probs) - targets) / rows  # targets sum to 1 per row
    grads: list[np.ndarray] = [np.empty(0)] * len(params)
    for i in reversed(range(count)):
        grads[2 * i] = delta.T @ activations[i]
        grads[2 * i + 1] = delta.sum(axis=0)
        if i:
            delta = (delta @ params[2 * i]) * (pre[i - 1] > 0)
    return loss, grads


def _agreement(model_file: ModelFile, utilities: np.ndarray) -> tuple[float, float]:
    """Check the written float32 file itself, with the runtime that will serve it."""
    import onnxruntime as ort

    session = ort.InferenceSession(model_file.data, providers=["CPUExecutionProvider"])
    logits = session.run(None, {INPUT_NAME: all_score_inputs()})[0]
    first = logits.argmax(axis=1)
    rows = np.arange(len(first))
    top1 = float(np.mean(utilities[rows, first] >= utilities.max(axis=1) - 1e-9))
    model_top3 = np.argsort(-logits, axis=1, kind="stable")[:, :3]
    table_top3 = np.argsort(-utilities, axis=1, kind="stable")[:, :3]
    overlap = [len(set(a) & set(b)) / 3 for a, b in zip(model_top3, table_top3, strict=True)]
    return top1, float(np.mean(overlap))


def export_lines(path: Path) -> Iterator[tuple[str, object]]:
    try:
        with gzip.open(path, "rt", encoding="utf-8") as lines:
            for number, line in enumerate(lines, start=1):
                if not line.strip():
                    continue
                where = f"{path}:{number}"
                try:
                    yield where, json.loads(line)
                except json.JSONDecodeError as exc:
                    raise TrainingDataError(f"{where}: not JSON: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:  # incl. gzip.BadGzipFile
        raise TrainingDataError(f"cannot read export {path}: {exc}") from exc
    except EOFError as exc:
        raise TrainingDataError(f"export {path} is truncated") from exc


def parse_export_row(row: object, where: str) -> tuple[int, list[tuple[str, int | None]]]:
    if not isinstance(row, dict):
        raise TrainingDataError(f"{where}: each line must be a JSON object")
    scores = row.get("scores")
    if (
        not isinstance(scores, list)
        or len(scores) != len(AXES)
        or not all(type(s) is int and 0 <= s <= 3 for s in scores)
    ):
        raise TrainingDataError(f"{where}: 'scores' must be 4 integers in 0..3")
    hobbies = row.get("hobbies")
    if not isinstance(hobbies, list):
        raise TrainingDataError(f"{where}: 'hobbies' must be a list")
    ratings: list[tuple[str, int | None]] = []
    for hobby in hobbies:
        key = hobby.get("key") if isinstance(hobby, dict) else None
        satisfaction = hobby.get("satisfaction") if isinstance(hobby, dict) else None
        if not isinstance(key, str) or not (
            satisfaction is None or (type(satisfaction) is int and 1 <= satisfaction <= 5)
        ):
            raise TrainingDataError(
                f"{where}: each hobby needs a string 'key' and 'satisfaction' 1..5 or null"
            )
        ratings.append((key, satisfaction))
    cell = ((scores[0] * 4 + scores[1]) * 4 + scores[2]) * 4 + scores[3]
    return cell, ratings


def _softmax(values: np.ndarray) -> np.ndarray:
    shifted = np.exp(values - values.max(axis=1, keepdims=True))
    probabilities: np.ndarray = shifted / shifted.sum(axis=1, keepdims=True)
    return probabilities


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)
