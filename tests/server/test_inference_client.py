"""Remote inference mode (`HOLLANG_INFERENCE_URL`): the service asks an inference server.

Against the real stand-in of the original inferring server (benchmarks/standin: Flask,
PyTorch, the original weights) the service gives the same answers as its embedded mode
does with the converted model, and both match the original's golden table. A
first-generation server's answer (type name, hobbies in order, no scores) works too. A
server that is down, too slow or answers garbage gives the 503 envelope with Retry-After,
and nothing is written. The first-generation and faulty servers are a small stub here: they
stand for external systems, not for our code.
"""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest

from cli.context import prepare_database
from db.catalog import load_catalog
from db.session import Database
from model.convert import import_torch_state_dict
from model.scoring import mbti_from_scores
from tests.helpers import (
    ROOT,
    SHARED,
    RunningService,
    answers_for,
    free_port,
    make_settings,
    start_service,
    stored_counts,
)

pytest.importorskip("torch", reason="the stand-in inference server needs the torch extra")
pytest.importorskip("flask", reason="the stand-in inference server needs flask")

GOLDEN = json.loads((SHARED / "golden_top3.json").read_text())["rows"]
SAMPLE = GOLDEN[::15]  # 18 of the 256 inputs, from (0,0,0,0) to (3,3,3,3)
STANDIN = ROOT / "benchmarks" / "standin" / "app.py"


