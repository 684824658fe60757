"""A pointer that cannot hurt, on the local folder and on moto S3.

Unknown fields are ignored; a truncated or otherwise unreadable `models/active.json` keeps
each replica serving (its current model, or `HOLLANG_MODEL_PATH` at start), is reported in
/health/ready and /info, never makes an admin route answer 5xx, and is overwritten by an
upload or by `hollang model activate`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from click.testing import CliRunner

from cli.context import prepare_database
from cli.main import main
from model.modelfile import ModelFile
from model.registry import POINTER_KEY, CorruptPointer, ModelRegistry
from tests.helpers import RunningService, start_service, submission
from tests.s3support import (
    BUNDLED,
    MotoProcess,
    StoreUnderTest,
    model_bytes,
    s3_store,
    wait_for,
)

TOKEN = "pointer-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAW = {**AUTH, "Content-Type": "application/octet-stream"}
BUNDLED_VERSION = ModelFile.read(BUNDLED).metadata.model_version


def corrupt(objects: StoreUnderTest, how: str) -> None:
    store = objects.store
    current = store.get(POINTER_KEY).data
    body = {
        "truncated": current[: len(current) // 2],
        "not-json": b"\xff\xfe not json",
        "no-active": json.dumps({"history": []}).encode(),
        "active-not-an-object": json.dumps({"active": "v1", "history": []}).encode(),
    }[how]
    store.put(POINTER_KEY, body, content_type="application/json")


CORRUPTIONS = ["truncated", "not-json", "no-active", "active-not-an-object"]


def test_unknown_fields_are_ignored(objects: StoreUnderTest) -> None:
    registry = ModelRegistry(objects.store)
    entry = registry.publish(ModelFile.from_bytes(model_bytes("fields-1", seed=1)))
    older = registry.publish(ModelFile.from_bytes(model_bytes("fields-0", seed=2)))
    first = registry.activate(older, None)
    registry.activate(entry, first)
    body = json.loads(objects.store.get(POINTER_KEY).data)
    body["schema"] = 7
    body["active"]["signedBy"] = "a newer version"
    body["history"].append({"version": 3})  # a history entry this version cannot use
    body["history"][0]["note"] = "kept"
    objects.store.put(POINTER_KEY, json.dumps(body).encode(), content_type="application/json")
    pointer = registry.read_pointer()
    assert pointer is not None
    assert pointer.active.version == "fields-1" and pointer.active.sha256 == entry.sha256
    assert [item.version for item in pointer.history] == ["fields-0"]


@pytest.mark.parametrize("how", CORRUPTIONS)
def test_a_corrupt_pointer_is_reported_with_its_etag(objects: StoreUnderTest, how: str) -> None:
    registry = ModelRegistry(objects.store)
    entry = registry.publish(ModelFile.from_bytes(model_bytes("corrupt-1", seed=3)))
    registry.activate(entry, None)
    corrupt(objects, how)
    with pytest.raises(CorruptPointer, match="is unreadable") as caught:
        registry.read_pointer()
    # ... and it can be replaced, conditionally on exactly those bytes
    moved = registry.activate(entry, caught.value)
    assert moved.history == ()
    pointer = registry.read_pointer()
    assert pointer is not None and pointer.active.version == "corrupt-1"


# ---- replicas and the admin API (a real server; local+SQLite, S3+MariaDB) ----


@pytest.fixture
def published(store_and_database: tuple[StoreUnderTest, str]) -> Iterator[Any]:
    """A store whose pointer names a published model `pointer-1`, and a database."""
    objects, url = store_and_database
    prepare_database(objects.settings(url))
    registry = ModelRegistry(objects.store)
    registry.activate(
        registry.publish(ModelFile.from_bytes(model_bytes("pointer-1", seed=10))), None
    )
    yield objects, url


def status_of(client: httpx.Client) -> tuple[int, dict[str, Any]]:
    response = client.get("/health/ready")
    body: dict[str, Any] = response.json()
    return response.status_code, body


def test_a_corrupt_pointer_at_start_serves_the_initial_model_and_is_repaired_by_upload(
    published: tuple[StoreUnderTest, str],
) -> None:
    objects, url = published
    corrupt(objects, "truncated")
    settings = objects.settings(url, admin_token=TOKEN)
    for service in start_service(settings):
        with service.client() as client:
            code, ready = status_of(client)
            assert code == 200
            assert ready["data"]["status"] == "DEGRADED"
            assert "models/active.json is unreadable" in ready["data"]["checks"]["modelRegistry"]
            model = client.get("/info").json()["data"]["model"]
            assert model["version"] == BUNDLED_VERSION  # HOLLANG_MODEL_PATH
            assert "is unreadable (not JSON" in model["lastError"]
            assert client.post("/test-responses", json=submission()).status_code == 200

            # No admin route answers 5xx for it.
            status = client.get("/admin/model", headers=AUTH)
            assert status.status_code == 200, status.text
            assert status.json()["data"]["pointer"] is None
            assert "is unreadable" in status.json()["data"]["lastError"]
            rollback = client.post("/admin/model/rollback", headers=AUTH)
            assert rollback.status_code == 409, rollback.text
            assert "upload a model or run `hollang model activate" in rollback.json()["message"]

            # An upload overwrites it.
            uploaded = client.post(
                "/admin/model", content=model_bytes("pointer-2", seed=11), headers=RAW
            )
            assert uploaded.status_code == 200, uploaded.text
            assert uploaded.json()["data"]["pointer"]["active"]["version"] == "pointer-2"
            assert uploaded.json()["data"]["lastError"] is None
            code, ready = status_of(client)
            assert (code, ready["data"]["status"]) == (200, "UP")
    pointer = ModelRegistry(objects.store).read_pointer()
    assert pointer is not None and pointer.active.version == "pointer-2"


def test_a_pointer_corrupted_mid_run_keeps_the_model_until_activate_repairs_it(
    published: tuple[StoreUnderTest, str], tmp_path: Path
) -> None:
    objects, url = published
    settings = objects.settings(url, admin_token=TOKEN)
    env = {**objects.env, "HOLLANG_DATABASE_URL": url}
    service: RunningService
    for service in start_service(settings):
        with service.client() as client:
            assert client.get("/info").json()["data"]["model"]["version"] == "pointer-1"
            corrupt(objects, "no-active")

            def reported() -> bool:
                error = client.get("/info").json()["data"]["model"]["lastError"]
                return bool(error and "no valid 'active' entry" in error)

            wait_for(reported, 10, "the replica to report the corrupt pointer")
            assert client.get("/info").json()["data"]["model"]["version"] == "pointer-1"
            assert client.post("/test-responses", json=submission()).status_code == 200
            assert status_of(client)[1]["data"]["status"] == "DEGRADED"
            assert client.get("/admin/model", headers=AUTH).status_code == 200

            listing = CliRunner().invoke(main, ["model", "list"], env=env)
            assert listing.exit_code == 0, listing.output
            assert "no valid 'active' entry" in json.loads(listing.stdout)["pointerError"]

            path = tmp_path / "pointer-3.onnx"
            path.write_bytes(model_bytes("pointer-3", seed=12))
            published_3 = CliRunner().invoke(main, ["model", "publish", str(path)], env=env)
            assert published_3.exit_code == 0, published_3.output
            assert json.loads(published_3.stdout)["quality"]["comparedWith"] is None
            activated = CliRunner().invoke(main, ["model", "activate", "pointer-3"], env=env)
            assert activated.exit_code == 0, activated.output

            def repaired() -> bool:
                model = client.get("/info").json()["data"]["model"]
                return bool(model["version"] == "pointer-3" and model["lastError"] is None)

            wait_for(repaired, 10, "the replica to follow the repaired pointer")
            assert status_of(client)[1]["data"]["status"] == "UP"


def test_a_replica_refuses_a_hostile_pointer_target_and_keeps_serving(
    published: tuple[StoreUnderTest, str],
) -> None:
    """The poll validates in the sandbox too: a model activated behind the CLI's back (here
    straight through the registry) that gives NaN at batch sizes other than 1 and 256."""
    from tests.model import hostile

    objects, url = published
    for service in start_service(objects.settings(url)):
        with service.client() as client:
            assert client.get("/info").json()["data"]["model"]["version"] == "pointer-1"
            registry = ModelRegistry(objects.store)
            bad = registry.publish(ModelFile.from_bytes(hostile.nan_at_other_sizes()))
            registry.activate(bad, registry.read_pointer())

            def refused() -> str | None:
                error: str | None = client.get("/info").json()["data"]["model"]["lastError"]
                return error

            error = wait_for(refused, 15, "the replica to refuse the pointer's model")
            assert "refused model nan-other-sizes: a batch of 2 returned non-finite" in error
            assert client.get("/info").json()["data"]["model"]["version"] == "pointer-1"
            assert client.post("/test-responses", json=submission()).status_code == 200
            assert status_of(client)[1]["data"]["status"] == "DEGRADED"


def test_the_admin_status_answers_while_s3_is_down(tmp_path: Path) -> None:
    """The pointer cannot even be read: GET /admin/model still answers 200, says why, and
    a rollback is a 4xx/503 in the envelope, never a 500."""
    moto = MotoProcess()
    moto.start()
    objects = s3_store(tmp_path, moto.url)
    url = f"sqlite:///{tmp_path / 'hollang.db'}"
    try:
        for service in start_service(objects.settings(url, admin_token=TOKEN)):
            with service.client() as client:
                assert client.get("/admin/model", headers=AUTH).status_code == 200
                moto.stop()
                status = client.get("/admin/model", headers=AUTH)
                assert status.status_code == 200, status.text
                assert status.json()["data"]["pointer"] is None
                assert "cannot read the active model pointer" in status.json()["data"]["lastError"]
                assert status.json()["data"]["active"]["modelVersion"] == BUNDLED_VERSION
                rollback = client.post("/admin/model/rollback", headers=AUTH)
                assert rollback.status_code == 503, rollback.text
                assert rollback.json()["code"] == "SERVICE_UNAVAILABLE"
    finally:
        moto.stop()
