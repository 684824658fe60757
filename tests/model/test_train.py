"""Training our own model: reproducible, faithful to the table, and steered by ratings."""

from __future__ import annotations

import gzip
import json
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from click.testing import CliRunner
from onnx import numpy_helper

from cli.model import model_cli
from model import train as training
from model.modelfile import ModelFile
from model.scoring import all_score_inputs

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "model" / "bundled" / "default.onnx"
CATALOGUE = ROOT / "db" / "catalog" / "default.json"
SHARED = ROOT / ".." / "shared" / "hollang"

SMALL_TABLE = {
    "description": "five hobbies, enough to steer",
    "axes": ["E", "N", "F", "J"],
    "hobbies": [
        {"originalName": "party", "affinity": {"E": 0.9, "N": 0, "F": 0.2, "J": 0}, "base": 0},
        {"originalName": "reading", "affinity": {"E": -0.8, "N": 0.5, "F": 0, "J": 0}, "base": 0},
        {"originalName": "budget", "affinity": {"E": 0, "N": -0.6, "F": -0.7, "J": 0.8}, "base": 0},
        {"originalName": "travel", "affinity": {"E": 0.3, "N": 0.6, "F": 0, "J": -0.8}, "base": 0},
        {
            "originalName": "garden",
            "affinity": {"E": -0.5, "N": -0.5, "F": 0.6, "J": 0.3},
            "base": 0,
        },
    ],
}
FAST = 400  # epochs where reproducing the bundled file is not the point


@pytest.fixture(scope="module")
def small_table(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("table") / "table.json"
    path.write_text(json.dumps(SMALL_TABLE), encoding="utf-8")
    return path


def write_export(path: Path, rows: list[dict]) -> Path:
    with gzip.open(path, "wt", encoding="utf-8") as out:
        for number, row in enumerate(rows, start=1):
            record = {"testResponseId": number, "createdAt": "2025-01-01T00:00:00Z"}
            record |= {"mbtiType": "ESTJ", "modelVersion": "hollang-default-1", **row}
            out.write(json.dumps(record, ensure_ascii=False) + "\n")
    return path


def response(scores: list[int], *ratings: tuple[str, int | None]) -> dict:
    hobbies = [
        {"key": key, "ranking": ranking, "satisfaction": satisfaction}
        for ranking, (key, satisfaction) in enumerate(ratings, start=1)
    ]
    return {"scores": scores, "hobbies": hobbies}


def logits(data: bytes) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"scores": all_score_inputs()})[0]


def weights(data: bytes) -> dict[str, np.ndarray]:
    graph = onnx.load_from_string(data).graph
    return {t.name: numpy_helper.to_array(t) for t in graph.initializer}


def top3(data: bytes) -> np.ndarray:
    return np.argsort(-logits(data), axis=1, kind="stable")[:, :3]


def rank(row: np.ndarray, column: int) -> int:
    """1 = the model's first pick."""
    return int((row > row[column]).sum()) + 1


def test_cli_defaults_reproduce_the_bundled_model(tmp_path: Path) -> None:
    out = tmp_path / "retrained.onnx"
    result = CliRunner().invoke(model_cli, ["train", "-o", str(out)])
    assert result.exit_code == 0, result.output
    retrained, bundled = ModelFile.read(out), ModelFile.read(BUNDLED)
    assert retrained.metadata == bundled.metadata
    assert bundled.metadata.model_version == training.DEFAULT_MODEL_VERSION
    new, old = weights(retrained.data), weights(bundled.data)
    assert new.keys() == old.keys()
    for name in old:
        np.testing.assert_allclose(new[name], old[name], rtol=0, atol=1e-6, err_msg=name)
    assert np.array_equal(top3(retrained.data), top3(bundled.data))


def test_bundled_model_follows_the_table_and_the_catalogue() -> None:
    table = training.load_table(training.DEFAULT_TABLE)
    bundled = ModelFile.read(BUNDLED)
    assert bundled.metadata.labels == table.labels
    utilities = table.utilities()
    first = logits(bundled.data).argmax(axis=1)
    agreement = np.mean(utilities[np.arange(256), first] >= utilities.max(axis=1) - 1e-9)
    assert agreement >= 0.95
    result = CliRunner().invoke(
        model_cli, ["inspect", str(BUNDLED), "--labels-from", str(CATALOGUE)]
    )
    assert result.exit_code == 0, result.output


