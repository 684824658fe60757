"""Refine a served model with feedback (``hollang model train --base active|FILE``).

The recipe, in one place:

1. **Distillation.** The targets start from the base model's own logits over all 256
   inputs, centred per input. With no ratings the result is a copy of the base, whatever
   its catalogue, labels or architecture: nothing is learned from a hand-written table.
2. **Feedback moves them.** For each (input, hobby) the training part of the exports
   (`model.feedback`: the held-out part is never trained on) gives position-weighted
   ratings ``w_i`` (inverse propensity of being rated at the rank shown, see
   `FeedbackSet.position_weights`) of satisfaction ``s_i``. Their shrunk mean effect is
   ``e = sum(w_i * (s_i - 3) / 2) / (sum(w_i) + PRIOR_RATINGS)``, in [-1, 1]: 0 with no
   ratings, near -1 when many raters gave 1, near +1 when many gave 5; a handful of
   ratings moves it a little, `PRIOR_RATINGS` being how many neutral (3) ratings every
   cell starts with. The target logit moves by ``strength * e * spread``, where ``spread``
   is the standard deviation of the base's logits at that input, so the move is in the
   model's own units whatever their scale. At the default ``strength``
   (`DEFAULT_STRENGTH` = 1) a hobby that every one of many raters gave 1 drops by about one
   such deviation (out of the top 3 where it led narrowly, not where it led by far) and one
   they all gave 5 rises as much. Larger is bolder: more of the ranking follows the
   ratings, and more of the answers nobody rated change with it (the fit in step 3 is
   shared by all inputs). On the demonstration in tests/cli/test_feedback_loop.py, 1 keeps
   about 90% of the untouched inputs' top 3s; docs/ml-workflow.md has the numbers.
   With ``neighbour_weight`` > 0 (the Python API; 0 by default) a rating also counts, at
   that weight, for the inputs one answer-count away (`pool_neighbours`).
3. **Fit.** When the base is the MLP that `build_mlp` writes (ours, and every
   `import-torch` result), its own weights are kept and only the last layer changes: the
   change is the least-squares (minimum-norm) solution, over all 256 inputs, of "the base's
   last hidden features times the change = the moves of step 2" (`numpy.linalg.lstsq`).
   Closed form, so with no ratings the result is the base itself (same top 3 everywhere),
   and a hobby nobody rated keeps its column exactly. Any other graph is distilled into a
   fresh MLP 4 -> `HIDDEN` (ReLU) -> labels by least squares on the targets
   (`model.train.fit` with ``loss="mse"``, full-batch Adam for `EPOCHS` steps from
   ``np.random.default_rng(seed)``); that copy is close, not exact (about 75% of the
   original's top 3s exactly, 97% of its first picks, at the defaults).

Same base, exports, strength, seed and epochs give the same file on the same machine.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from model.evaluation import HeldOutMetrics, held_out_metrics, model_logits, top3
from model.feedback import HELD_OUT, TRAIN, FeedbackSet
from model.modelfile import ModelFile, ModelMetadata, build_mlp, read_mlp
from model.quality import compare
from model.scoring import AXES, all_score_inputs
from model.train import DEFAULT_SEED, fit, forward

DEFAULT_STRENGTH = 1.0
PRIOR_RATINGS = 2.0
HIDDEN = (64, 64)
EPOCHS = 3000
_VERSION_ROOM = 48


def pool_neighbours(counts: np.ndarray, weight: float) -> np.ndarray:
    """Per-cell counts plus `weight` times those of the (up to 8) inputs one answer-count
    away on one axis: an input's raters speak, more softly, for the inputs next to it."""
    if weight == 0:
        return counts
    grid = counts.reshape(4, 4, 4, 4, *counts.shape[1:])
    pooled = grid.copy()
    for axis in range(4):
        for step in (1, -1):
            shifted = np.roll(grid, step, axis=axis)
            edge = [slice(None)] * grid.ndim
            edge[axis] = slice(0, 1) if step == 1 else slice(-1, None)
            shifted[tuple(edge)] = 0  # no wrap-around from 3 to 0
            pooled += weight * shifted
    result: np.ndarray = pooled.reshape(counts.shape)
    return result


