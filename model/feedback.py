"""Ratings from data exports, split once and for all into a training and a held-out part.

`hollang model train --base` and `hollang model evaluate` read the same exports (gzipped JSON
Lines from `hollang export`, one test response a line) through `read_feedback`, so both see
the same split:

- **Split.** A response is held out when the first 8 bytes of
  ``sha256("<testResponseId>")``, as a number, fall in the lowest `holdout` share of the
  range. Deterministic (the same response is always on the same side, in every run and on
  every machine), independent of the order of the lines, and stable when an export grows:
  old responses keep their side.
- **Counts, not rows.** Every rating is counted per (part, input cell, hobby, rank shown,
  satisfaction), so memory is bounded by the input space, not by the length of the export.
- **Hobbies are named.** A rated hobby the model has no output for is an error that names
  it (`UnknownHobbiesError`): a rating that silently counts for nothing is how a whole
  export once trained nothing.
- **Position.** A hobby shown first is rated more often than one shown third (people stop
  reading), so raw ratings over-represent rank 1. `position_weights` estimates, from the
  training part, each rank's propensity to be rated, ``p_k = rated at rank k / shown at
  rank k``, and weighs a rating at rank k by ``max_j p_j / p_k`` (inverse propensity
  weighting, as in unbiased learning to rank; Joachims et al., WSDM 2017), capped at
  `MAX_POSITION_WEIGHT` so a rank almost nobody rates cannot dominate.
"""

from __future__ import annotations

import hashlib
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.train import TrainingDataError, export_lines, parse_export_row

DEFAULT_HOLDOUT = 0.2
MAX_POSITION_WEIGHT = 10.0
SATISFACTIONS = 5
CELLS = 256
TRAIN, HELD_OUT = 0, 1


class UnknownHobbiesError(TrainingDataError):
    """Ratings of hobbies the model has no output for; the message names them."""


def held_out(response_id: object, holdout: float) -> bool:
    """Whether a response belongs to the held-out part (see the module docstring)."""
    digest = hashlib.sha256(str(response_id).encode("utf-8")).digest()
    return int.from_bytes(digest[:8], "big") < holdout * 2**64


@dataclass
class FeedbackSet:
    """Rating counts ``[part, cell, hobby, rank - 1, satisfaction - 1]`` for `keys`, and
    how many rows and unrated hobbies the exports held."""

    keys: tuple[str, ...]
    counts: np.ndarray
    shown: np.ndarray  # [part, rank - 1]: hobbies shown at each rank, rated or not
    holdout: float
    rows_read: int = 0
    rows_used: int = 0
    unrated: int = 0
    responses: list[int] = field(default_factory=lambda: [0, 0])  # per part

    def ratings(self, part: int) -> int:
        return int(self.counts[part].sum())

    def position_weights(self) -> np.ndarray:
        """Weight per rank (rank 1 first), from the training part (see the module doc)."""
        rated = self.counts[TRAIN].sum(axis=(0, 1, 3)).astype(np.float64)
        shown = self.shown[TRAIN].astype(np.float64)
        propensity = np.divide(rated, shown, out=np.zeros_like(rated), where=shown > 0)
        weights: np.ndarray = np.ones_like(propensity)
        seen = propensity > 0
        if seen.any():
            weights[seen] = np.minimum(
                propensity[seen].max() / propensity[seen], MAX_POSITION_WEIGHT
            )
        return weights

    def columns(self, labels: Sequence[str]) -> np.ndarray:
        """Each key's output column in a model with `labels`; `UnknownHobbiesError` naming
        every rated key the model lacks."""
        index = {label: i for i, label in enumerate(labels)}
        rated = self.counts.sum(axis=(0, 1, 3, 4))
        missing = sorted(
            (key for key, count in zip(self.keys, rated, strict=True) if count and key not in index)
        )
        if missing:
            raise UnknownHobbiesError(
                f"the exports rate {len(missing)} hobbies the model has no output for: "
                + ", ".join(repr(key) for key in missing[:10])
                + (" ..." if len(missing) > 10 else "")
            )
        return np.array([index.get(key, -1) for key in self.keys], dtype=np.int64)

    def per_label(self, part: int, labels: Sequence[str], *, weighted: bool) -> np.ndarray:
        """Counts of one part as ``[cell, label, satisfaction - 1]`` in `labels`' column
        order, position-weighted if asked (rank summed out)."""
        columns = self.columns(labels)
        counts = self.counts[part].astype(np.float64)
        if weighted:
            counts = counts * self.position_weights()[None, None, :, None]
        summed = counts.sum(axis=2)  # [cell, key, satisfaction]
        out = np.zeros((CELLS, len(labels), SATISFACTIONS))
        known = columns >= 0
        out[:, columns[known], :] = summed[:, known, :]
        return out


def read_feedback(
    paths: Iterable[str | Path], holdout: float = DEFAULT_HOLDOUT, max_rank: int = 3
) -> FeedbackSet:
    """Stream exports into a `FeedbackSet`; malformed lines are errors naming the line."""
    if not 0.0 <= holdout < 1.0:
        raise ValueError("holdout must be in [0, 1)")
    counter: Counter[tuple[int, int, str, int, int]] = Counter()
    shown = np.zeros((2, max_rank), dtype=np.int64)
    rows_read = rows_used = unrated = 0
    responses = [0, 0]
    for path in paths:
        for where, row in export_lines(Path(path)):
            rows_read += 1
            cell, ratings = parse_export_row(row, where)
            assert isinstance(row, dict)
            response_id = row.get("testResponseId")
            if not isinstance(response_id, int | str) or isinstance(response_id, bool):
                raise TrainingDataError(f"{where}: 'testResponseId' must be an integer or string")
            part = HELD_OUT if held_out(response_id, holdout) else TRAIN
            responses[part] += 1
            ranks = [hobby.get("ranking") for hobby in row["hobbies"]]
            used = 0
            for (key, satisfaction), rank in zip(ratings, ranks, strict=True):
                if type(rank) is not int or not 1 <= rank <= max_rank:
                    raise TrainingDataError(
                        f"{where}: hobby {key!r} needs a 'ranking' in 1..{max_rank} (the rank "
                        "it was shown at, for the position correction)"
                    )
                shown[part, rank - 1] += 1
                if satisfaction is None:
                    unrated += 1
                    continue
                counter[(part, cell, key, rank - 1, satisfaction - 1)] += 1
                used += 1
            rows_used += used > 0
    keys = tuple(sorted({key for _, _, key, _, _ in counter}))
    position = {key: i for i, key in enumerate(keys)}
    counts = np.zeros((2, CELLS, len(keys), max_rank, SATISFACTIONS), dtype=np.int64)
    for (part, cell, key, rank, satisfaction), count in counter.items():
        counts[part, cell, position[key], rank, satisfaction] = count
    return FeedbackSet(
        keys=keys,
        counts=counts,
        shown=shown,
        holdout=holdout,
        rows_read=rows_read,
        rows_used=rows_used,
        unrated=unrated,
        responses=responses,
    )
