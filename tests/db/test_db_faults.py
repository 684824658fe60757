"""MariaDB stops in the middle of a load run on `hollang serve --workers 2`, then comes back.

The database is a private `mariadbd` of this test (never the shared server): it is
killed (a crash: SIGKILL) or shut down (SIGTERM) while clients keep submitting, then
restarted on the same data directory; or frozen (SIGSTOP: a hung host whose connections
stay open) and thawed. While it is down, requests get a clear 503 in the error envelope
with Retry-After, never a 500 or a hang: at once when the port is closed, within the
driver's and pool's timeouts (db/session.py) when the server hangs; and `/health/ready`
says the database is unreachable.
The service recovers by itself (pool pre-ping) once the server is back. Clients retry
their failed submissions with the same Idempotency-Key, so in the end every submission is
stored exactly once and nothing half-written exists, whatever the crash interrupted.
"""

from __future__ import annotations

import asyncio
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from harness.load import Tally, audit, hollang_serve, run_load
from tests.db import private_mariadb
from tests.db.private_mariadb import PrivateMariaDB
from tests.helpers import MYSQL_URL, REQUIRE_MYSQL, submission

pytestmark = pytest.mark.mysql

LOAD_SECONDS = 6.0
RETRY_GRACE = 40.0  # how long clients keep retrying after the load's end
# Longer than any answer may take with a hung database, so reaching it means a request hung:
# a pool checkout (5 s) whose pre-ping waits the read timeout (10 s) on a stuck connection,
# then a reconnect whose handshake waits it again (pymysql reads it with the read timeout).
HANG = 45.0


@pytest.fixture(scope="module")
def mariadb(tmp_path_factory: pytest.TempPathFactory) -> Iterator[PrivateMariaDB]:
    if not (MYSQL_URL or REQUIRE_MYSQL):
        pytest.skip("HOLLANG_TEST_MYSQL_URL is not set")
    if not private_mariadb.available():
        if REQUIRE_MYSQL:
            pytest.fail("mariadbd / mariadb-install-db are needed for the database fault test")
        pytest.skip("mariadbd is not installed")
    server = PrivateMariaDB(tmp_path_factory.mktemp("mariadb"))
    server.start()
    try:
        yield server
    finally:
        server.stop(signal.SIGKILL)


class ReadinessProbe(threading.Thread):
    """Polls /health/ready and keeps every (status, message) it saw, in order."""

    def __init__(self, url: str) -> None:
        super().__init__(daemon=True)
        self.url = url
        self.seen: list[tuple[int, str]] = []
        self.slowest_unready = 0.0  # seconds the slowest 503 took
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            started = time.monotonic()
            try:
                response = httpx.get(f"{self.url}/health/ready", timeout=HANG)
                self.seen.append((response.status_code, response.json().get("message", "")))
                if response.status_code == 503:
                    self.slowest_unready = max(self.slowest_unready, time.monotonic() - started)
            except httpx.HTTPError as exc:
                self.seen.append((0, type(exc).__name__))
            time.sleep(0.1)

    def wait_for(self, status: int, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        start = len(self.seen)
        while time.monotonic() < deadline:
            if any(seen == status for seen, _ in self.seen[start:]):
                return True
            time.sleep(0.05)
        return False


@pytest.mark.parametrize("how", ["crash", "shutdown", "freeze"])
def test_database_outage_under_load(mariadb: PrivateMariaDB, tmp_path: Path, how: str) -> None:
    database = f"faults_{how}"
    mariadb.execute(f"CREATE DATABASE `{database}` CHARACTER SET utf8mb4")
    url = mariadb.url(database)
    with hollang_serve(url, tmp_path, workers=2) as service:
        probe = ReadinessProbe(service.url)
        probe.start()
        result: dict[str, tuple[Tally, float]] = {}
        load = threading.Thread(
            target=lambda: result.setdefault(
                "load",
                asyncio.run(run_load(service.url, 12, LOAD_SECONDS, retry_grace=RETRY_GRACE)),
            )
        )
        load.start()
        time.sleep(2.0)  # load is flowing

        if how == "freeze":
            mariadb.freeze()
        else:
            mariadb.stop(signal.SIGKILL if how == "crash" else signal.SIGTERM)
        started = time.monotonic()
        with httpx.Client(base_url=service.url, timeout=2 * HANG) as client:
            refused = client.post("/test-responses", json=submission("장애"))
        answered_in = time.monotonic() - started
        assert probe.wait_for(503, timeout=2 * HANG), probe.seen[-5:]
        if how != "freeze":  # (a freeze lasts long enough: answers take seconds)
            time.sleep(1.0)  # the outage lasts a while under load

        if how == "freeze":
            mariadb.thaw()
        else:
            mariadb.start()
        assert probe.wait_for(200, timeout=2 * HANG), probe.seen[-5:]  # recovered by itself
        load.join(LOAD_SECONDS + RETRY_GRACE + 30)
        probe.stop.set()
        probe.join(20)
        assert not load.is_alive()
        service.process.send_signal(signal.SIGTERM)
        assert service.process.wait(60) == 0

    # A clear 503 in the envelope, answered within the driver's timeouts, not a hang.
    assert refused.status_code == 503, refused.text
    assert refused.json() == {
        "code": "SERVICE_UNAVAILABLE",
        "message": "The database is unavailable; retry shortly.",
    }
    assert refused.headers["Retry-After"] == "2"
    assert answered_in < HANG, answered_in
    down = [message for status, message in probe.seen if status == 503]
    assert down and all("database unreachable" in message for message in down), down
    assert probe.seen[-1][0] == 200

    tally, _ = result["load"]
    print(  # shown with -s: the README quotes these for the freeze
        f"{how}: POST answered 503 in {answered_in:.1f} s, slowest unready "
        f"{probe.slowest_unready:.1f} s, slowest POST under load "
        f"{max(tally.latencies['POST /test-responses']):.1f} s"
    )
    five_xx = {k: v for k, v in tally.statuses.items() if k.rsplit(" ", 1)[1][0] == "5"}
    assert five_xx, "the outage was not seen by the load"
    assert all(k.endswith(" 503") for k in five_xx), five_xx  # never a 500
    # No hang: nothing ran into the client's timeout. (A keep-alive connection the server
    # closed as idle just as a request went out is a client-side race, retried with its key.)
    assert not [kind for kind in tally.errors if "Timeout" in kind], tally.errors
    assert tally.unfinished == 0  # every submission was acknowledged in the end
    assert tally.retries > 0
    checks = audit(url, tally)
    for name, (got, want) in checks.items():
        assert got == want, (name, got, want)
    assert len(tally.acked) > 20
