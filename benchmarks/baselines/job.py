"""The job every comparison server does, written the way its author would.

Load one ONNX file (the model the service serves: ``HOLLANG_BENCH_MODEL``, else the bundled
one) into an ONNX Runtime session with the service's own session options, score 12 answers,
run one row, rank the labels and answer the same JSON shape as the service's /predict
(the `id`/`shortName` fields are null: the comparison servers have no catalogue).
Nothing here is batched, logged or measured: that is the point of the comparison.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

ROOT = Path(__file__).resolve().parents[2]
BUNDLED = ROOT / "model" / "bundled" / "default.onnx"
AXES = (("E", "I"), ("N", "S"), ("F", "T"), ("J", "P"))


class Job:
    def __init__(self, path: str | None = None) -> None:
        path = path or os.environ.get("HOLLANG_BENCH_MODEL") or str(BUNDLED)
        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(path, options, providers=["CPUExecutionProvider"])
        props = self.session.get_modelmeta().custom_metadata_map
        self.labels: list[str] = json.loads(props["hollang.labels"])
        self.version = props["hollang.model_version"]

    def predict(self, answers: dict[int, int]) -> dict[str, Any]:
        """`answers`: question number 1..12 -> 1|2, already validated by the caller."""
        scores = [0, 0, 0, 0]
        for number, answer in answers.items():
            if answer == 2:
                scores[(number - 1) // 3] += 1
        logits = self.session.run(None, {"scores": np.array([scores], dtype=np.float32)})[0][0]
        order = np.argsort(-logits, kind="stable")
        values = logits.tolist()
        return {
            "code": "OK",
            "message": "Predicted.",
            "data": {
                "scores": dict(zip(("scoreE", "scoreN", "scoreF", "scoreJ"), scores, strict=True)),
                "mbtiType": "".join(
                    hi if s >= 2 else lo for s, (hi, lo) in zip(scores, AXES, strict=True)
                ),
                "hobbies": [
                    {
                        "key": self.labels[i],
                        "id": None,
                        "shortName": None,
                        "name": None,
                        "score": values[i],
                        "ranking": rank,
                    }
                    for rank, i in enumerate(order.tolist(), start=1)
                ],
                "modelVersion": self.version,
            },
        }


def answers_of(details: Any) -> dict[int, int] | None:
    """The hand-written check the Flask and raw-ASGI servers use; None when invalid."""
    if not isinstance(details, list) or len(details) != 12:
        return None
    answers: dict[int, int] = {}
    for detail in details:
        if not isinstance(detail, dict):
            return None
        q, a = detail.get("questionNumber"), detail.get("answerNumber")
        if type(q) is not int or type(a) is not int or not 1 <= q <= 12 or a not in (1, 2):
            return None
        answers[q] = a
    return answers if len(answers) == 12 else None
