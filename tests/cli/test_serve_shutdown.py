"""SIGTERM to a real `hollang serve` (one worker and two) in the middle of traffic: new
connections are refused at once, every request already accepted finishes with its answer
(including inferences waiting in the batch queue), and the process exits 0.

Requests are made to be in flight at the signal by holding the database's write lock (a
real transaction of another client): the submissions wait for it inside the service, and
it is released only after the signal and the refusal check."""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from db.models import Hobby, IdempotencyKey
from db.session import Database
from harness.load import hollang_serve
from tests.helpers import answers_for, free_port, submission

SUBMISSIONS = 16
PREDICTORS = 8


@dataclass
class Outcome:
    submitted: dict[str, int | str] = field(default_factory=dict)  # key -> status or error
    predictions: list[int | str] = field(default_factory=list)
    signalled: threading.Event = field(default_factory=threading.Event)


async def traffic(url: str, outcome: Outcome) -> None:
    """Keyed submissions (each answered or not) and a stream of predictions until refused."""
    limits = httpx.Limits(max_connections=64)
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as client:

        async def submit(key: str) -> None:
            try:
                response = await client.post(
                    "/test-responses", json=submission("종료"), headers={"Idempotency-Key": key}
                )
                outcome.submitted[key] = response.status_code
            except httpx.HTTPError as exc:
                outcome.submitted[key] = type(exc).__name__

        async def predict_until_refused() -> None:
            body = {"testResponseDetails": answers_for((3, 0, 2, 1))}
            while True:
                try:
                    response = await client.post("/predict", json=body)
                except httpx.HTTPError as exc:
                    outcome.predictions.append(type(exc).__name__)
                    return
                outcome.predictions.append(response.status_code)
                if outcome.signalled.is_set() and response.status_code != 200:
                    return

        keys = [secrets.token_hex(8) for _ in range(SUBMISSIONS)]
        await asyncio.gather(
            *(submit(k) for k in keys), *(predict_until_refused() for _ in range(PREDICTORS))
        )


def refused(url: str) -> bool:
    try:
        httpx.get(f"{url}/health/live", timeout=3)
    except httpx.ConnectError:
        return True
    except httpx.HTTPError:
        return False  # accepted but not answered: a hang, not a refusal
    return False


@pytest.mark.parametrize("workers", [1, 2])
def test_sigterm_drains_accepted_requests_and_exits_zero(
    database_url: str, tmp_path: Path, workers: int
) -> None:
    outcome = Outcome()
    with hollang_serve(database_url, tmp_path, workers, {"HOLLANG_MAX_BATCH_SIZE": "1"}) as service:
        database = Database(database_url)
        try:
            with database.write() as blocker:
                # The write lock every submission needs (MySQL: the hobby rows it counts).
                blocker.execute(select(Hobby.id).with_for_update()).all()
                load = threading.Thread(target=asyncio.run, args=(traffic(service.url, outcome),))
                load.start()
                time.sleep(1.0)  # the submissions reach the service and wait for the lock
                assert not outcome.submitted, "nothing can finish while the lock is held"
                service.process.send_signal(signal.SIGTERM)
                outcome.signalled.set()
                deadline = time.monotonic() + 10
                while not refused(service.url):
                    assert time.monotonic() < deadline, "new connections still accepted"
                    time.sleep(0.05)
                assert service.process.poll() is None  # still draining: requests in flight
            load.join(60)
            assert service.process.wait(60) == 0
            with database.read() as session:
                stored = set(session.scalars(select(IdempotencyKey.key)))
                responses = session.scalar(select(func.count()).select_from(IdempotencyKey))
        finally:
            database.dispose()
    # Every submission was in flight at the signal: every one finished and was stored.
    assert set(outcome.submitted.values()) == {200}, outcome.submitted
    assert stored == set(outcome.submitted) and responses == SUBMISSIONS
    # Predictions answered before and during the drain were all answered properly; the
    # stream ends when the service stops accepting (a refused or closed connection).
    answered = [p for p in outcome.predictions if isinstance(p, int)]
    assert answered and set(answered) == {200}, outcome.predictions


def test_a_service_that_cannot_start_exits_nonzero(tmp_path: Path) -> None:
    """A worker that fails at start-up (here: a schema that was never migrated) stops
    `hollang serve --workers 2` with exit status 3, as it does with one worker
    (tests/db/test_migrations.py)."""
    result = subprocess.run(
        [
            str(Path(sys.executable).with_name("hollang")),
            "serve",
            "--no-migrate",
            "--workers",
            "2",
            "--port",
            str(free_port()),
        ],
        env={
            **os.environ,
            "HOLLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'empty.db'}",
            "HOLLANG_DATA_DIR": str(tmp_path),
        },
        capture_output=True,
        text=True,
        timeout=90,
        check=False,
    )
    assert result.returncode == 3, result.stderr[-2000:]
    assert "hollang db upgrade" in result.stderr
