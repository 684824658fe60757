"""The write batcher (`db/write_batcher.py`) against real databases, SQLite and MariaDB.

Members of one batch are made certain by submitting them in the same event-loop tick: the
flush loop starts only after all of them are queued, so they are taken together. Every
way of getting ids runs on both backends where it applies: the default (a multi-statement
script on MariaDB, RETURNING on SQLite), RETURNING, and the MySQL 8 way (one insert per
user, parents read back by their child's column).
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select, text
from sqlalchemy.exc import DBAPIError

from batching.adaptive import BatchSettings
from cli.context import prepare_database
from db.catalog import read_catalog
from db.idempotency import KeyReused, StoredResponse
from db.models import IdempotencyKey, Recommendation, RecommendationHobby, TestResponse, User
from db.recommendations import Recorded, Submission, accepts_scripts, count_test_responses
from db.session import Database
from db.write_batcher import PendingWrite, SubmissionWriter
from harness.load import Tally, audit, run_load
from harness.scratch import free_port, stop_process, wait_until_ready
from server.settings import Settings
from tests.helpers import RunningService, stored_counts, submission

POISON = "배치실패"


@pytest.fixture
def db(database_url: str, tmp_path: Path) -> Iterator[Database]:
    prepare_database(Settings(database_url=database_url, data_dir=tmp_path))
    database = Database(database_url)
    try:
        yield database
    finally:
        database.dispose()


def make_submission(db: Database, name: str, hobbies: int = 0) -> Submission:
    """A valid submission of the bundled catalogue; `hobbies` picks which three."""
    with db.read() as session:
        catalog = read_catalog(session)
    test = catalog.active_test
    hobby_ids = sorted(h.id for h in catalog.hobby_by_key.values())
    hobby_type = next(iter(catalog.type_by_mbti.values()))
    return Submission(
        user_name=name,
        test_id=test.id,
        answer_ids=[test.answer_id(q, 1 + q % 2) for q in range(1, 13)],
        hobby_type_id=hobby_type.id,
        scores=(1, 2, 3, 0),
        hobby_ids=hobby_ids[hobbies : hobbies + 3],
        model_version="test",
    )


def poison_trigger(db: Database) -> None:
    """A real trigger that aborts inserting the hobbies of user POISON's recommendation."""
    with db.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER batch_fail BEFORE INSERT ON recommendation_hobby "
                "WHEN (SELECT u.name FROM recommendation r JOIN user u ON u.id = r.user_id "
                f"WHERE r.id = NEW.recommendation_id) = '{POISON}' "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER batch_fail BEFORE INSERT ON recommendation_hobby FOR EACH ROW "
                "BEGIN IF (SELECT u.name FROM recommendation r JOIN `user` u ON u.id = r.user_id "
                f"WHERE r.id = NEW.recommendation_id) = '{POISON}' THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected fault'; END IF; END"
            )


def stored_names(db: Database) -> list[str]:
    """Names of users whose submission is complete (a recommendation with 3 hobbies)."""
    with db.read() as session:
        return sorted(
            session.scalars(
                select(User.name)
                .join(Recommendation, Recommendation.user_id == User.id)
                .join(RecommendationHobby)
                .group_by(User.id, User.name)
                .having(func.count(RecommendationHobby.id) == 3)
            )
        )


def totals(db: Database) -> tuple[int, int, int]:
    """(counter, COUNT(*) of test responses, users): all three must always agree."""
    with db.read() as session:
        return (
            count_test_responses(session),
            int(session.scalar(select(func.count()).select_from(TestResponse)) or 0),
            int(session.scalar(select(func.count()).select_from(User)) or 0),
        )


async def one_batch(
    writer: SubmissionWriter, items: list[PendingWrite]
) -> list[Recorded | StoredResponse | BaseException]:
    """Submit every item in one tick, so they form one batch; results in order."""
    return await asyncio.gather(*(writer.submit(item) for item in items), return_exceptions=True)


def settings(max_batch: int = 64) -> BatchSettings:
    return BatchSettings(max_batch_size=max_batch, max_queue_delay=0.002)