def test_training_is_deterministic() -> None:
    first, report = training.train(training.DEFAULT_TABLE, model_version="det-1", epochs=FAST)
    second, _ = training.train(training.DEFAULT_TABLE, model_version="det-1", epochs=FAST)
    assert first == second
    assert report.sha256 == ModelFile.from_bytes(first).sha256
    other_seed, _ = training.train(
        training.DEFAULT_TABLE, model_version="det-1", epochs=FAST, seed=1
    )
    assert other_seed != first


STEER_EPOCHS = 1500


def close_call(table_path: Path) -> tuple[int, int, int]:
    """(cell, first, second): the input where the table's first pick leads by the least.

    Its target leads the runner-up by at least 20%, so the model without ratings ranks the two
    reliably; the lead is small enough for 40 ratings of 1 or 5 (x1/3, x3) to overturn it.
    """
    targets = training.load_table(table_path).targets()
    ordered = np.sort(targets, axis=1)
    ratio = ordered[:, -1] / ordered[:, -2]
    cell = int(np.argmin(np.where(ratio > 1.2, ratio, np.inf)))
    first, second = np.argsort(-targets[cell], kind="stable")[:2]
    return cell, int(first), int(second)


@pytest.fixture(scope="module")
def plain_small(small_table: Path) -> np.ndarray:
    data, _ = training.train(small_table, model_version="t", epochs=STEER_EPOCHS)
    return logits(data)


def steer(table: Path, export: Path) -> tuple[np.ndarray, training.TrainReport]:
    data, report = training.train(table, [export], model_version="t", epochs=STEER_EPOCHS)
    return logits(data), report


def test_dislikes_lower_a_hobby_and_unknown_keys_are_counted(
    small_table: Path, plain_small: np.ndarray, tmp_path: Path
) -> None:
    cell, first, _ = close_call(small_table)
    scores = all_score_inputs()[cell].astype(int).tolist()
    name = SMALL_TABLE["hobbies"][first]["originalName"]
    rows = [response(scores, (name, 1), ("no such hobby", 5)) for _ in range(40)]
    rows += [response([0, 0, 0, 0], ("reading", None), ("gone too", 2))]
    steered, report = steer(small_table, write_export(tmp_path / "export.jsonl.gz", rows))

    assert rank(plain_small[cell], first) == 1
    assert rank(steered[cell], first) > 1
    assert report.unknown_keys == {"gone too": 1, "no such hobby": 40}
    assert (report.rows_read, report.rows_used, report.ratings_used) == (41, 40, 40)
    assert report.unrated == 1


def test_likes_raise_a_hobby(small_table: Path, plain_small: np.ndarray, tmp_path: Path) -> None:
    cell, _, second = close_call(small_table)
    scores = all_score_inputs()[cell].astype(int).tolist()
    name = SMALL_TABLE["hobbies"][second]["originalName"]
    rows = [response(scores, (name, 5))] * 40
    steered, _ = steer(small_table, write_export(tmp_path / "export.jsonl.gz", rows))

    assert rank(plain_small[cell], second) == 2
    assert rank(steered[cell], second) == 1


def test_aggregated_targets_equal_one_example_per_rating(small_table: Path) -> None:
    table = training.load_table(small_table)
    labels = table.labels
    feedback = training.Feedback(counts=np.zeros((256, len(labels), 5), dtype=np.int64))
    ratings = [(7, 0, 1), (7, 0, 1), (7, 2, 5), (7, 4, 3), (200, 1, 2), (200, 3, 4)]
    for cell, hobby, satisfaction in ratings:
        feedback.counts[cell, hobby, satisfaction - 1] += 1
    prior = table.targets()
    expected = prior * training.TABLE_WEIGHT
    weight = np.full((256, 1), training.TABLE_WEIGHT)
    for cell, hobby, satisfaction in ratings:
        example = prior[cell].copy()
        example[hobby] *= training.RATING_STEP ** (satisfaction - 3)
        expected[cell] += example / example.sum()
        weight[cell] += 1
    np.testing.assert_allclose(training.soft_targets(table, feedback), expected / weight)


