"""Golden parity: the original's model, converted, answers exactly as the original did.

The original PyTorch state dict is converted with `hollang model import-torch`, the
original catalogue is loaded with `hollang catalog load`, and a real `hollang serve`
process (with `HOLLANG_MODEL_PATH` set to the converted file) is asked about all 256
possible inputs, through POST /test-responses + GET /recommendations/{id} and through
POST /predict. Every top-3 must equal `golden_top3.json`, in order.
"""

from __future__ import annotations

import json
from pathlib import Path

import httpx
import pytest

from model.scoring import mbti_from_scores
from tests.helpers import BACKENDS, SHARED, answers_for, fresh_database_url, run_cli, serve_process

pytest.importorskip("torch", reason="the import-torch tool needs the torch extra")
GOLDEN = json.loads((SHARED / "golden_top3.json").read_text())["rows"]


@pytest.mark.torch
@pytest.mark.parametrize("backend", BACKENDS)
def test_converted_original_model_reproduces_golden_table(backend: str, tmp_path: Path) -> None:
    assert len(GOLDEN) == 256
    for url in fresh_database_url(backend, tmp_path):
        env = {"HOLLANG_DATA_DIR": str(tmp_path / "data"), "HOLLANG_DATABASE_URL": url}
        converted = tmp_path / "original.onnx"
        result = run_cli(
            "model", "import-torch",
            "--state-dict", str(SHARED / "model.pt"),
            "--labels", str(SHARED / "num2content.json"),
            "-o", str(converted),
        )  # fmt: skip
        assert result.returncode == 0, result.stderr
        loaded = run_cli("catalog", "load", str(SHARED / "catalog.json"), env=env)
        assert loaded.returncode == 0, loaded.stderr

        env["HOLLANG_MODEL_PATH"] = str(converted)
        with (
            serve_process(env, log_path=tmp_path / "serve.log") as base,
            httpx.Client(base_url=base, timeout=30) as client,
        ):
            for row in GOLDEN:
                scores = row["scores"]
                details = answers_for(scores)
                created = client.post(
                    "/test-responses",
                    json={"user": {"name": "골든"}, "testResponseDetails": details},
                )
                assert created.status_code == 200, created.text
                rec_id = created.json()["data"]["recommendation"]["id"]
                rec = client.get(f"/recommendations/{rec_id}").json()["data"]["recommendation"]
                names = [hobby["originalName"] for hobby in rec["hobbies"]]
                assert names == row["top3Names"], scores
                assert rec["hobbyType"]["mbtiType"] == mbti_from_scores(scores)
                assert rec["modelVersion"].startswith("torch-")

                predicted = client.post("/predict", json={"testResponseDetails": details})
                keys = [hobby["key"] for hobby in predicted.json()["data"]["hobbies"][:3]]
                assert keys == row["top3Names"], scores