WAYS = {
    "default": {},
    "returning": {"script": False},
    "mysql8-ids": {"script": False, "returning": False},
}


@pytest.mark.parametrize("way", list(WAYS))
def test_one_bad_member_fails_alone_and_the_rest_of_its_batch_commits(
    db: Database, way: str
) -> None:
    poison_trigger(db)
    names = ["하나", "둘", POISON, "넷", "다섯", "여섯"]
    items = [PendingWrite(make_submission(db, n, hobbies=i % 4)) for i, n in enumerate(names)]

    async def run() -> tuple[list[Recorded | StoredResponse | BaseException], SubmissionWriter]:
        writer = SubmissionWriter(db, settings(), **WAYS[way])
        try:
            return await one_batch(writer, items), writer
        finally:
            await writer.close()

    results, writer = asyncio.run(run())
    bad = results[names.index(POISON)]
    assert isinstance(bad, DBAPIError) and "injected fault" in str(bad), bad
    good = [r for r in results if not isinstance(r, BaseException)]
    assert len(good) == 5 and all(isinstance(r, Recorded) for r in good)
    assert writer.stats.failed_batches == 1  # the batch of six failed, then each went alone
    assert writer.stats.batch_sizes == {1: 5}
    # Every caller got its own ids, and they are the stored rows of its own submission.
    assert len({r.recommendation_id for r in good if isinstance(r, Recorded)}) == 5
    with db.read() as session:
        for name, result in zip(names, results, strict=True):
            if isinstance(result, Recorded):
                row = session.execute(
                    select(User.name, Recommendation.test_response_id)
                    .join(Recommendation, Recommendation.user_id == User.id)
                    .where(Recommendation.id == result.recommendation_id)
                ).one()
                assert row == (name, result.test_response_id)
                assert session.get(User, result.user_id) is not None
    assert stored_names(db) == sorted(n for n in names if n != POISON)
    assert totals(db) == (5, 5, 5)  # the bad member wrote nothing, not even its user


@pytest.mark.parametrize("way", list(WAYS))
def test_a_batch_is_one_transaction_with_every_callers_own_ids(db: Database, way: str) -> None:
    names = [f"사람{i}" for i in range(20)]
    items = [PendingWrite(make_submission(db, n, hobbies=i % 5)) for i, n in enumerate(names)]

    async def run() -> tuple[list[Recorded | StoredResponse | BaseException], SubmissionWriter]:
        writer = SubmissionWriter(db, settings(max_batch=8), **WAYS[way])
        try:
            return await one_batch(writer, items), writer
        finally:
            await writer.close()

    results, writer = asyncio.run(run())
    assert writer.stats.batch_sizes == {8: 2, 4: 1}  # bounded by the batch size
    with db.read() as session:
        for name, result in zip(names, results, strict=True):
            assert isinstance(result, Recorded), result
            stored = session.execute(
                select(User.name)
                .join(TestResponse)
                .where(TestResponse.id == result.test_response_id)
            ).scalar_one()
            assert stored == name
    assert totals(db) == (20, 20, 20)
    with db.read() as session:  # one +k per hobby, exact
        query = select(RecommendationHobby.hobby_id, func.count()).group_by(
            RecommendationHobby.hobby_id
        )
        named = {hobby_id: n for hobby_id, n in session.execute(query)}
        rows = session.execute(text("SELECT id, recommend_count FROM hobby"))
        counts = {hobby_id: n for hobby_id, n in rows}
    assert {h: c for h, c in counts.items() if c} == named


