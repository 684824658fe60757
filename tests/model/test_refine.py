"""Refining a served model with feedback: distillation first, then ratings move it."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest

from model.evaluation import held_out_metrics, model_logits, top3
from model.feedback import HELD_OUT, TRAIN, UnknownHobbiesError, held_out, read_feedback
from model.modelfile import ModelFile, ModelMetadata, build_mlp, read_mlp
from model.refine import pool_neighbours, refine
from model.scoring import all_score_inputs

LABELS = ("party", "reading", "budget", "travel", "garden", "chess")


def base_model(tmp_path: Path, seed: int = 5) -> ModelFile:
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(size=(24, 4)), rng.normal(size=24)),
        (rng.normal(size=(len(LABELS), 24)), rng.normal(size=len(LABELS))),
    ]
    data = build_mlp(layers, ModelMetadata(model_version="base-1", labels=LABELS))
    return ModelFile.from_bytes(data)


def write_export(path: Path, rows: list[dict[str, object]]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for row in rows:
            out.write(json.dumps(row) + "\n")
    return path


def served_rows(
    model: ModelFile, ratings: dict[str, int], count: int, start: int = 1
) -> list[dict[str, object]]:
    """`count` responses spread over every input, each rating the model's own top 3:
    a hobby in `ratings` gets that satisfaction, the others 2 or 4 by turns."""
    best = top3(model_logits(model))
    inputs = all_score_inputs().astype(int)
    rows = []
    for number in range(start, start + count):
        cell = (number * 37) % 256
        hobbies = [
            {
                "key": LABELS[column],
                "ranking": rank,
                "satisfaction": ratings.get(LABELS[column], 2 + 2 * ((number + rank) % 2)),
            }
            for rank, column in enumerate(best[cell], start=1)
        ]
        rows.append({"testResponseId": number, "scores": inputs[cell].tolist(), "hobbies": hobbies})
    return rows


def test_without_ratings_the_result_is_the_base(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    logits = model_logits(base)
    data, report = refine(base, logits, read_feedback([]))
    result = model_logits(ModelFile.from_bytes(data))
    assert np.array_equal(top3(result), top3(logits))
    np.testing.assert_allclose(result, logits, atol=1e-4)
    assert report.top3_agreement == 1.0
    assert report.feedback.ratings(TRAIN) == 0


def test_ratings_move_a_hobby_out_of_and_into_the_top3(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    logits = model_logits(base)
    counts = {label: int((top3(logits) == i).sum()) for i, label in enumerate(LABELS)}
    disliked = max(counts, key=counts.__getitem__)
    liked = min((label for label in LABELS if counts[label]), key=counts.__getitem__)
    export = write_export(tmp_path / "e.jsonl.gz", served_rows(base, {disliked: 1, liked: 5}, 2000))
    feedback = read_feedback([export])
    data, report = refine(base, logits, feedback)
    assert report.top3_counts[disliked] < report.base_top3_counts[disliked]
    assert report.top3_counts[liked] > report.base_top3_counts[liked]
    assert report.result_metrics.pairwise_accuracy is not None
    assert report.base_metrics.pairwise_accuracy is not None
    assert report.result_metrics.pairwise_accuracy > report.base_metrics.pairwise_accuracy
    # The result's held-out numbers are computed from the file as written.
    again = held_out_metrics(model_logits(ModelFile.from_bytes(data)), LABELS, feedback)
    assert again == report.result_metrics
    # A weaker strength moves less.
    _, weak = refine(base, logits, feedback, strength=0.1)
    assert report.top3_counts[disliked] <= weak.top3_counts[disliked]


def test_unknown_hobbies_are_named(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    rows = served_rows(base, {}, 10)
    rows[3]["hobbies"] = [{"key": "knitting", "ranking": 1, "satisfaction": 4}]  # type: ignore[index]
    feedback = read_feedback([write_export(tmp_path / "e.jsonl.gz", rows)])
    with pytest.raises(
        UnknownHobbiesError, match="1 hobbies the model has no output for: 'knitting'"
    ):
        refine(base, model_logits(base), feedback)


def test_the_split_is_deterministic_and_near_the_share(tmp_path: Path) -> None:
    sides = [held_out(number, 0.2) for number in range(10_000)]
    assert sides == [held_out(number, 0.2) for number in range(10_000)]
    assert 0.18 < sum(sides) / len(sides) < 0.22
    assert not any(held_out(number, 0.0) for number in range(1000))
    base = base_model(tmp_path)
    rows = served_rows(base, {}, 300)
    first = read_feedback([write_export(tmp_path / "a.jsonl.gz", rows)])
    second = read_feedback([write_export(tmp_path / "b.jsonl.gz", rows[::-1])])
    assert np.array_equal(first.counts, second.counts)
    assert first.responses[HELD_OUT] == sum(held_out(r["testResponseId"], 0.2) for r in rows)


def test_position_weights_undo_the_rating_rate_of_each_rank(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    rows = served_rows(base, {}, 400)
    for row in rows:  # rank 1 always rated, rank 2 half the time, rank 3 a quarter
        number = int(row["testResponseId"])  # type: ignore[call-overload]
        for hobby in row["hobbies"]:  # type: ignore[attr-defined]
            if (hobby["ranking"] == 2 and number % 2) or (hobby["ranking"] == 3 and number % 4):
                hobby["satisfaction"] = None
    feedback = read_feedback([write_export(tmp_path / "e.jsonl.gz", rows)], holdout=0.0)
    np.testing.assert_allclose(feedback.position_weights(), [1.0, 2.0, 4.0], rtol=0.02)


def test_a_hobby_without_its_ranking_is_refused(tmp_path: Path) -> None:
    rows = [
        {
            "testResponseId": 1,
            "scores": [0, 0, 0, 0],
            "hobbies": [{"key": "party", "satisfaction": 2}],
        }
    ]
    with pytest.raises(ValueError, match=r"e\.jsonl\.gz:1: hobby 'party' needs a 'ranking'"):
        read_feedback([write_export(tmp_path / "e.jsonl.gz", rows)])


def test_a_base_that_is_not_our_mlp_is_distilled_into_a_fresh_one(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    layers = [
        (rng.normal(size=(16, 4)), rng.normal(size=16)),
        (rng.normal(size=(len(LABELS), 16)), rng.normal(size=len(LABELS))),
    ]
    tanh = ModelFile.from_bytes(
        build_mlp(layers, ModelMetadata(model_version="tanh-1", labels=LABELS), ["Tanh"])
    )
    assert read_mlp(tanh.data) is None  # not the graph whose last layer can be re-solved
    logits = model_logits(tanh)
    data, report = refine(tanh, logits, read_feedback([]), epochs=1500)
    assert report.epochs == 1500 and report.hidden == (64, 64)
    assert report.top1_agreement is not None and report.top1_agreement >= 0.9
    assert ModelFile.from_bytes(data).metadata.labels == LABELS


def test_neighbour_pooling_reaches_one_step_and_does_not_wrap() -> None:
    counts = np.zeros((256, 2, 5))
    counts[0, 1, 4] = 2.0  # two 5s for hobby 1 at [0, 0, 0, 0]
    pooled = pool_neighbours(counts, 0.5)
    inputs = all_score_inputs().astype(int)
    steps = np.abs(inputs).sum(axis=1)
    assert pooled[0, 1, 4] == 2.0
    assert np.all(pooled[steps == 1, 1, 4] == 1.0)  # [1,0,0,0], [0,1,0,0], ...
    assert pooled[:, 1, 4].sum() == 2.0 + 4 * 1.0  # nothing wrapped round to score 3
    assert pool_neighbours(counts, 0.0) is counts
