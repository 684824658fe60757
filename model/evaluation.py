"""Is a candidate model better than the one it would replace? Measured on held-out feedback.

`hollang model evaluate`, `hollang model train --base` and `publish --require-better` all
use this module, on the held-out part of the exports (`model.feedback`: the same
deterministic split that training leaves out), so a model is never judged on the ratings
it was trained on. For each model:

- ``pairwiseAccuracy``: over every pair (a hobby rated 4 or 5, another hobby rated 1 or 2)
  at the same input, the share the model ranks the liked one above the disliked one (a tie
  counts half). It needs no assumption about hobbies nobody rated, and it is what feedback
  training is meant to improve.
- ``expectedTop3Satisfaction``: the mean held-out satisfaction of the model's top 3, over
  the (input, hobby) slots that have at least one held-out rating; ``top3Coverage`` says
  which share of the top-3 slots of rated inputs that is. A model that moves hobbies
  nobody rated yet into its top 3 covers less, and the number says less about it.
- ``top3Counts``: how many of the 256 inputs have each hobby in the top 3.

Between the two: top-1 and top-3 agreement over all 256 inputs (`model.quality.compare`).

**Better** means a higher held-out pairwise accuracy, or an equal one with a higher
expected top-3 satisfaction. With no held-out pair at all nothing can be called better.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from model.feedback import HELD_OUT, FeedbackSet
from model.modelfile import ModelFile
from model.quality import QualityReport, compare
from model.scoring import all_score_inputs

_LIKED_FROM = 4  # satisfaction 4 and 5
_DISLIKED_UP_TO = 2  # satisfaction 1 and 2


def model_logits(file: ModelFile) -> np.ndarray:
    """The model's logits for all 256 inputs, float64 ``[256, labels]``.

    Runs the file in this process: call it only for a file that passed
    `model.sandbox.check_model_file` (or that we built ourselves), as a serving worker
    does."""
    from model.engine import open_session

    loaded = open_session(file)
    logits: np.ndarray = loaded.run(all_score_inputs()).astype(np.float64)
    return logits


def top3(logits: np.ndarray) -> np.ndarray:
    """Each input's best three columns, ties in label order (as the server ranks them)."""
    ranked: np.ndarray = np.argsort(-logits, axis=1, kind="stable")[:, :3]
    return ranked


@dataclass(frozen=True)
class HeldOutMetrics:
    """One model's answers judged by held-out ratings (see the module docstring)."""

    pairs: int
    pairwise_accuracy: float | None
    expected_top3_satisfaction: float | None
    top3_coverage: float | None

    def describe(self) -> dict[str, Any]:
        return {
            "pairs": self.pairs,
            "pairwiseAccuracy": _round(self.pairwise_accuracy),
            "expectedTop3Satisfaction": _round(self.expected_top3_satisfaction),
            "top3Coverage": _round(self.top3_coverage),
        }


def held_out_metrics(
    logits: np.ndarray, labels: tuple[str, ...], feedback: FeedbackSet, part: int = HELD_OUT
) -> HeldOutMetrics:
    """Pairwise accuracy and expected top-3 satisfaction of one model on one part."""
    counts = feedback.per_label(part, labels, weighted=False)  # [cell, label, satisfaction]
    liked = counts[:, :, _LIKED_FROM - 1 :].sum(axis=2)
    disliked = counts[:, :, :_DISLIKED_UP_TO].sum(axis=2)
    pairs = liked[:, :, None] * disliked[:, None, :]  # [cell, liked hobby, disliked hobby]
    diagonal = np.arange(len(labels))
    pairs[:, diagonal, diagonal] = 0.0  # one hobby both liked and disliked: no order to judge
    difference = logits[:, :, None] - logits[:, None, :]
    right = (difference > 0) + 0.5 * (difference == 0)
    total = float(pairs.sum())
    accuracy = float((pairs * right).sum() / total) if total else None

    rated = counts.sum(axis=2)  # [cell, label]
    satisfaction_sum = (counts * np.arange(1, counts.shape[2] + 1)).sum(axis=2)
    best = top3(logits)
    cells = np.flatnonzero(rated.sum(axis=1) > 0)
    slots = [(cell, column) for cell in cells for column in best[cell]]
    estimable = [(c, h) for c, h in slots if rated[c, h] > 0]
    expected = (
        float(np.mean([satisfaction_sum[c, h] / rated[c, h] for c, h in estimable]))
        if estimable
        else None
    )
    coverage = len(estimable) / len(slots) if slots else None
    return HeldOutMetrics(
        pairs=int(total),
        pairwise_accuracy=accuracy,
        expected_top3_satisfaction=expected,
        top3_coverage=coverage,
    )


@dataclass(frozen=True)
class Evaluation:
    """A candidate against a reference model, on the same held-out ratings."""

    candidate_version: str
    against_version: str
    candidate: HeldOutMetrics
    against: HeldOutMetrics
    quality: QualityReport
    held_out_ratings: int
    held_out_responses: int

    @property
    def verdict(self) -> tuple[bool, str]:
        """(better, why), by the rule in the module docstring."""
        ours, theirs = self.candidate, self.against
        if ours.pairwise_accuracy is None or theirs.pairwise_accuracy is None:
            return False, "the held-out part has no (liked, disliked) pair to compare on"
        if ours.pairwise_accuracy > theirs.pairwise_accuracy:
            return True, (
                f"held-out pairwise accuracy {ours.pairwise_accuracy:.4f} > "
                f"{theirs.pairwise_accuracy:.4f}"
            )
        if (
            ours.pairwise_accuracy == theirs.pairwise_accuracy
            and ours.expected_top3_satisfaction is not None
            and theirs.expected_top3_satisfaction is not None
            and ours.expected_top3_satisfaction > theirs.expected_top3_satisfaction
        ):
            return True, "equal pairwise accuracy, higher expected top-3 satisfaction"
        return False, (
            f"held-out pairwise accuracy {ours.pairwise_accuracy:.4f} is not above "
            f"{theirs.pairwise_accuracy:.4f}"
        )

    def describe(self) -> dict[str, Any]:
        better, reason = self.verdict
        quality = self.quality.describe()
        return {
            "heldOut": {"responses": self.held_out_responses, "ratings": self.held_out_ratings},
            "candidate": {
                "modelVersion": self.candidate_version,
                **self.candidate.describe(),
                "top3Counts": quality["top3Counts"],
            },
            "against": {
                "modelVersion": self.against_version,
                **self.against.describe(),
                "top3Counts": quality["activeTop3Counts"],
            },
            "top1Agreement": quality["top1Agreement"],
            "top3Agreement": quality["top3Agreement"],
            "better": better,
            "reason": reason,
        }


def evaluate(
    candidate: tuple[ModelFile, np.ndarray],
    against: tuple[ModelFile, np.ndarray],
    feedback: FeedbackSet,
) -> Evaluation:
    """Judge `candidate` (file, logits) against `against` on `feedback`'s held-out part."""
    (ours, our_logits), (theirs, their_logits) = candidate, against
    labels, reference_labels = ours.metadata.labels, theirs.metadata.labels
    return Evaluation(
        candidate_version=ours.metadata.model_version,
        against_version=theirs.metadata.model_version,
        candidate=held_out_metrics(our_logits, labels, feedback),
        against=held_out_metrics(their_logits, reference_labels, feedback),
        quality=compare(
            labels,
            top3(our_logits).tolist(),
            (theirs.metadata.model_version, reference_labels, top3(their_logits).tolist()),
        ),
        held_out_ratings=feedback.ratings(HELD_OUT),
        held_out_responses=feedback.responses[HELD_OUT],
    )


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)
