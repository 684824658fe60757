"""GET /metrics on real servers: counters move by exactly what was asked of the service,
labelled by route template (never the raw path); engine and pool gauges read the live
state; and with `hollang serve --workers 2` every scrape sums both workers.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from db.session import Database
from tests.helpers import (
    RunningService,
    answers_for,
    make_settings,
    serve_process,
    start_service,
    submission,
)
from tests.server.scrape import (
    Key,
    Samples,
    delta,
    key,
    parse,
    reached,
    scrape,
    wait_for,
)

REQUESTS = "hollang_http_requests_total"
LATENCY_COUNT = "hollang_http_request_duration_seconds_count"
BATCHES = "hollang_inference_batch_size_count"
BATCH_ROWS = "hollang_inference_batch_size_sum"
INFERENCE_COUNT = "hollang_inference_seconds_count"


def requests_key(method: str, route: str, status: int) -> Key:
    return key(REQUESTS, method=method, route=route, status=str(status))


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


def test_requests_are_counted_by_route_template_and_status(client: httpx.Client) -> None:
    before = scrape(client)
    asked = [
        ("GET", "/tests?version=1", "/tests", 200),
        ("GET", "/tests?version=1", "/tests", 200),
        ("GET", "/tests?version=1", "/tests", 200),
        ("GET", "/recommendations/987654321", "/recommendations/{id}", 404),
        ("GET", "/recommendations/987654322/shares", "/recommendations/{id}/shares", 404),
        ("GET", "/recommendations/abc", "/recommendations/{id}", 400),
        ("GET", "/no/such/thing", "<unmatched>", 404),
        ("GET", "/docs/assets/redoc/LICENSE", "/docs/assets/{path}", 200),
        ("GET", "/docs/assets/nothing.js", "/docs/assets/{path}", 404),
        ("DELETE", "/tests", "/tests", 405),
    ]
    for method, path, _, status in asked:
        assert client.request(method, path).status_code == status
    for name in ("코코", "나나"):
        assert client.post("/test-responses", json=submission(name)).status_code == 200
    expected: dict[Key, float] = {}
    for method, _, route, status in [*asked, *[("POST", "", "/test-responses", 200)] * 2]:
        expected[requests_key(method, route, status)] = (
            expected.get(requests_key(method, route, status), 0) + 1
        )
    after = wait_for(client, reached(before, expected))
    for wanted, count in expected.items():
        assert delta(after, before, wanted) == count, wanted
        latency = key(LATENCY_COUNT, **dict(wanted[1]))
        assert delta(after, before, latency) == count, latency
    # Two sequential POSTs: two model runs of one row each.
    assert delta(after, before, key(BATCHES)) == 2
    assert delta(after, before, key(BATCH_ROWS)) == 2
    assert delta(after, before, key(INFERENCE_COUNT)) == 2
    routes = {dict(labels).get("route") for name, labels in after if name == REQUESTS}
    assert not any(route and "98765432" in route for route in routes), routes


def test_gauges_show_the_active_model_and_the_pool(
    service: RunningService, client: httpx.Client
) -> None:
    version = client.get("/info").json()["data"]["model"]["version"]
    samples = scrape(client)
    assert samples[key("hollang_model_active", version=version)] == 1
    pool = service.app_services.db.engine.pool
    assert samples[key("hollang_db_pool_size")] == pool.size()
    assert samples[key("hollang_inference_queue_depth")] == 0
    # Connections taken from the app's own pool show at the next scrape.
    engine = service.app_services.db.engine
    with engine.connect(), engine.connect():
        held = scrape(client)
    assert held[key("hollang_db_pool_checked_out")] >= 2  # a poller may hold one more


@pytest.fixture
def small_queue_service(tmp_path: Path) -> Iterator[RunningService]:
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'hollang.db'}",
        max_batch_size=1,
        max_queue_size=2,
        max_inline_us=0,  # every batch goes through the inference thread the test holds
    )
    yield from start_service(settings)


def test_queue_depth_and_refusals_are_reported(small_queue_service: RunningService) -> None:
    """A held inference thread: the scrape sees the queue; each 503 is counted."""
    service = small_queue_service
    engine = service.app_services.engine
    release = threading.Event()
    engine.executor.submit(release.wait, 30)
    with service.client() as http:
        before = scrape(http)

    async def burst() -> tuple[list[int], Samples, int]:
        async with service.async_client() as client:
            body = {"testResponseDetails": answers_for((1, 2, 3, 0))}
            tasks = [asyncio.create_task(client.post("/predict", json=body)) for _ in range(8)]
            async with asyncio.timeout(20):
                while engine.stats.rejected + engine.queue_depth < 7:
                    await asyncio.sleep(0.01)
            held = await client.get("/metrics")
            depth = engine.queue_depth  # steady while the thread is held
            release.set()
            responses = await asyncio.gather(*tasks)
        return [r.status_code for r in responses], parse(held.text), depth

    statuses, held, depth = asyncio.run(burst())
    refused = statuses.count(503)
    assert refused >= 5 and statuses.count(200) == 8 - refused, statuses
    # One or two waiting, as the flush loop took the first row before or after the rest.
    assert depth >= 1
    assert held[key("hollang_inference_queue_depth")] == depth
    with service.client() as http:
        after = wait_for(
            http, reached(before, {requests_key("POST", "/predict", 200): 8 - refused})
        )
    assert delta(after, before, key("hollang_inference_rejected_total")) == refused
    assert delta(after, before, requests_key("POST", "/predict", 503)) == refused
    assert delta(after, before, requests_key("POST", "/predict", 200)) == 8 - refused


# ---- several workers ----

WORKERS = 2
POOL_SIZE = 3


def fresh_client(url: str) -> httpx.Client:
    """No keep-alive: every request opens its own connection, which either worker accepts."""
    return httpx.Client(base_url=url, timeout=10, limits=httpx.Limits(max_keepalive_connections=0))


def pids_answering(client: httpx.Client, rounds: int = 60) -> tuple[set[int], int]:
    """Ask /info 8 at a time until both workers answered; (pids, requests made)."""
    seen: set[int] = set()
    asked = 0
    with ThreadPoolExecutor(8) as pool:
        for _ in range(rounds):
            replies = list(pool.map(lambda _: client.get("/info"), range(8)))
            asked += len(replies)
            seen |= {r.json()["data"]["pid"] for r in replies if r.status_code == 200}
            assert all(r.status_code == 200 for r in replies)
            if len(seen) == WORKERS:
                return seen, asked
            time.sleep(0.05)
    raise AssertionError(f"only {seen} answered")


def wait_for_replacement(client: httpx.Client, survivors: set[int], victim: int) -> int:
    """The pid of the worker started in the killed one's place, once it answers."""
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            pid = int(client.get("/info").json()["data"]["pid"])
        except httpx.HTTPError:  # a connection the killed worker had accepted
            continue
        if pid not in survivors and pid != victim:
            return pid
        time.sleep(0.02)
    raise AssertionError("the killed worker was not replaced")