@pytest.mark.parametrize(
    ("line", "reason"),
    [
        ("not json", "not JSON"),
        ('{"scores": [0, 1, 2], "hobbies": []}', "'scores' must be 4 integers"),
        ('{"scores": [0, 1, 2, 4], "hobbies": []}', "'scores' must be 4 integers"),
        ('{"scores": [0, 1, 2, 3], "hobbies": [{"key": "x", "satisfaction": 9}]}', "1..5"),
    ],
)
def test_malformed_export_lines_name_the_line(
    small_table: Path, tmp_path: Path, line: str, reason: str
) -> None:
    export = tmp_path / "bad.jsonl.gz"
    with gzip.open(export, "wt", encoding="utf-8") as out:
        out.write('{"scores": [0, 0, 0, 0], "hobbies": []}\n' + line + "\n")
    with pytest.raises(training.TrainingDataError, match=rf"bad\.jsonl\.gz:2: .*{reason}"):
        training.read_exports([export], ("a", "b", "c"))


def test_an_export_that_is_not_gzip(tmp_path: Path) -> None:
    export = tmp_path / "plain.jsonl"
    export.write_text('{"scores": [0, 0, 0, 0], "hobbies": []}\n', encoding="utf-8")
    with pytest.raises(training.TrainingDataError, match="cannot read export"):
        training.read_exports([export], ("a", "b", "c"))


@pytest.mark.parametrize(
    ("change", "reason"),
    [
        (lambda t: t.update(axes=["E", "N", "J", "F"]), "'axes' must be"),
        (lambda t: t["hobbies"][1].update(originalName="party"), "duplicate originalName"),
        (lambda t: t["hobbies"][2]["affinity"].update(E=1.5), "in [-1, 1]"),
        (lambda t: t["hobbies"][2]["affinity"].pop("J"), "'affinity' must have exactly"),
        (lambda t: t["hobbies"][0].update(base="high"), "'base' must be"),
        (lambda t: t.update(hobbies=t["hobbies"][:2]), "at least 3"),
    ],
)
def test_bad_tables_are_refused(
    tmp_path: Path, change: Callable[[dict], object], reason: str
) -> None:
    table = json.loads(json.dumps(SMALL_TABLE))
    change(table)
    path = tmp_path / "table.json"
    path.write_text(json.dumps(table), encoding="utf-8")
    with pytest.raises(training.TrainingDataError) as caught:
        training.load_table(path)
    assert reason in str(caught.value)


def test_cli_train_and_inspect(small_table: Path, tmp_path: Path) -> None:
    export = write_export(
        tmp_path / "e.jsonl.gz", [response([3, 3, 0, 0], ("party", 4), ("unknown", 1))]
    )
    out = tmp_path / "model.onnx"
    runner = CliRunner()
    result = runner.invoke(
        model_cli,
        [
            "train",
            "--table",
            str(small_table),
            "--export",
            str(export),
            "--export",
            str(export),
            "--model-version",
            "cli-1",
            "--seed",
            "3",
            "--epochs",
            str(FAST),
            "-o",
            str(out),
        ],
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout.split("\n", 1)[1])
    assert report["modelVersion"] == "cli-1" and report["epochs"] == FAST
    assert (report["rowsRead"], report["ratingsUsed"], report["unknownKeys"]) == (
        2,
        2,
        {"unknown": 2},
    )
    assert report["sha256"] == ModelFile.read(out).sha256

    result = runner.invoke(model_cli, ["inspect", str(out)])
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["labels"] == [h["originalName"] for h in SMALL_TABLE["hobbies"]]
    assert described["check"]["ok"] is True

    result = runner.invoke(
        model_cli, ["inspect", str(out), "--labels-from", str(SHARED / "catalog.json")]
    )
    assert result.exit_code == 1
    assert result.stderr.startswith("invalid model file: 5 label(s) are not catalogue hobbies")


def test_cli_inspect_a_broken_file(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(BUNDLED.read_bytes()[:100])
    result = CliRunner().invoke(model_cli, ["inspect", str(broken)])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("invalid model file: not a loadable ONNX model")
    assert len(result.stderr.strip().splitlines()) == 1


def test_cli_train_refuses_a_bad_table(tmp_path: Path) -> None:
    path = tmp_path / "table.json"
    path.write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(
        model_cli, ["train", "--table", str(path), "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "'axes' must be" in result.stderr
    assert not (tmp_path / "m").exists()
