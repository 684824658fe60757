"""`Idempotency-Key` on POST /test-responses: retries replay the first response and write
nothing, a reused key with another body is refused, and racing clients (on two replicas of
one database) get one submission between them. Every case runs on SQLite and MariaDB."""

from __future__ import annotations

import asyncio
import secrets
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.orm import Session

from db.idempotency import StoredResponse, run_once
from db.models import IdempotencyKey, TestResponse, User
from tests.helpers import (
    RunningService,
    answers_for,
    make_settings,
    start_service,
    stored_counts,
    submission,
)


def new_key() -> str:
    return secrets.token_hex(16)


def key_rows(service: RunningService, key: str) -> int:
    with service.db.read() as session:
        query = select(func.count()).select_from(IdempotencyKey).where(IdempotencyKey.key == key)
        return int(session.scalar(query) or 0)


def test_retry_returns_the_first_response_and_writes_nothing(service: RunningService) -> None:
    key = new_key()
    with service.client() as client:
        first = client.post(
            "/test-responses", json=submission("첫째"), headers={"Idempotency-Key": key}
        )
        after_first = stored_counts(service)
        retries = [
            client.post(
                "/test-responses", json=submission("첫째"), headers={"Idempotency-Key": key}
            )
            for _ in range(3)
        ]
    assert first.status_code == 200, first.text
    assert first.headers["Idempotent-Replayed"] == "false"
    assert first.json()["data"]["user"]["name"] == "첫째"
    for retry in retries:
        assert retry.status_code == first.status_code
        assert retry.content == first.content  # the same ids: nothing new was created
        assert retry.headers["Idempotent-Replayed"] == "true"
    assert stored_counts(service) == after_first
    assert key_rows(service, key) == 1


def test_the_same_request_written_differently_is_still_a_retry(service: RunningService) -> None:
    """The fingerprint is of what is asked (name, answers), not of the JSON bytes: another
    detail order, the first-generation key, a quoted key and padded name are the same."""
    key = new_key()
    body = submission("같음", (1, 2, 3, 0))
    variant = {
        "user": {"name": "  같음 "},
        "testResponseDetail": list(reversed(answers_for((1, 2, 3, 0)))),
    }
    with service.client() as client:
        first = client.post("/test-responses", json=body, headers={"Idempotency-Key": key})
        again = client.post(
            "/test-responses", json=variant, headers={"Idempotency-Key": f'"{key}"'}
        )
    assert first.status_code == 200, first.text
    assert again.status_code == 200, again.text
    assert again.content == first.content
    assert again.headers["Idempotent-Replayed"] == "true"


def test_a_key_reused_with_another_body_is_422_and_writes_nothing(
    service: RunningService,
) -> None:
    key = new_key()
    with service.client() as client:
        first = client.post(
            "/test-responses", json=submission("원래"), headers={"Idempotency-Key": key}
        )
        before = stored_counts(service)
        other_name = client.post(
            "/test-responses", json=submission("다른"), headers={"Idempotency-Key": key}
        )
        other_answers = client.post(
            "/test-responses",
            json=submission("원래", (0, 0, 0, 0)),
            headers={"Idempotency-Key": key},
        )
    assert first.status_code == 200
    for refused in (other_name, other_answers):
        assert refused.status_code == 422, refused.text
        body = refused.json()
        assert body["code"] == "UNPROCESSABLE_ENTITY"
        assert body["errors"][0]["field"] == "Idempotency-Key"
        assert body["errors"][0]["type"] == "idempotency_key_reused"
    assert stored_counts(service) == before


@pytest.mark.parametrize(
    "bad_key",
    ["", "x" * 256, "has space", "tab\there", 'in"side', "back\\slash", "é-latin1", '"x'],
)
def test_malformed_keys_are_400(service: RunningService, bad_key: str) -> None:
    before = stored_counts(service)
    with service.client() as client:
        response = client.post(
            "/test-responses",
            json=submission(),
            headers=[(b"Idempotency-Key", bad_key.encode("latin-1"))],
        )
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "BAD_REQUEST"
    assert body["errors"][0]["field"] == "Idempotency-Key"
    assert stored_counts(service) == before


def test_longest_and_oddest_valid_keys_work(service: RunningService) -> None:
    with service.client() as client:
        for key in ("k" * 255, "!#$%&'()*+,-./:;<=>?@[]^_`{|}~", f'"{"q" * 255}"'):
            first = client.post(
                "/test-responses", json=submission(), headers={"Idempotency-Key": key}
            )
            again = client.post(
                "/test-responses", json=submission(), headers={"Idempotency-Key": key}
            )
            assert first.status_code == 200, (key, first.text)
            assert again.content == first.content
    # Keys are compared exactly: another case is another key (binary collation on MySQL).
    with service.client() as client:
        lower = client.post(
            "/test-responses", json=submission(), headers={"Idempotency-Key": "case-key"}
        )
        upper = client.post(
            "/test-responses", json=submission(), headers={"Idempotency-Key": "CASE-KEY"}
        )
    assert lower.status_code == upper.status_code == 200
    assert lower.json()["data"]["recommendation"] != upper.json()["data"]["recommendation"]


POISON = "멱등실패"


@pytest.fixture
def failing_submission(service: RunningService) -> Iterator[None]:
    """A real trigger that aborts the last insert of a submission by user POISON."""
    with service.db.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER idem_fail BEFORE INSERT ON recommendation_hobby "
                "WHEN (SELECT u.name FROM recommendation r JOIN user u ON u.id = r.user_id "
                f"WHERE r.id = NEW.recommendation_id) = '{POISON}' "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER idem_fail BEFORE INSERT ON recommendation_hobby FOR EACH ROW "
                "BEGIN IF (SELECT u.name FROM recommendation r JOIN `user` u ON u.id = r.user_id "
                f"WHERE r.id = NEW.recommendation_id) = '{POISON}' THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected fault'; END IF; END"
            )
    try:
        yield
    finally:
        with service.db.engine.begin() as connection:
            connection.execute(text("DROP TRIGGER IF EXISTS idem_fail"))