def feedback_targets(
    base_logits: np.ndarray,
    labels: Sequence[str],
    feedback: FeedbackSet,
    strength: float,
    neighbour_weight: float = 0.0,
) -> np.ndarray:
    """The base's centred logits, moved by the training ratings (steps 1 and 2 above)."""
    centred = base_logits - base_logits.mean(axis=1, keepdims=True)
    spread = centred.std(axis=1)
    spread = np.where(spread > 0, spread, 1.0)
    counts = pool_neighbours(feedback.per_label(TRAIN, labels, weighted=True), neighbour_weight)
    effect_per_rating = (np.arange(1, counts.shape[2] + 1) - 3.0) / 2.0
    effect = (counts * effect_per_rating).sum(axis=2) / (counts.sum(axis=2) + PRIOR_RATINGS)
    moved: np.ndarray = centred + strength * effect * spread[:, None]
    return moved


@dataclass(frozen=True)
class RefineReport:
    """What `refine` did, and the held-out metrics of the base and of the result."""

    model_version: str
    sha256: str
    base_version: str
    base_sha256: str
    feedback: FeedbackSet
    strength: float
    position_weights: tuple[float, ...]
    fit_rmse: float  # of the written float32 file's logits against the targets
    distillation_rmse: float  # of the same logits against the base's, on unrated cells
    base_metrics: HeldOutMetrics
    result_metrics: HeldOutMetrics
    top1_agreement: float | None
    top3_agreement: float | None
    top3_counts: dict[str, int]
    base_top3_counts: dict[str, int]
    epochs: int
    seed: int
    hidden: tuple[int, ...]
    seconds: float

    def describe(self) -> dict[str, Any]:
        feedback = self.feedback
        return {
            "modelVersion": self.model_version,
            "sha256": self.sha256,
            "base": {"modelVersion": self.base_version, "sha256": self.base_sha256},
            "rowsRead": feedback.rows_read,
            "rowsUsed": feedback.rows_used,
            "ratingsUsed": feedback.ratings(TRAIN),
            "heldOutRatings": feedback.ratings(HELD_OUT),
            "unrated": feedback.unrated,
            "holdout": feedback.holdout,
            "strength": self.strength,
            "positionWeights": [round(w, 4) for w in self.position_weights],
            "fitRmse": round(self.fit_rmse, 6),
            "distillationRmse": round(self.distillation_rmse, 6),
            "heldOut": {
                "base": self.base_metrics.describe(),
                "result": self.result_metrics.describe(),
            },
            "top1Agreement": self.top1_agreement,
            "top3Agreement": self.top3_agreement,
            "top3Counts": self.top3_counts,
            "baseTop3Counts": self.base_top3_counts,
            "epochs": self.epochs,
            "seed": self.seed,
            "hidden": list(self.hidden),
            "seconds": round(self.seconds, 3),
        }