def test_duplicate_keys_in_one_batch_give_one_submission_and_replays(db: Database) -> None:
    def keyed(name: str, key: str, sha: str) -> PendingWrite:
        return PendingWrite(
            make_submission(db, name), key, sha, lambda r: f'{{"rid":{r.recommendation_id}}}'
        )

    first = [
        keyed("가", "k1", "same"),
        keyed("가", "k1", "same"),  # a retry of the first, in the same batch
        keyed("다", "k1", "other"),  # the key reused with another body
        PendingWrite(make_submission(db, "라")),
        keyed("마", "k2", "two"),
    ]
    # The second batch: k2 was committed by the first (this writer did not look it up).
    second = [keyed("마", "k2", "two"), PendingWrite(make_submission(db, "사"))]

    async def run() -> tuple[list[object], list[object], SubmissionWriter]:
        writer = SubmissionWriter(db, settings())
        try:
            return await one_batch(writer, first), await one_batch(writer, second), writer
        finally:
            await writer.close()

    one, two, writer = asyncio.run(run())
    original, replay, reused, plain, other = one
    assert isinstance(original, StoredResponse) and not original.replayed
    assert replay == StoredResponse(original.status, original.body, replayed=True)
    assert isinstance(reused, KeyReused)
    assert isinstance(plain, Recorded)
    assert isinstance(other, StoredResponse) and not other.replayed
    assert two[0] == StoredResponse(other.status, other.body, replayed=True)
    assert isinstance(two[1], Recorded)
    assert writer.stats.batch_sizes == {3: 1, 1: 1}  # k1 written once; batch two retried alone
    assert writer.stats.failed_batches == 1
    assert stored_names(db) == sorted(["가", "라", "마", "사"])
    assert totals(db) == (4, 4, 4)
    with db.read() as session:
        keys = {
            k: body
            for k, body in session.execute(select(IdempotencyKey.key, IdempotencyKey.response_body))
        }
    assert keys == {"k1": original.body, "k2": other.body}


def test_close_writes_everything_queued(db: Database) -> None:
    """Shutdown drains: what was submitted before close() is committed and answered."""

    async def run() -> list[object]:
        writer = SubmissionWriter(db, settings(max_batch=4))
        tasks = [
            asyncio.ensure_future(writer.submit(PendingWrite(make_submission(db, f"끝{i}"))))
            for i in range(10)
        ]
        await asyncio.sleep(0)
        await writer.close()
        return [task.result() for task in tasks]

    results = asyncio.run(run())
    assert all(isinstance(r, Recorded) for r in results)
    assert totals(db) == (10, 10, 10)


def test_only_the_writers_connections_accept_scripts(db: Database) -> None:
    """MySQL's multi-statement flag is on the batcher's own pool, not on the request pool."""
    with db.write_connection() as connection:
        assert accepts_scripts(connection) == (db.backend == "mysql")
    with db.engine.connect() as connection:
        assert not accepts_scripts(connection)


# ---- through the HTTP API ----


def write_batch_metrics(client: httpx.Client) -> tuple[float, float]:
    """(batches committed, batches of exactly one) from /metrics."""
    metrics = client.get("/metrics").text
    count = float(re.search(r"^hollang_write_batch_size_count (\S+)$", metrics, re.M)[1])  # type: ignore[index]
    ones = float(
        re.search(r'^hollang_write_batch_size_bucket\{le="1\.0"\} (\S+)$', metrics, re.M)[1]  # type: ignore[index]
    )
    return count, ones


def test_32_clients_share_transactions_and_the_count_stays_exact(service: RunningService) -> None:
    before = stored_counts(service)
    with service.client() as client:
        batches_before, ones_before = write_batch_metrics(client)

    async def clients() -> list[httpx.Response]:
        async with service.async_client() as client:

            async def one_client(i: int) -> list[httpx.Response]:
                answers = []
                for j in range(4):
                    headers = {"Idempotency-Key": f"c32-{i}-{j}"} if j % 2 else {}
                    answers.append(
                        await client.post(
                            "/test-responses", json=submission(f"동시{i}"), headers=headers
                        )
                    )
                return answers

            per_client = await asyncio.gather(*(one_client(i) for i in range(32)))
            return [response for answers in per_client for response in answers]

    responses = asyncio.run(clients())
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses][:3]
    assert len({r.json()["data"]["recommendation"]["id"] for r in responses}) == 128
    after = stored_counts(service)
    assert after["test_response"] - before["test_response"] == 128
    assert after["recommend_count_sum"] - before["recommend_count_sum"] == 3 * 128
    with service.client() as client:
        count = client.get("/test-responses/count").json()["data"]["testResponse"]["count"]
        batches, ones = write_batch_metrics(client)
    assert count == after["test_response"]  # the counter is exact
    assert batches - batches_before < 128  # fewer transactions than submissions
    assert (batches - batches_before) - (ones - ones_before) > 0  # batches of more than one