@pytest.fixture(scope="module")
def standin() -> Iterator[str]:
    """The stand-in inference server as a real separate process on a free port."""
    port = free_port()
    process = subprocess.Popen(
        [sys.executable, str(STANDIN), "--port", str(port), "--quiet"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the stand-in exited: {process.stderr.read()!r}")  # type: ignore[union-attr]
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the stand-in did not start")
            time.sleep(0.1)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=30)


class Stub:
    """A tiny inference server whose behaviour the test chooses (`mode`)."""

    def __init__(self) -> None:
        self.mode = "first-generation"
        self.requests: list[Any] = []
        stub = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", 0))
                body = json.loads(self.rfile.read(length))
                stub.requests.append((self.path, body))
                status, payload = stub.answer(body)
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                self.end_headers()
                self.wfile.write(payload)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            daemon_threads = True

            def handle_error(self, request: Any, client_address: Any) -> None:
                pass  # the service hung up on a slow answer: that is the point of "slow"

        self.server = Server(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def answer(self, details: list[dict[str, int]]) -> tuple[int, bytes]:
        scores = [0, 0, 0, 0]
        for detail in details:
            scores[(detail["questionNumber"] - 1) // 3] += detail["answerNumber"] == 2
        row = next(row for row in GOLDEN if row["scores"] == scores)
        names = row["top3Names"]
        mbti = mbti_from_scores(scores)
        if self.mode == "first-generation":
            doc: Any = {"hobbyType": {"name": mbti}, "hobbies": [{"name": n} for n in names]}
        elif self.mode == "second-generation-shuffled":
            s_e, s_n, s_f, s_j = scores
            doc = {
                "hobbyType": {
                    "mbtiType": mbti,
                    "scores": {"scoreE": s_e, "scoreN": s_n, "scoreF": s_f, "scoreJ": s_j},
                },
                # listed out of order: the rankings, not the list order, decide
                "hobbies": [{"name": names[i], "ranking": i + 1} for i in (2, 0, 1)],
            }
        elif self.mode == "slow":
            time.sleep(1.5)
            doc = {"hobbyType": {"name": mbti}, "hobbies": [{"name": n} for n in names]}
        elif self.mode == "not-json":
            return 200, b"<html>Internal Server Error</html>"
        elif self.mode == "status-500":
            return 500, b'{"message": "CUDA out of memory"}'
        elif self.mode == "wrong-shape":
            doc = {"type": mbti, "top3": names}
        elif self.mode == "bad-ranking":
            doc = {
                "hobbyType": {"mbtiType": mbti},
                "hobbies": [{"name": n, "ranking": 1} for n in names],
            }
        elif self.mode == "bad-type":
            doc = {"hobbyType": {"name": "XYZW"}, "hobbies": [{"name": n} for n in names]}
        else:
            raise AssertionError(self.mode)
        return 200, json.dumps(doc, ensure_ascii=False).encode()


@pytest.fixture(scope="module")
def stub() -> Iterator[Stub]:
    stub = Stub()
    thread = threading.Thread(target=stub.server.serve_forever, daemon=True)
    thread.start()
    try:
        yield stub
    finally:
        stub.server.shutdown()
        stub.server.server_close()


@pytest.fixture(scope="module")
def original_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The original's weights converted to our model file, for the embedded side."""
    path = tmp_path_factory.mktemp("model") / "original.onnx"
    path.write_bytes(import_torch_state_dict(SHARED / "model.pt", SHARED / "num2content.json"))
    return path


@contextmanager
def running(
    database_url: str, data_dir: Path, model: Path, **overrides: object
) -> Iterator[RunningService]:
    """A service on the original catalogue: embedded, or remote with `inference_url`."""
    generator = _starting(database_url, data_dir, model, **overrides)
    service = next(generator)
    try:
        yield service
    finally:
        generator.close()


def _starting(
    database_url: str, data_dir: Path, model: Path, **overrides: object
) -> Iterator[RunningService]:
    settings = make_settings(data_dir, database_url, model_path=model, **overrides)
    prepare_database(settings)
    db = Database(database_url)
    try:
        with db.write() as session:
            load_catalog(session, (SHARED / "catalog.json").read_bytes(), "original")
    finally:
        db.dispose()
    yield from start_service(settings)


def recommendation(client: httpx.Client, scores: list[int]) -> dict[str, Any]:
    """Take the test and read the stored recommendation back."""
    created = client.post(
        "/test-responses",
        json={"user": {"name": "원격"}, "testResponseDetails": answers_for(scores)},
    )
    assert created.status_code == 200, created.text
    rec_id = created.json()["data"]["recommendation"]["id"]
    found = client.get(f"/recommendations/{rec_id}")
    assert found.status_code == 200, found.text
    rec: dict[str, Any] = found.json()["data"]["recommendation"]
    return rec


def summary(rec: dict[str, Any]) -> tuple[list[str], str, dict[str, int]]:
    return (
        [hobby["originalName"] for hobby in rec["hobbies"]],
        rec["hobbyType"]["mbtiType"],
        rec["scores"],
    )


def test_remote_stand_in_answers_like_embedded_and_the_golden_table(
    database_url: str, tmp_path: Path, standin: str, original_model: Path
) -> None:
    with (
        running(database_url, tmp_path, original_model) as embedded,
        running(database_url, tmp_path, original_model, inference_url=standin) as remote,
        embedded.client() as local_client,
        remote.client() as remote_client,
    ):
        for row in SAMPLE:
            scores = row["scores"]
            local = recommendation(local_client, scores)
            far = recommendation(remote_client, scores)
            assert summary(far) == summary(local), scores
            assert summary(far)[0] == row["top3Names"], scores
            assert summary(far)[1] == mbti_from_scores(scores)
            assert local["modelVersion"].startswith("torch-")
            assert far["modelVersion"] == f"remote:{standin.removeprefix('http://')}"

            predicted = remote_client.post(
                "/predict", json={"testResponseDetails": answers_for(scores)}
            )
            assert predicted.status_code == 200, predicted.text
            data = predicted.json()["data"]
            assert [hobby["key"] for hobby in data["hobbies"]] == row["top3Names"]
            assert [hobby["score"] for hobby in data["hobbies"]] == [None, None, None]
            assert all(hobby["id"] is not None for hobby in data["hobbies"])
            assert data["modelVersion"] == far["modelVersion"]


def test_first_generation_inference_server(
    database_url: str, tmp_path: Path, stub: Stub, original_model: Path
) -> None:
    stub.mode = "first-generation"
    with (
        running(database_url, tmp_path, original_model, inference_url=stub.url) as remote,
        remote.client() as client,
    ):
        for row in SAMPLE[:6]:
            scores = row["scores"]
            stub.requests.clear()
            rec = recommendation(client, scores)
            hobbies, mbti, got_scores = summary(rec)
            assert hobbies == row["top3Names"]
            assert mbti == mbti_from_scores(scores)
            # no scores came back: they were counted here, by the one scoring rule
            assert [got_scores[k] for k in ("scoreE", "scoreN", "scoreF", "scoreJ")] == scores
            # the request followed the protocol: the 12 answers, sorted by question
            ((path, body),) = stub.requests
            assert path == "/test-responses"
            assert body == answers_for(scores)


def test_second_generation_rankings_decide_the_order(
    database_url: str, tmp_path: Path, stub: Stub, original_model: Path
) -> None:
    stub.mode = "second-generation-shuffled"
    with (
        running(database_url, tmp_path, original_model, inference_url=stub.url) as remote,
        remote.client() as client,
    ):
        for row in SAMPLE[:4]:
            hobbies, mbti, got_scores = summary(recommendation(client, row["scores"]))
            assert hobbies == row["top3Names"]
            assert mbti == mbti_from_scores(row["scores"])
            assert [got_scores[k] for k in ("scoreE", "scoreN", "scoreF", "scoreJ")] == row[
                "scores"
            ]


FAULTS = ["down", "slow", "not-json", "status-500", "wrong-shape", "bad-ranking", "bad-type"]


def test_unusable_inference_server_is_a_503_and_writes_nothing(
    database_url: str, tmp_path: Path, stub: Stub, original_model: Path
) -> None:
    dead = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with (
        running(
            database_url, tmp_path, original_model, inference_url=stub.url, inference_timeout=0.3
        ) as remote,
        running(database_url, tmp_path, original_model, inference_url=dead) as orphan,
        remote.client() as client,
        orphan.client() as orphan_client,
    ):
        before = stored_counts(remote)
        for fault in FAULTS:
            stub.mode = fault
            target = orphan_client if fault == "down" else client
            body = {"user": {"name": "장애"}, "testResponseDetails": answers_for([1, 2, 3, 0])}
            for path, payload in (
                ("/test-responses", body),
                ("/predict", {"testResponseDetails": body["testResponseDetails"]}),
            ):
                response = target.post(path, json=payload)
                assert response.status_code == 503, (fault, path, response.text)
                assert response.headers["Retry-After"] == "2", fault
                error = response.json()
                assert error["code"] == "SERVICE_UNAVAILABLE", fault
                assert "inference server" in error["message"], fault
        assert stored_counts(remote) == before

        # and the same service recovers as soon as its inference server does
        stub.mode = "first-generation"
        rec = recommendation(client, [1, 2, 3, 0])
        assert (
            summary(rec)[0] == next(r for r in GOLDEN if r["scores"] == [1, 2, 3, 0])["top3Names"]
        )
