"""`hollang model evaluate`: a refined model beats its base on held-out feedback, and
`--require-better` turns the verdict into the exit code."""

from __future__ import annotations

import json
from pathlib import Path

from click.testing import CliRunner

from cli.model import model_cli
from tests.model.test_refine import LABELS, base_model, served_rows, write_export


def test_evaluate_a_refined_model_against_its_base(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    base_path = tmp_path / "base.onnx"
    base_path.write_bytes(base.data)
    export = write_export(
        tmp_path / "e.jsonl.gz", served_rows(base, {LABELS[2]: 1, LABELS[4]: 5}, 1500)
    )
    refined = tmp_path / "refined.onnx"
    runner = CliRunner()
    trained = runner.invoke(
        model_cli, ["train", "--base", str(base_path), "--export", str(export), "-o", str(refined)]
    )
    assert trained.exit_code == 0, trained.output

    args = ["evaluate", str(refined), "--against", str(base_path), "--export", str(export)]
    result = runner.invoke(model_cli, [*args, "--require-better"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    ours, theirs = report["candidate"], report["against"]
    assert report["better"] is True
    assert ours["pairwiseAccuracy"] > theirs["pairwiseAccuracy"]
    assert ours["pairs"] == theirs["pairs"] > 0
    assert report["heldOut"]["ratings"] == json.loads(trained.stdout)["heldOutRatings"]
    # train's own report judged the same held-out part the same way
    assert (
        json.loads(trained.stdout)["heldOut"]["result"]["pairwiseAccuracy"]
        == (ours["pairwiseAccuracy"])
    )
    assert ours["top3Counts"][LABELS[2]] < theirs["top3Counts"][LABELS[2]]
    assert 0 <= report["top3Agreement"] < 1
    assert set(ours) >= {"expectedTop3Satisfaction", "top3Coverage", "modelVersion"}

    backwards = ["evaluate", str(base_path), "--against", str(refined), "--export", str(export)]
    result = runner.invoke(model_cli, [*backwards, "--require-better"])
    assert result.exit_code == 1
    assert json.loads(result.stdout)["better"] is False
    assert "the candidate is not better: held-out pairwise accuracy" in result.stderr
    assert runner.invoke(model_cli, backwards).exit_code == 0  # a report, not a gate


def test_evaluate_against_itself_is_not_better(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    path = tmp_path / "base.onnx"
    path.write_bytes(base.data)
    export = write_export(tmp_path / "e.jsonl.gz", served_rows(base, {LABELS[0]: 1}, 300))
    result = CliRunner().invoke(
        model_cli,
        ["evaluate", str(path), "--against", str(path), "--export", str(export),
         "--require-better"],
    )  # fmt: skip
    assert result.exit_code == 1
    assert json.loads(result.stdout)["top3Agreement"] == 1.0


def test_publish_require_better_needs_the_feedback(tmp_path: Path) -> None:
    path = tmp_path / "m.onnx"
    path.write_bytes(base_model(tmp_path).data)
    result = CliRunner().invoke(model_cli, ["publish", str(path), "--require-better"])
    assert result.exit_code == 2
    assert "--require-better needs the feedback: --export FILE" in result.stderr