@pytest.fixture
def poisoned(service: RunningService) -> Iterator[None]:
    poison_trigger(service.db)
    try:
        yield
    finally:
        with service.db.engine.begin() as connection:
            connection.execute(text("DROP TRIGGER IF EXISTS batch_fail"))


def test_a_bad_submission_among_concurrent_ones_gets_503_and_writes_nothing(
    service: RunningService, poisoned: None
) -> None:
    before = stored_counts(service)
    names = [POISON if i == 3 else f"옆{i}" for i in range(12)]

    async def post_all() -> list[httpx.Response]:
        async with service.async_client() as client:
            return await asyncio.gather(
                *(client.post("/test-responses", json=submission(n)) for n in names)
            )

    responses = asyncio.run(post_all())
    bad = responses[3]
    assert bad.status_code == 503, bad.text
    assert bad.json()["code"] == "SERVICE_UNAVAILABLE"
    assert [r.status_code for i, r in enumerate(responses) if i != 3] == [200] * 11
    after = stored_counts(service)
    assert after["test_response"] - before["test_response"] == 11
    assert after["user"] - before["user"] == 11
    with service.client() as client:
        count = client.get("/test-responses/count").json()["data"]["testResponse"]["count"]
    assert count == after["test_response"]


# ---- a crash of the whole service under load ----


def serve(port: int, env: dict[str, str], log: Path) -> subprocess.Popen[bytes]:
    """`hollang serve --workers 2` in a process group of its own (so SIGKILL takes all)."""
    hollang = str(Path(sys.executable).with_name("hollang"))
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [hollang, "serve", "--host", "127.0.0.1", "--port", str(port), "--workers", "2"],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    wait_until_ready(
        process, f"http://127.0.0.1:{port}/health/ready", log=log, in_a_row=4, interval=0.05
    )
    return process


def test_kill_9_under_load_loses_no_acknowledged_submission(
    database_url: str, tmp_path: Path
) -> None:
    """SIGKILL to every process of a real `hollang serve` while 32 clients submit, then a new
    one on the same port. Clients retry unanswered submissions with their keys, as a browser
    would, so the audit is exact: every acknowledged submission is stored, once, whole,
    counted; nothing was stored that nobody was told about in the end."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "serve.log"
    env = {
        **os.environ,
        "HOLLANG_DATABASE_URL": database_url,
        "HOLLANG_DATA_DIR": str(tmp_path),
        "PROMETHEUS_MULTIPROC_DIR": str(tmp_path / "metrics"),
    }
    first = serve(port, env, log)
    result: dict[str, tuple[Tally, float]] = {}
    load = threading.Thread(
        target=lambda: result.setdefault(
            "load", asyncio.run(run_load(url, 32, 5.0, retry_grace=40.0))
        )
    )
    load.start()
    try:
        time.sleep(2.0)  # batches are flowing
        os.killpg(first.pid, signal.SIGKILL)
        first.wait(30)
        second = serve(port, env, log)
        try:
            load.join(120)
            assert not load.is_alive()
            metrics = httpx.get(f"{url}/metrics", timeout=10).text
        finally:
            stop_process(second, timeout=60)
    finally:
        if first.poll() is None:  # pragma: no cover - only if the kill itself failed
            os.killpg(first.pid, signal.SIGKILL)
    tally, _ = result["load"]
    assert tally.errors or any(s.endswith(" 503") for s in tally.statuses), "no crash was seen"
    assert tally.retries > 0 and tally.unfinished == 0
    assert len(tally.acked) > 30
    checks = audit(database_url, tally)
    for name, (got, want) in checks.items():
        assert got == want, (name, got, want)
    # The second service wrote batches of more than one under the 32 clients.
    count = float(re.search(r"^hollang_write_batch_size_count (\S+)$", metrics, re.M)[1])  # type: ignore[index]
    ones = float(
        re.search(r'^hollang_write_batch_size_bucket\{le="1\.0"\} (\S+)$', metrics, re.M)[1]  # type: ignore[index]
    )
    assert count > ones, (count, ones)