def test_a_failed_write_leaves_no_key_so_the_retry_does_the_work(
    service: RunningService, failing_submission: None
) -> None:
    key = new_key()
    before = stored_counts(service)
    with service.client() as client:
        failed = client.post(
            "/test-responses", json=submission(POISON), headers={"Idempotency-Key": key}
        )
        assert failed.status_code >= 500
        assert key_rows(service, key) == 0
        assert stored_counts(service) == before
        with service.db.engine.begin() as connection:
            connection.execute(text("DROP TRIGGER idem_fail"))
        retried = client.post(
            "/test-responses", json=submission(POISON), headers={"Idempotency-Key": key}
        )
    assert retried.status_code == 200, retried.text
    assert retried.headers["Idempotent-Replayed"] == "false"
    after = stored_counts(service)
    assert after["test_response"] - before["test_response"] == 1
    assert after["recommend_count_sum"] - before["recommend_count_sum"] == 3
    assert key_rows(service, key) == 1


# ---- racing clients ----


@pytest.fixture
def second_replica(service: RunningService, tmp_path: Path) -> Iterator[RunningService]:
    """Another service process-equivalent (its own app, engine and pool) on the same database."""
    settings = make_settings(tmp_path, service.settings.resolved_database_url)
    yield from start_service(settings)


def test_racing_clients_with_one_key_on_two_replicas_write_once(
    service: RunningService, second_replica: RunningService
) -> None:
    key = new_key()
    before = stored_counts(service)

    async def race() -> list[httpx.Response]:
        async with service.async_client() as one, second_replica.async_client() as two:
            posts = [
                (one if i % 2 else two).post(
                    "/test-responses", json=submission("경쟁"), headers={"Idempotency-Key": key}
                )
                for i in range(24)
            ]
            return await asyncio.gather(*posts)

    responses = asyncio.run(race())
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    assert len({r.content for r in responses}) == 1  # everybody got the winner's ids
    assert [r.headers["Idempotent-Replayed"] for r in responses].count("false") == 1
    after = stored_counts(service)
    assert after["test_response"] - before["test_response"] == 1
    assert after["recommend_count_sum"] - before["recommend_count_sum"] == 3
    assert key_rows(service, key) == 1


def test_racing_clients_with_one_key_and_different_bodies(service: RunningService) -> None:
    key = new_key()
    before = stored_counts(service)
    bodies = [submission("갑"), submission("을")]

    async def race() -> list[httpx.Response]:
        async with service.async_client() as client:
            posts = [
                client.post("/test-responses", json=bodies[i % 2], headers={"Idempotency-Key": key})
                for i in range(16)
            ]
            return await asyncio.gather(*posts)

    responses = asyncio.run(race())
    won = [r for r in responses if r.status_code == 200]
    lost = [r for r in responses if r.status_code != 200]
    assert {r.status_code for r in lost} <= {422}
    assert len({r.content for r in won}) == 1
    winner = won[0].json()["data"]["user"]["name"]
    assert len(won) == 8 and len(lost) == 8  # the winner's body is replayed, the other refused
    assert all(r.json()["errors"][0]["type"] == "idempotency_key_reused" for r in lost)
    after = stored_counts(service)
    assert after["test_response"] - before["test_response"] == 1
    with service.db.read() as session:
        names = session.scalars(
            select(User.name).join(TestResponse, TestResponse.user_id == User.id)
        ).all()
    assert names.count(winner) == 1


def test_the_loser_of_a_held_race_waits_and_replays_the_winner(service: RunningService) -> None:
    """Deterministic race at the database layer: the winner holds its transaction open
    until the loser has started; the loser must neither write nor fail, but replay."""
    db, key = service.db, new_key()
    holding, release = threading.Event(), threading.Event()
    results: dict[str, StoredResponse] = {}

    def work(name: str) -> Callable[[Session], tuple[int, str]]:
        def run(session: Session) -> tuple[int, str]:
            session.execute(text("SELECT 1"))
            if name == "winner":
                holding.set()
                release.wait(10)
            return 200, f'{{"by":"{name}"}}'

        return run

    def attempt(name: str) -> None:
        results[name] = run_once(db, key, "same-request", work(name))

    winner = threading.Thread(target=attempt, args=("winner",))
    winner.start()
    assert holding.wait(10)
    loser = threading.Thread(target=attempt, args=("loser",))
    loser.start()
    loser.join(0.3)  # the loser is now blocked on the winner's key (or about to be)
    release.set()
    winner.join(15)
    loser.join(15)
    assert results["winner"] == StoredResponse(200, '{"by":"winner"}', replayed=False)
    assert results["loser"] == StoredResponse(200, '{"by":"winner"}', replayed=True)
    assert key_rows(service, key) == 1


def test_a_failed_transaction_leaves_no_key(service: RunningService) -> None:
    key = new_key()

    def broken(session: Session) -> tuple[int, str]:
        session.execute(text("SELECT 1"))
        raise RuntimeError("the work failed after the key was inserted")

    with pytest.raises(RuntimeError):
        run_once(service.db, key, "request", broken)
    assert key_rows(service, key) == 0
    stored = run_once(service.db, key, "request", lambda session: (200, "{}"))
    assert stored == StoredResponse(200, "{}", replayed=False)
