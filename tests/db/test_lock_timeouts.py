"""A database that is up but locked past the lock timeout (another client's long write
transaction): submissions get a clear 503 in bounded time, not a 500 or a hang, and leave
nothing half-written; retried with their keys once the lock is gone, each is stored once.

This is the SQLite analogue of the MariaDB outage test (an embedded file cannot be "down"),
and on MariaDB it covers the lock-wait timeout (error 1205), after which InnoDB rolls back
only the statement: the service must roll back the rest of the transaction itself.
"""

from __future__ import annotations

import asyncio
import secrets
import threading
import time

from sqlalchemy import select

from db.models import Hobby
from tests.helpers import RunningService, stored_counts, submission

HANG = 30.0  # an answer later than this is a hang


def test_a_lock_held_past_the_timeout_gives_503_and_no_partial_rows(
    service: RunningService,
) -> None:
    keys = [secrets.token_hex(8) for _ in range(4)]
    before = stored_counts(service)
    answers: list[tuple[int, float, str | None]] = []
    bodies: list[object] = []

    async def submit_all() -> None:
        async with service.async_client() as client:  # its 30 s timeout = HANG

            async def one(key: str) -> None:
                started = time.monotonic()
                response = await client.post(
                    "/test-responses", json=submission("잠김"), headers={"Idempotency-Key": key}
                )
                answers.append(
                    (
                        response.status_code,
                        time.monotonic() - started,
                        response.headers.get("Retry-After"),
                    )
                )
                bodies.append(response.json())

            await asyncio.gather(*(one(key) for key in keys))

    with service.db.write() as blocker:
        # A write transaction holding what every submission needs (MySQL: the hobby rows
        # it counts; SQLite: the one write lock).
        blocker.execute(select(Hobby.id).with_for_update()).all()
        load = threading.Thread(target=asyncio.run, args=(submit_all(),))
        load.start()
        load.join(HANG)  # the lock is held until every submission has its answer
        assert not load.is_alive()

    assert [status for status, _, _ in answers] == [503] * len(keys), answers
    assert all(retry == "2" for _, _, retry in answers)
    envelope = {
        "code": "SERVICE_UNAVAILABLE",
        "message": "The database is busy; retry shortly.",
    }
    assert bodies == [envelope] * len(keys)
    assert max(seconds for _, seconds, _ in answers) < HANG
    assert stored_counts(service) == before  # nothing half-written

    with service.client() as client:
        retried = [
            client.post("/test-responses", json=submission("잠김"), headers={"Idempotency-Key": k})
            for k in keys
        ]
        replayed = client.post(
            "/test-responses", json=submission("잠김"), headers={"Idempotency-Key": keys[0]}
        )
    assert [r.status_code for r in retried] == [200] * len(keys)
    assert [r.headers["Idempotent-Replayed"] for r in retried] == ["false"] * len(keys)
    assert replayed.content == retried[0].content
    after = stored_counts(service)
    assert after["test_response"] - before["test_response"] == len(keys)
    assert after["recommend_count_sum"] - before["recommend_count_sum"] == 3 * len(keys)
