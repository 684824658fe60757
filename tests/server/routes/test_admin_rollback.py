"""POST /admin/model/rollback walks the history as `hollang model rollback` does: again goes
one further back, `?to=VERSION` names a version of the history, and what cannot be rolled
back to is a 4xx in the envelope."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.helpers import RunningService
from tests.s3support import model_bytes

AUTH = {"Authorization": "Bearer test-admin-token"}


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


def upload(client: httpx.Client, version: str, seed: int) -> None:
    response = client.post(
        "/admin/model",
        content=model_bytes(version, seed),
        headers={**AUTH, "Content-Type": "application/octet-stream"},
    )
    assert response.status_code == 200, response.text


def rollback(client: httpx.Client, to: str | None = None) -> httpx.Response:
    params = {"to": to} if to is not None else {}
    return client.post("/admin/model/rollback", params=params, headers=AUTH)


def history(data: dict[str, Any]) -> list[str]:
    return [entry["version"] for entry in data["pointer"]["history"]]


def test_rollback_walks_back_and_to_names_the_target(client: httpx.Client) -> None:
    run = uuid.uuid4().hex[:6]
    versions = [f"walk-{run}-{n}" for n in range(1, 5)]
    for seed, version in enumerate(versions, start=50):
        upload(client, version, seed)

    first = rollback(client)
    assert first.status_code == 200, first.text
    assert first.json()["data"]["active"]["modelVersion"] == versions[2]
    second = rollback(client)
    assert second.json()["message"] == f"Rolled back to model {versions[1]}."
    assert history(second.json()["data"])[0] == versions[0]

    upload(client, versions[3], 53)  # published already: activated again, pushed as usual
    moved = rollback(client, versions[0])
    assert moved.status_code == 200, moved.text
    data = moved.json()["data"]
    assert data["active"]["modelVersion"] == versions[0]
    assert versions[1] not in history(data) and versions[3] not in history(data)

    gone = rollback(client, versions[3])
    assert gone.status_code == 409, gone.text
    assert "is not in the activation history" in gone.json()["message"]
    itself = rollback(client, versions[0])
    assert itself.status_code == 409 and "already the active one" in itself.json()["message"]
    empty = rollback(client, "")
    assert empty.status_code == 400 and empty.json()["code"] == "BAD_REQUEST"
