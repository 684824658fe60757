"""Held-out metrics, checked on numbers small enough to count by hand."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from model.evaluation import held_out_metrics
from model.feedback import held_out, read_feedback
from tests.model.test_refine import write_export

LABELS = ("a", "b", "c", "d")
ALMOST_ALL = 0.999999


def response(number: int, cell_scores: list[int], *ratings: tuple[str, int | None]) -> dict:  # type: ignore[type-arg]
    assert held_out(number, ALMOST_ALL)
    hobbies = [
        {"key": key, "ranking": rank, "satisfaction": satisfaction}
        for rank, (key, satisfaction) in enumerate(ratings, start=1)
    ]
    return {"testResponseId": number, "scores": cell_scores, "hobbies": hobbies}


def test_pairwise_accuracy_and_expected_satisfaction(tmp_path: Path) -> None:
    rows = [
        response(1, [0, 0, 0, 0], ("a", 1), ("b", 4), ("c", 5)),
        response(2, [0, 0, 0, 0], ("d", 2), ("b", None), ("c", 3)),  # c=3: neither side
        response(3, [0, 0, 0, 1], ("a", 5), ("b", 5), ("c", 5)),  # no disliked: no pair
    ]
    feedback = read_feedback([write_export(tmp_path / "e.jsonl.gz", rows)], holdout=ALMOST_ALL)
    logits = np.zeros((256, 4))
    logits[0] = [4.0, 3.0, 2.0, 1.0]  # ranks a over the liked b, c: pairs (b,a), (c,a) wrong
    # pairs at input 0: liked {b, c} x disliked {a, d}: (b>a) no, (c>a) no, (b>d) yes, (c>d) yes
    metrics = held_out_metrics(logits, LABELS, feedback)
    assert metrics.pairs == 4
    assert metrics.pairwise_accuracy == 0.5
    # top 3 at input 0 = a, b, c: means 1, 4, (5+3)/2; at input 1 (ties: label order) a, b, c: 5
    assert metrics.expected_top3_satisfaction == np.mean([1, 4, 4, 5, 5, 5])
    assert metrics.top3_coverage == 1.0

    right = np.zeros((256, 4))
    right[0] = [1.0, 3.0, 4.0, 2.0]  # b, c above a, d: every pair right
    better = held_out_metrics(right, LABELS, feedback)
    assert better.pairwise_accuracy == 1.0
    # top 3 at input 0 = c, b, d: means 4, 4, 2
    assert better.expected_top3_satisfaction == np.mean([4, 4, 2, 5, 5, 5])

    tied = held_out_metrics(np.zeros((256, 4)), LABELS, feedback)
    assert tied.pairwise_accuracy == 0.5  # a tie counts half


def test_no_pairs_means_no_accuracy(tmp_path: Path) -> None:
    rows = [response(1, [3, 3, 3, 3], ("a", 3), ("b", 3), ("c", 3))]
    feedback = read_feedback([write_export(tmp_path / "e.jsonl.gz", rows)], holdout=ALMOST_ALL)
    metrics = held_out_metrics(np.zeros((256, 4)), LABELS, feedback)
    assert (metrics.pairs, metrics.pairwise_accuracy) == (0, None)