def refine(
    base: ModelFile,
    base_logits: np.ndarray,
    feedback: FeedbackSet,
    *,
    strength: float = DEFAULT_STRENGTH,
    neighbour_weight: float = 0.0,
    model_version: str | None = None,
    seed: int = DEFAULT_SEED,
    epochs: int | None = None,
    hidden: Sequence[int] = HIDDEN,
) -> tuple[bytes, RefineReport]:
    """Distil `base` (its `base_logits` over all inputs), moved by `feedback`; return the
    new model file's bytes and a report. Raises `UnknownHobbiesError` for rated hobbies
    that are not among the base's labels."""
    if (
        strength < 0
        or (epochs is not None and epochs < 1)
        or not hidden
        or any(width < 1 for width in hidden)
    ):
        raise ValueError("strength must be >= 0, epochs and hidden widths >= 1")
    started = time.perf_counter()
    labels = base.metadata.labels
    x = all_score_inputs().astype(np.float64)
    warm = read_mlp(base.data)
    if warm is not None:  # the base's own weights: its float64 outputs are the reference
        base_logits = forward(warm, x)
        hidden = tuple(weight.shape[0] for weight, _ in warm[:-1])
        steps = 0  # closed form
    targets = feedback_targets(base_logits, labels, feedback, strength, neighbour_weight)
    if warm is not None:
        layers = _resolve_last_layer(warm, x, targets - _centred(base_logits))
    else:
        steps = epochs or EPOCHS
        scale = float(targets.std()) or 1.0
        layers, _ = fit(x, targets / scale, hidden=hidden, epochs=steps, seed=seed, loss="mse")
        weight, bias = layers[-1]
        layers[-1] = (weight * scale, bias * scale)
    version = model_version or _default_version(base, feedback, strength, seed, steps, hidden)
    shape = "-".join(str(width) for width in (len(AXES), *hidden, len(labels)))
    metadata = ModelMetadata(
        model_version=version,
        labels=labels,
        description=(
            f"Refined by `hollang model train --base` from {base.metadata.model_version} "
            f"(sha256 {base.sha256[:12]}) with {feedback.ratings(TRAIN)} ratings, strength "
            f"{strength:g}; MLP {shape}" + (f", seed {seed}, {steps} epochs." if steps else ".")
        ),
    )
    data = build_mlp([(w.astype(np.float32), b.astype(np.float32)) for w, b in layers], metadata)
    result = ModelFile.from_bytes(data)
    logits = model_logits(result)
    centred = logits - logits.mean(axis=1, keepdims=True)
    base_centred = base_logits - base_logits.mean(axis=1, keepdims=True)
    rated = feedback.per_label(TRAIN, labels, weighted=False).sum(axis=(1, 2)) > 0
    unrated = ~rated if (~rated).any() else np.ones_like(rated)
    quality = compare(
        labels,
        top3(logits).tolist(),
        (base.metadata.model_version, labels, top3(base_logits).tolist()),
    )
    report = RefineReport(
        model_version=version,
        sha256=result.sha256,
        base_version=base.metadata.model_version,
        base_sha256=base.sha256,
        feedback=feedback,
        strength=strength,
        position_weights=tuple(float(w) for w in feedback.position_weights()),
        fit_rmse=float(np.sqrt(((centred - targets) ** 2).mean())),
        distillation_rmse=float(np.sqrt(((centred - base_centred)[unrated] ** 2).mean())),
        base_metrics=held_out_metrics(base_logits, labels, feedback),
        result_metrics=held_out_metrics(logits, labels, feedback),
        top1_agreement=quality.top1_agreement,
        top3_agreement=quality.top3_agreement,
        top3_counts=quality.top3_counts,
        base_top3_counts=quality.active_top3_counts or {},
        epochs=steps,
        seed=seed,
        hidden=tuple(hidden),
        seconds=time.perf_counter() - started,
    )
    return data, report


def _centred(logits: np.ndarray) -> np.ndarray:
    centred: np.ndarray = logits - logits.mean(axis=1, keepdims=True)
    return centred


def _resolve_last_layer(
    layers: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, moves: np.ndarray
) -> list[tuple[np.ndarray, np.ndarray]]:
    """The base's layers with the last one changed by the least-squares (minimum-norm)
    solution of ``features @ dW.T + db = moves`` over all inputs (step 3, warm)."""
    features = np.maximum(forward(layers[:-1], x), 0.0) if len(layers) > 1 else x
    design = np.hstack([features, np.ones((len(x), 1))])
    change = np.linalg.lstsq(design, moves, rcond=None)[0]  # [features + 1, labels]
    weight, bias = layers[-1]
    last = (weight.astype(np.float64) + change[:-1].T, bias.astype(np.float64) + change[-1])
    return [*layers[:-1], last]


def _default_version(
    base: ModelFile,
    feedback: FeedbackSet,
    strength: float,
    seed: int,
    epochs: int,
    hidden: Sequence[int],
) -> str:
    """``<base version>-fb-<8 hex>``: the hex names the base, the ratings and the recipe,
    so the same inputs give the same version and different ones never collide."""
    digest = hashlib.sha256(base.sha256.encode())
    digest.update(feedback.counts.tobytes())
    digest.update(f"{strength!r}/{seed}/{epochs}/{list(hidden)}".encode())
    return f"{base.metadata.model_version[:_VERSION_ROOM]}-fb-{digest.hexdigest()[:8]}"
