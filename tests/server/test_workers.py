"""Two `hollang serve` worker processes follow one model pointer: an upload or a rollback
through either worker reaches both within a few poll intervals.

Each /info call goes over a fresh connection, so the kernel hands it to either worker; the
`pid` in the answer says which one answered.
"""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np

from model.modelfile import ModelFile, ModelMetadata, build_mlp
from tests.helpers import serve_process

BUNDLED = Path(__file__).resolve().parents[2] / "model" / "bundled" / "default.onnx"
BUNDLED_FILE = ModelFile.read(BUNDLED)
TOKEN = "t"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
WORKERS = 2
FIND_SECONDS = 60.0
REACH_SECONDS = 20.0


def mlp_bytes(version: str, seed: int) -> bytes:
    labels = BUNDLED_FILE.metadata.labels
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(size=(16, 4)), rng.normal(size=16)),
        (rng.normal(size=(len(labels), 16)), rng.normal(size=len(labels))),
    ]
    return build_mlp(layers, ModelMetadata(model_version=version, labels=labels))


def fresh_client(url: str) -> httpx.Client:
    """No keep-alive: every request opens its own connection."""
    limits = httpx.Limits(max_keepalive_connections=0)
    return httpx.Client(base_url=url, timeout=10, limits=limits)


def ask(client: httpx.Client) -> tuple[int, str]:
    response = client.get("/info")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    return int(data["pid"]), str(data["model"]["version"])


def ask_many(client: httpx.Client, count: int = 8) -> list[tuple[int, str]]:
    """`count` requests at once: an idle worker tends to win every sequential accept, while
    concurrent connections reach both."""
    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(lambda _: ask(client), range(count)))


def find_workers(client: httpx.Client) -> dict[int, str]:
    """Ask until both workers have answered; pid -> the version it reported.

    `serve_process` returns once one worker is ready; on a busy machine the other may still
    be starting, so this waits for it (bounded) rather than counting requests.
    """
    seen: dict[int, str] = {}
    deadline = time.monotonic() + FIND_SECONDS
    while time.monotonic() < deadline:
        seen.update(ask_many(client))
        if len(seen) == WORKERS:
            return seen
        time.sleep(0.05)
    raise AssertionError(f"only {len(seen)} worker(s) answered in {FIND_SECONDS} s: {seen}")


def wait_until_all_serve(client: httpx.Client, pids: set[int], version: str) -> float:
    """Poll until every worker has reported `version`; returns the seconds it took."""
    started = time.monotonic()
    latest: dict[int, str] = {}
    while time.monotonic() - started < REACH_SECONDS:
        for pid, reported in ask_many(client):
            assert pid in pids, f"an unknown worker {pid} answered (a worker restarted?)"
            latest[pid] = reported
        if len(latest) == len(pids) and set(latest.values()) == {version}:
            return time.monotonic() - started
        time.sleep(0.02)
    raise AssertionError(f"not every worker serves {version} after {REACH_SECONDS} s: {latest}")


def test_an_upload_and_a_rollback_reach_every_worker(tmp_path: Path, database_url: str) -> None:
    env = {
        "HOLLANG_DATA_DIR": str(tmp_path),
        "HOLLANG_DATABASE_URL": database_url,
        "HOLLANG_ADMIN_TOKEN": TOKEN,
        "HOLLANG_MODEL_POLL_INTERVAL": "0.5",
    }
    initial = BUNDLED_FILE.metadata.model_version
    with (
        serve_process(env, workers=WORKERS, log_path=tmp_path / "serve.log") as url,
        fresh_client(url) as client,
    ):
        workers = find_workers(client)
        # both started on the bundled model (one published it, the other followed)
        assert set(workers.values()) == {initial}, workers
        pids = set(workers)

        response = client.post(
            "/admin/model",
            content=mlp_bytes("workers-1", seed=1),
            headers={**AUTH, "Content-Type": "application/octet-stream"},
        )
        assert response.status_code == 200, response.text
        assert response.json()["data"]["active"]["modelVersion"] == "workers-1"
        wait_until_all_serve(client, pids, "workers-1")

        response = client.post("/admin/model/rollback", headers=AUTH)
        assert response.status_code == 200, response.text
        assert response.json()["data"]["active"]["modelVersion"] == initial
        wait_until_all_serve(client, pids, initial)

        # every worker's status shows the same pointer; none refused a model
        for _ in range(20):
            status = client.get("/admin/model", headers=AUTH).json()["data"]
            assert status["pointer"]["active"]["version"] == initial
            # rolled back to the bottom of the history: nothing older is left
            assert status["pointer"]["history"] == []
            assert status["lastError"] is None
