"""Replicas follow the registry's pointer: two real `hollang serve` processes on one database
and one store converge on a newly activated version; a replica whose S3 is unreachable (at
start, or mid-run) keeps serving its model, says so in /health/ready and /info, and
recovers by itself when S3 answers again."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cli.main import main
from model.modelfile import ModelFile
from model.registry import ModelRegistry
from tests.helpers import RunningService, serve_process, start_service, submission
from tests.s3support import (
    MotoProcess,
    StoreUnderTest,
    model_bytes,
    new_bucket,
    s3_store,
    wait_for,
)

POLL = 1.0
SLACK = 2.0  # fetch + full validation + the /info round trip, on a busy 2-core machine


def model_info(url: str) -> dict[str, Any]:
    response = httpx.get(f"{url}/info", timeout=5)
    assert response.status_code == 200
    info: dict[str, Any] = response.json()["data"]["model"]
    return info


def test_two_replicas_converge_within_two_poll_intervals(
    store_and_database: tuple[StoreUnderTest, str], tmp_path: Path
) -> None:
    objects, database_url = store_and_database
    env = {
        **objects.env,
        "HOLLANG_DATABASE_URL": database_url,
        "HOLLANG_MODEL_POLL_INTERVAL": str(POLL),
    }
    model = tmp_path / "converge-2.onnx"
    model.write_bytes(model_bytes("converge-2", seed=31))
    with (
        serve_process(env, log_path=tmp_path / "a.log") as first,
        serve_process(env, log_path=tmp_path / "b.log") as second,
    ):
        before = {model_info(url)["version"] for url in (first, second)}
        assert len(before) == 1 and "converge-2" not in before
        result = CliRunner().invoke(main, ["model", "publish", str(model), "--activate"], env=env)
        assert result.exit_code == 0, result.output

        def converged() -> bool:
            return all(model_info(url)["version"] == "converge-2" for url in (first, second))

        wait_for(converged, 2 * POLL + SLACK, "both replicas to serve converge-2")
        for url in (first, second):
            info = model_info(url)
            assert info["lastError"] is None
            assert info["sha256"] == ModelFile.from_bytes(model.read_bytes()).sha256
            response = httpx.post(f"{url}/test-responses", json=submission(), timeout=10)
            assert response.status_code == 200, response.text


# ---- S3 outages (S3 only: a local folder has no network to lose) ----


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'hollang.db'}"


@contextlib.contextmanager
def service_on(objects: StoreUnderTest, database_url: str) -> Iterator[RunningService]:
    """A real server in this process (polling every 0.2 s), to look at its model directly."""
    yield from start_service(objects.settings(database_url))


def registry_error(service: RunningService) -> str | None:
    """What /health/ready says about the registry, read from the same response that says it
    is still serving (the poller may change the error between two requests)."""
    with service.client() as client:
        ready = client.get("/health/ready")
    assert ready.status_code == 200, ready.text  # still serving: it has a model
    error: str | None = ready.json()["data"]["checks"].get("modelRegistry")
    return error


def info_error(service: RunningService) -> str | None:
    """What /info says about the registry; compared with readiness only while it is steady."""
    with service.client() as client:
        error: str | None = client.get("/info").json()["data"]["model"]["lastError"]
    return error


def activate(objects: StoreUnderTest, version: str, seed: int) -> None:
    registry = ModelRegistry(objects.store)
    entry = registry.publish(ModelFile.from_bytes(model_bytes(version, seed)))
    registry.activate(entry, registry.read_pointer())


def test_s3_unreachable_at_start_then_back(tmp_path: Path, sqlite_url: str) -> None:
    moto = MotoProcess()  # on a free port where nothing listens yet
    objects = s3_store(tmp_path, moto.url, bucket="hollang-late")
    try:
        with service_on(objects, sqlite_url) as service:
            error = registry_error(service)
            # what start-up found, or what a poll since then found: S3 does not answer
            assert error is not None, error
            assert (
                "object store unreachable at start" in error
                or "cannot read the active model pointer" in error
            ), error
            assert "Could not connect to the endpoint URL" in error, error
            assert service.app_services.engine.model is not None  # the initial model serves
            with service.client() as client:
                assert client.post("/test-responses", json=submission()).status_code == 200
            moto.start()
            new_bucket(moto.url, "hollang-late")
            activate(objects, "after-start", seed=42)
            wait_for(
                lambda: service.app_services.engine.model.version == "after-start",
                10,
                "the replica to follow the pointer once S3 answers",
            )
            assert registry_error(service) is None
    finally:
        moto.stop()


def test_s3_lost_mid_run_then_back(tmp_path: Path, sqlite_url: str) -> None:
    moto = MotoProcess()
    moto.start()
    objects = s3_store(tmp_path, moto.url)
    try:
        with service_on(objects, sqlite_url) as service:
            assert registry_error(service) is None
            assert info_error(service) is None
            serving = service.app_services.engine.model.version
            moto.stop()
            error = wait_for(lambda: registry_error(service), 10, "the outage to be reported")
            assert "cannot read the active model pointer" in error
            assert "cannot read the active model pointer" in (info_error(service) or "")
            with service.client() as client:
                assert client.post("/test-responses", json=submission()).status_code == 200
                assert client.get("/info").json()["data"]["model"]["version"] == serving
            # S3 answers again: a new moto process (it keeps state in memory, so the bucket
            # is made again) where an operator activates a new model.
            moto.start()
            new_bucket(moto.url, objects.overrides["s3_bucket"])
            activate(objects, "after-outage", seed=41)
            wait_for(
                lambda: service.app_services.engine.model.version == "after-outage",
                10,
                "the replica to follow the pointer after the outage",
            )
            assert registry_error(service) is None
            assert info_error(service) is None
    finally:
        moto.stop()
