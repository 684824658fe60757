"""`hollang model train --base FILE|active`: the feedback refines a served model."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

from click.testing import CliRunner

from cli.model import model_cli
from model.modelfile import ModelFile
from tests.model.test_refine import LABELS, base_model, served_rows, write_export


def test_train_from_a_base_file_reports_held_out_metrics(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    base_path = tmp_path / "base.onnx"
    base_path.write_bytes(base.data)
    export = write_export(tmp_path / "e.jsonl.gz", served_rows(base, {LABELS[2]: 1}, 500))
    out = tmp_path / "refined.onnx"
    result = CliRunner().invoke(
        model_cli,
        ["train", "--base", str(base_path), "--export", str(export), "--strength", "0.5",
         "-o", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["rowsRead"] == 500
    assert report["ratingsUsed"] + report["heldOutRatings"] == 1500
    assert 0 < report["heldOutRatings"] < 500
    assert report["strength"] == 0.5
    assert set(report["heldOut"]) == {"base", "result"}
    assert report["heldOut"]["base"]["pairs"] > 0
    written = ModelFile.read(out)
    assert written.sha256 == report["sha256"]
    assert written.metadata.model_version == report["modelVersion"]
    assert report["modelVersion"].startswith("base-1-fb-")
    assert written.metadata.labels == LABELS


def test_unknown_hobbies_fail_and_name_them(tmp_path: Path) -> None:
    base = base_model(tmp_path)
    base_path = tmp_path / "base.onnx"
    base_path.write_bytes(base.data)
    rows = served_rows(base, {}, 20)
    rows[0]["hobbies"] = [{"key": "코딩", "ranking": 1, "satisfaction": 5}]  # type: ignore[index]
    export = write_export(tmp_path / "e.jsonl.gz", rows)
    result = CliRunner().invoke(
        model_cli, ["train", "--base", str(base_path), "--export", str(export), "-o",
                    str(tmp_path / "m.onnx")],
    )  # fmt: skip
    assert result.exit_code == 1
    assert "'코딩'" in result.stderr
    assert not (tmp_path / "m.onnx").exists()


def test_table_training_refuses_exports_it_cannot_use(tmp_path: Path) -> None:
    export = tmp_path / "e.jsonl.gz"
    with gzip.open(export, "wt", encoding="utf-8") as out:
        line = {"scores": [1, 2, 3, 0], "hobbies": [{"key": "코딩", "satisfaction": 1}]}
        out.write(json.dumps(line) + "\n")
    result = CliRunner().invoke(
        model_cli, ["train", "--export", str(export), "--epochs", "5", "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 1
    assert "no rating in the exports names a hobby of the table" in result.stderr
    assert "--base active" in result.stderr
    assert not (tmp_path / "m").exists()


def test_base_and_table_are_alternatives(tmp_path: Path) -> None:
    table = tmp_path / "t.json"
    table.write_text("{}", encoding="utf-8")
    result = CliRunner().invoke(
        model_cli, ["train", "--base", "active", "--table", str(table), "-o", str(tmp_path / "m")]
    )
    assert result.exit_code == 2
    assert "--base and --table are alternatives" in result.stderr
    result = CliRunner().invoke(model_cli, ["train", "--base", "x.onnx", "-o", "m"])
    assert result.exit_code == 2
    assert "--base needs at least one --export" in result.stderr
