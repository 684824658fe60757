"""Only the client that took the test may answer its survey (X-Recommendation-Token), on both
databases: the token is unguessable, stored only as a hash, never returned by a GET, the
same on an idempotent replay; HOLLANG_SURVEY_TOKEN=off restores open surveys."""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select, update

from db.models import Recommendation
from server.settings import Settings
from tests.helpers import (
    TOKEN_HEADER,
    RunningService,
    make_settings,
    owner,
    start_service,
    stored_counts,
    submission,
)


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


@pytest.fixture
def open_replica(service: RunningService, tmp_path: Path) -> Iterator[RunningService]:
    """A second server on the same database with HOLLANG_SURVEY_TOKEN=off."""
    settings = make_settings(tmp_path, service.settings.resolved_database_url, survey_token=False)
    yield from start_service(settings)


def take_test(client: httpx.Client, name: str = "주인") -> dict[str, Any]:
    response = client.post("/test-responses", json=submission(name))
    assert response.status_code == 200, response.text
    return response.json()["data"]  # type: ignore[no-any-return]


def survey_of(client: httpx.Client, created: dict[str, Any], satisfaction: int = 5) -> dict:  # type: ignore[type-arg]
    rid = created["recommendation"]["id"]
    shown = client.get(f"/recommendations/{rid}").json()["data"]["recommendation"]
    return {
        "survey": {"hobbies": [{"id": shown["hobbies"][0]["id"], "satisfaction": satisfaction}]}
    }


def post(client: httpx.Client, rid: int, body: dict, headers: dict | None = None) -> httpx.Response:  # type: ignore[type-arg]
    return client.post(f"/recommendations/{rid}/surveys", json=body, headers=headers or {})


def stored_digest(service: RunningService, rid: int) -> str | None:
    with service.db.read() as session:
        return session.scalar(select(Recommendation.token_sha256).where(Recommendation.id == rid))


def test_the_token_is_unguessable_and_stored_only_as_its_hash(
    service: RunningService, client: httpx.Client
) -> None:
    first, second = take_test(client), take_test(client)
    tokens = [first["recommendation"]["token"], second["recommendation"]["token"]]
    assert tokens[0] != tokens[1]
    for token in tokens:
        assert len(base64.urlsafe_b64decode(token + "=" * (-len(token) % 4))) * 8 >= 128
    for created, token in ((first, tokens[0]), (second, tokens[1])):
        digest = stored_digest(service, created["recommendation"]["id"])
        assert digest == hashlib.sha256(token.encode()).hexdigest()
        assert digest != token


def test_no_get_returns_the_token(client: httpx.Client) -> None:
    created = take_test(client)
    rid, token = created["recommendation"]["id"], created["recommendation"]["token"]
    for path in (f"/recommendations/{rid}", f"/recommendations/{rid}/shares"):
        response = client.get(path)
        assert response.status_code == 200
        assert token not in response.text
        assert "token" not in response.text.lower()


def test_a_survey_needs_the_token_of_its_recommendation(
    service: RunningService, client: httpx.Client
) -> None:
    created, other = take_test(client), take_test(client)
    rid = created["recommendation"]["id"]
    body = survey_of(client, created)
    before = stored_counts(service)

    missing = post(client, rid, body)
    assert missing.status_code == 401, missing.text
    assert missing.json()["code"] == "UNAUTHORIZED"
    for wrong in ("not-the-token", other["recommendation"]["token"], ""):
        refused = post(client, rid, body, {TOKEN_HEADER: wrong})
        assert refused.status_code == (401 if wrong == "" else 403), refused.text
    assert stored_counts(service) == before  # nothing was written by a refused survey
    assert (
        client.get(f"/recommendations/{rid}").json()["data"]["recommendation"]["didSurvey"] is False
    )

    assert post(client, rid, body, owner(created)).status_code == 200
    assert stored_counts(service)["survey"] == before["survey"] + 1
    # the owner may change its answer; nobody else may
    assert post(client, rid, survey_of(client, created, 1), owner(other)).status_code == 403
    assert post(client, rid, survey_of(client, created, 2), owner(created)).status_code == 200


def test_the_share_view_stays_public(client: httpx.Client) -> None:
    created = take_test(client)
    rid = created["recommendation"]["id"]
    with httpx.Client(base_url=str(client.base_url)) as stranger:
        assert stranger.get(f"/recommendations/{rid}/shares").status_code == 200


def test_an_idempotent_replay_returns_the_same_working_token(
    service: RunningService, client: httpx.Client
) -> None:
    headers = {"Idempotency-Key": f"owner-{service.db.backend}-replay"}
    first = client.post("/test-responses", json=submission("재시도"), headers=headers)
    again = client.post("/test-responses", json=submission("재시도"), headers=headers)
    assert again.headers["idempotent-replayed"] == "true"
    created = first.json()["data"]
    assert again.json()["data"]["recommendation"] == created["recommendation"]
    rid = created["recommendation"]["id"]
    replayed = owner(again.json()["data"])
    assert post(client, rid, survey_of(client, created), replayed).status_code == 200


def test_rows_from_before_tokens_are_closed_unless_surveys_are_open(
    service: RunningService, client: httpx.Client, open_replica: RunningService
) -> None:
    created = take_test(client, "옛날")
    rid = created["recommendation"]["id"]
    with service.db.write() as session:  # what a row stored before migration 0003 looks like
        session.execute(
            update(Recommendation).where(Recommendation.id == rid).values(token_sha256=None)
        )
    body = survey_of(client, created)
    assert post(client, rid, body).status_code == 401
    assert post(client, rid, body, owner(created)).status_code == 403

    with open_replica.client() as legacy:
        assert post(legacy, rid, body).status_code == 200
        fresh = take_test(legacy, "열림")  # still gets a token, for when surveys close again
        assert (
            post(legacy, fresh["recommendation"]["id"], survey_of(legacy, fresh)).status_code == 200
        )
    assert post(client, fresh["recommendation"]["id"], survey_of(client, fresh)).status_code == 401


def test_the_setting_reads_off_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOLLANG_SURVEY_TOKEN", "off")
    assert Settings().survey_token is False
    monkeypatch.setenv("HOLLANG_SURVEY_TOKEN", "on")
    assert Settings().survey_token is True