def test_two_workers_are_summed_and_a_dead_one_leaves_the_live_gauges(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "HOLLANG_DATA_DIR": str(tmp_path),
        "HOLLANG_DATABASE_URL": database_url,
        "HOLLANG_DB_POOL_SIZE": str(POOL_SIZE),
        "HOLLANG_MODEL_POLL_INTERVAL": "0.5",
        "TMPDIR": str(tmp_path),  # where `hollang serve` makes its metrics directory
    }
    log = tmp_path / "serve.log"
    with serve_process(env, workers=WORKERS, log_path=log) as url, fresh_client(url) as client:
        assert len(list(tmp_path.glob("hollang-metrics-*"))) == 1
        before = scrape(client)
        pids, asked = pids_answering(client)
        with ThreadPoolExecutor(4) as pool:
            posts = list(
                pool.map(
                    lambda i: client.post("/test-responses", json=submission(f"w{i}")), range(12)
                )
            )
        assert [r.status_code for r in posts] == [200] * 12
        expected = {
            requests_key("GET", "/info", 200): asked,
            requests_key("POST", "/test-responses", 200): 12,
        }
        after = wait_for(client, reached(before, expected))
        for wanted, count in expected.items():
            assert delta(after, before, wanted) == count, wanted
        assert delta(after, before, key(BATCH_ROWS)) == 12  # rows run, over both workers
        # Each scrape, whichever worker answers it, sums both: ask several times.
        per_worker = Database(database_url, pool_size=POOL_SIZE).engine.pool.size()  # type: ignore[attr-defined]
        for _ in range(6):
            again = scrape(client)
            assert delta(again, before, requests_key("GET", "/info", 200)) == asked
            assert again[key("hollang_db_pool_size")] == WORKERS * per_worker

        # A worker killed outright is replaced; its gauges leave the sums, its counts stay.
        victim = min(pids)
        os.kill(victim, signal.SIGKILL)
        replacement = wait_for_replacement(client, pids - {victim}, victim)
        assert replacement not in pids
        # The replacement reaped the victim's live gauges as it started: without that the
        # pool would count three workers' worth.
        for _ in range(4):
            final = scrape(client)
            assert final[key("hollang_db_pool_size")] == WORKERS * per_worker
        assert delta(final, before, requests_key("POST", "/test-responses", 200)) == 12
    assert not list(tmp_path.glob("hollang-metrics-*")), "the metrics directory was left behind"


def test_an_operators_metrics_directory_is_emptied_at_start(tmp_path: Path) -> None:
    """Database-independent, so SQLite only."""
    database_url = f"sqlite:///{tmp_path / 'hollang.db'}"
    directory = tmp_path / "prometheus"
    directory.mkdir()
    (directory / "counter_424242.db").write_bytes(b"left by an earlier run, not a metrics file")
    env = {
        "HOLLANG_DATA_DIR": str(tmp_path),
        "HOLLANG_DATABASE_URL": database_url,
        "PROMETHEUS_MULTIPROC_DIR": str(directory),
    }
    with serve_process(env, log_path=tmp_path / "serve.log") as url, fresh_client(url) as client:
        assert not (directory / "counter_424242.db").exists()
        assert client.get("/tests?version=1").status_code == 200
        samples = wait_for(client, lambda s: s.get(requests_key("GET", "/tests", 200)) == 1)
        assert samples[requests_key("GET", "/tests", 200)] == 1
        assert list(directory.glob("*.db"))  # this run's own files
