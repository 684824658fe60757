"""The lean serving path: what the per-request optimisations must not change, and what
they promise. /predict validates its own body exactly as a declared body would, liveness
never waits behind work in the thread pool, and every worker froze its start-up heap.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pymysql
import pytest
from sqlalchemy.engine import make_url

from tests.helpers import (
    RunningService,
    answers_for,
    fresh_database_url,
    serve_process,
    submission,
)


def predict(client: httpx.Client, content: bytes, content_type: str | None) -> httpx.Response:
    headers = {"content-type": content_type} if content_type else {}
    return client.post("/predict", content=content, headers=headers)


def field_errors(response: httpx.Response) -> list[dict[str, str]]:
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["code"] == "BAD_REQUEST" and body["message"]
    errors: list[dict[str, str]] = body["errors"]
    assert errors and all({"field", "message", "type"} <= set(e) for e in errors)
    return errors


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


@pytest.mark.parametrize(
    ("content", "content_type", "expected_type"),
    [
        pytest.param(b"", "application/json", "missing", id="empty"),
        pytest.param(b'{"testResponseDetails": [', "application/json", "json_invalid", id="cut"),
        pytest.param(b"\xff\xfe", "application/json", "json_invalid", id="not utf-8"),
        pytest.param(b"{}", "text/plain", "content_type", id="not declared json"),
        pytest.param(b"{}", None, "content_type", id="no content type"),
        pytest.param(b"[]", "application/json", "model_type", id="not an object"),
        pytest.param(b"{}", "application/json", "missing", id="no answers"),
    ],
)
def test_predict_refuses_bodies_it_cannot_use(
    client: httpx.Client, content: bytes, content_type: str | None, expected_type: str
) -> None:
    [error] = field_errors(predict(client, content, content_type))
    assert error["type"] == expected_type


def test_predict_error_paths_name_the_item_and_its_json_field(client: httpx.Client) -> None:
    details = answers_for((1, 1, 1, 1))
    details[3]["answerNumber"] = 7
    body = httpx.Request("POST", "/", json={"testResponseDetails": details}).content
    errors = field_errors(predict(client, body, "application/json; charset=utf-8"))
    assert [(e["field"], e["type"]) for e in errors] == [
        ("testResponseDetails[3].answerNumber", "less_than_equal")
    ]


def test_predict_accepts_json_subtypes_and_the_first_generation_key(
    client: httpx.Client,
) -> None:
    body = httpx.Request("POST", "/", json={"testResponseDetail": answers_for((3, 0, 3, 0))})
    response = predict(client, body.content, "application/vnd.hollang+json")
    assert response.status_code == 200, response.text
    data = response.json()["data"]
    assert data["mbtiType"] == "ESFP"
    assert [h["ranking"] for h in data["hobbies"]] == list(range(1, len(data["hobbies"]) + 1))


def test_openapi_documents_the_body_predict_reads(client: httpx.Client) -> None:
    document = client.get("/openapi.json").json()
    body = document["paths"]["/predict"]["post"]["requestBody"]
    ref = body["content"]["application/json"]["schema"]["$ref"]
    schemas = document["components"]["schemas"]
    answers = schemas[ref.rsplit("/", 1)[1]]
    assert body["required"] is True
    assert set(answers["required"]) == {"testResponseDetails"}
    item_ref = answers["properties"]["testResponseDetails"]["items"]["$ref"]
    assert item_ref.rsplit("/", 1)[1] in schemas  # every reference resolves


def test_every_worker_froze_its_start_up_heap(tmp_path: Path) -> None:
    env = {"HOLLANG_DATA_DIR": str(tmp_path), "HOLLANG_LOG_LEVEL": "WARNING"}
    with serve_process(env, workers=2) as url, httpx.Client(base_url=url, timeout=10) as http:
        frozen: dict[int, int] = {}
        deadline = time.monotonic() + 30
        while len(frozen) < 2 and time.monotonic() < deadline:
            data = http.get("/info", headers={"Connection": "close"}).json()["data"]
            frozen[data["pid"]] = data["gcFrozenObjects"]
        assert len(frozen) == 2, "the second worker never answered"
        # A loaded worker holds hundreds of thousands of objects; all of them are frozen.
        assert all(count > 50_000 for count in frozen.values()), frozen
        # Collections are rare enough now that a short test cannot count on one happening;
        # the pause histogram of every generation is exported all the same.
        exposition = http.get("/metrics").text
        for generation in range(3):
            assert f'hollang_gc_pause_seconds_count{{generation="{generation}"}}' in exposition


@pytest.mark.mysql
def test_liveness_answers_while_every_pool_thread_waits_on_the_database(
    tmp_path: Path,
) -> None:
    """GET /recommendations/{id} runs in FastAPI's thread pool (40 threads); with its table
    locked by another client, 60 of them hold every thread. /health/live must not queue
    behind them: as a plain `def` it did, for as long as the lock was held."""
    for url in fresh_database_url("mysql", tmp_path):
        env = {"HOLLANG_DATA_DIR": str(tmp_path), "HOLLANG_DATABASE_URL": url}
        with serve_process(env) as base, httpx.Client(base_url=base, timeout=30) as http:
            created = http.post("/test-responses", json=submission("잠금"))
            recommendation = created.json()["data"]["recommendation"]["id"]
            parsed = make_url(url)
            locker = pymysql.connect(
                host=parsed.host, port=parsed.port or 3306, user=parsed.username,
                password=parsed.password or "", database=parsed.database,
            )  # fmt: skip
            try:
                with locker.cursor() as cursor:
                    cursor.execute("LOCK TABLES recommendation WRITE")
                live_seconds = asyncio.run(_live_beside_blocked_reads(base, recommendation))
            finally:
                locker.close()  # releases the lock
        assert max(live_seconds) < 1.0, live_seconds


async def _live_beside_blocked_reads(base: str, recommendation: int) -> list[float]:
    limits = httpx.Limits(max_connections=100)
    async with httpx.AsyncClient(base_url=base, timeout=30, limits=limits) as client:
        blocked = [
            asyncio.create_task(client.get(f"/recommendations/{recommendation}")) for _ in range(60)
        ]
        await asyncio.sleep(1.0)  # every read is now waiting inside a pool thread
        assert not any(task.done() for task in blocked), "the lock did not block the reads"
        seconds = []
        for _ in range(5):
            started = time.monotonic()
            response = await client.get("/health/live")
            seconds.append(time.monotonic() - started)
            assert response.status_code == 200
        for task in blocked:
            task.cancel()
        await asyncio.gather(*blocked, return_exceptions=True)
        return seconds
