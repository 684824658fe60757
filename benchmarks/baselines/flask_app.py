"""POST /predict as a Flask route, the naive way: ONNX Runtime in-process, gunicorn sync workers.

gunicorn -w 2 -b 127.0.0.1:PORT benchmarks.baselines.flask_app:app
"""

from __future__ import annotations

from typing import Any

from flask import Flask, jsonify, request

from benchmarks.baselines.job import Job, answers_of

app = Flask(__name__)
job = Job()


@app.get("/health")
def health() -> Any:
    return jsonify({"status": "UP"})


@app.post("/predict")
def predict() -> Any:
    body = request.get_json(silent=True)
    answers = answers_of(body.get("testResponseDetails") if isinstance(body, dict) else None)
    if answers is None:
        return jsonify({"code": "BAD_REQUEST", "message": "invalid answers"}), 400
    return jsonify(job.predict(answers))
