"""A stand-in for the original Hollang inferring server: Flask, PyTorch, one request at a time.

The original service ran its model in a second process that the API server called over
HTTP for every test response. This rebuilds that server the way it was built, so the
benchmarks can measure what removing the hop buys: Flask's own (Werkzeug) server, not
threaded, a `torch.nn.Module` with the original's layout (Linear 4-128, ReLU, Linear
128-64, ReLU, Linear 64-19) loaded from the original's `model.pt`, and the original's
scoring rules (see ../shared/hollang/README.md).

    python benchmarks/standin/app.py --port 5000 [--state-dict PATH] [--labels PATH] [--quiet]

``POST /test-responses`` takes the JSON list of 12 ``{"questionNumber", "answerNumber"}``
and answers ``{"hobbyType": {"mbtiType", "scores": {...}}, "hobbies": [{"name",
"ranking"}]}`` (second generation). ``GET /health`` answers 200 once the model is loaded.
Needs the `bench` extra (flask, torch); the service never imports this.
"""

from __future__ import annotations

import argparse
import json
import logging
from pathlib import Path
from typing import Any

import torch
from flask import Flask, jsonify, request
from torch import nn

SHARED = Path(__file__).resolve().parents[3] / "shared" / "hollang"
GROUPS = (("E", "I"), ("N", "S"), ("F", "T"), ("J", "P"))


class Recommender(nn.Module):  # type: ignore[misc]
    """The original's network; the attribute names match its state-dict keys."""

    def __init__(self, outputs: int) -> None:
        super().__init__()
        self.layer1 = nn.Sequential(nn.Linear(4, 128), nn.ReLU())
        self.layer2 = nn.Sequential(nn.Linear(128, 64), nn.ReLU())
        self.fc = nn.Linear(64, outputs)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(self.layer2(self.layer1(x)))


def create_app(state_dict: Path, labels_path: Path) -> Flask:
    labels = json.loads(labels_path.read_text(encoding="utf-8"))
    num2content = [labels[str(i)] for i in range(len(labels))]
    model = Recommender(len(num2content))
    model.load_state_dict(torch.load(state_dict, map_location="cpu", weights_only=True))
    model.eval()
    app = Flask(__name__)

    @app.get("/health")
    def health() -> Any:
        return jsonify({"status": "UP"})

    @app.post("/test-responses")
    def test_responses() -> Any:
        details = request.get_json()
        if not isinstance(details, list) or len(details) != 12:
            return jsonify({"message": "expected 12 answers"}), 400
        details = sorted(details, key=lambda d: d["questionNumber"])
        scores = [0, 0, 0, 0]
        for detail in details:
            if detail["answerNumber"] == 2:
                scores[(detail["questionNumber"] - 1) // 3] += 1
        mbti = "".join(
            high if s >= 2 else low for s, (high, low) in zip(scores, GROUPS, strict=True)
        )
        with torch.no_grad():
            logits = model(torch.tensor([scores], dtype=torch.float32))[0]
        top3 = torch.topk(logits, 3).indices.tolist()
        return jsonify(
            {
                "hobbyType": {
                    "mbtiType": mbti,
                    "scores": dict(
                        zip(("scoreE", "scoreN", "scoreF", "scoreJ"), scores, strict=True)
                    ),
                },
                "hobbies": [
                    {"name": num2content[index], "ranking": rank}
                    for rank, index in enumerate(top3, start=1)
                ],
            }
        )

    return app


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=5000)
    parser.add_argument("--state-dict", type=Path, default=SHARED / "model.pt")
    parser.add_argument("--labels", type=Path, default=SHARED / "num2content.json")
    parser.add_argument("--quiet", action="store_true", help="no access log line per request")
    args = parser.parse_args()
    if args.quiet:
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    app = create_app(args.state_dict, args.labels)
    # Flask's own server, one request at a time: how the original inferring server ran.
    app.run(host=args.host, port=args.port, threaded=False, debug=False, use_reloader=False)


if __name__ == "__main__":
    main()
