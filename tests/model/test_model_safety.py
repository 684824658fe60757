"""Model safety through a real server, on SQLite and on MariaDB: hostile uploads are 422s
while the worker keeps answering, a model that misbehaves at serving time fails only its
batch's callers (503, counted, nothing stored), and the quality gates of an upload.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import onnxruntime as ort
import pytest

from model.engine import LoadedModel, session_options
from model.modelfile import ModelFile
from tests.helpers import (
    BACKENDS,
    RunningService,
    answers_for,
    fresh_database_url,
    make_settings,
    start_service,
    stored_counts,
    submission,
)
from tests.model import hostile

TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAW = {**AUTH, "Content-Type": "application/octet-stream"}
TIMEOUT = 8.0  # HOLLANG_MODEL_VALIDATION_TIMEOUT of this module's server
SLACK = 10.0


@pytest.fixture(scope="module", params=BACKENDS)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    tmp = tmp_path_factory.mktemp("safety")
    for url in fresh_database_url(request.param, tmp):
        # No registry poll: it would (rightly) put the pointer's model back while a test
        # serves one installed behind its back (`_install_unvalidated`).
        settings = make_settings(
            tmp,
            url,
            admin_token=TOKEN,
            model_validation_timeout=TIMEOUT,
            model_poll_interval=3600,
        )
        yield from start_service(settings)


def info(client: httpx.Client) -> dict[str, Any]:
    model: dict[str, Any] = client.get("/info").json()["data"]["model"]
    return model


def upload(client: httpx.Client, data: bytes, **params: Any) -> httpx.Response:
    return client.post("/admin/model", content=data, headers=RAW, params=params)


# ---- hostile uploads ----

HOSTILE = [
    pytest.param(hostile.external_data, "use external data", id="external-data"),
    pytest.param(hostile.nan_at_other_sizes, "non-finite", id="nan-sizes"),
    pytest.param(hostile.extra_row_at_other_sizes, "returned shape [3, 19]", id="extra-row"),
    pytest.param(hostile.slow_at_other_sizes, "HOLLANG_MODEL_MAX_BATCH_MS", id="slow-sizes"),
    pytest.param(hostile.allocates_1gib, "memory limit 512 MB", id="allocates-1gib"),
    pytest.param(hostile.endless_loop, f"timed out after {TIMEOUT:g} s", id="loop-1e13"),
]


@pytest.mark.parametrize(("make", "reason"), HOSTILE)
def test_a_hostile_upload_is_a_422_and_the_worker_keeps_answering(
    service: RunningService, make: Callable[[], bytes], reason: str
) -> None:
    with service.client() as client:
        before = info(client)

    async def scenario() -> tuple[httpx.Response, list[float], float]:
        async with service.async_client() as client:
            started = time.monotonic()
            task = asyncio.ensure_future(client.post("/admin/model", content=make(), headers=RAW))
            waits: list[float] = []
            while not task.done():
                asked = time.monotonic()
                live = await client.get("/health/live", timeout=5)
                assert live.status_code == 200
                waits.append(time.monotonic() - asked)
                await asyncio.sleep(0.1)
            return await task, waits, time.monotonic() - started

    response, waits, elapsed = asyncio.run(scenario())
    assert response.status_code == 422, response.text
    assert response.json()["code"] == "UNPROCESSABLE_ENTITY"
    assert response.json()["message"].startswith("Model rejected: ")
    assert reason in response.json()["message"]
    assert elapsed < TIMEOUT + SLACK
    assert waits and max(waits) < 1.0  # /health/live answered within 1 s throughout
    with service.client() as client:
        assert info(client) == before


# ---- guards at serving time ----


def _install_unvalidated(service: RunningService, data: bytes) -> LoadedModel | None:
    """Put a model in the engine as if validation had missed it, on the server's own loop;
    returns the previous model. Its batches run on the inference thread (measured "slow"),
    so a test can hold that thread while a crowd queues up into batches."""
    file = ModelFile.from_bytes(data)
    session = ort.InferenceSession(
        data, sess_options=session_options(), providers=["CPUExecutionProvider"]
    )
    model = LoadedModel(
        file=file, session=session, loaded_at=time.time(), batch_seconds=(1.0,) * 64
    )
    engine = service.app_services.engine
    loop = service.server.servers[0].get_loop()

    async def swap() -> LoadedModel | None:
        previous: LoadedModel | None = engine.swap(model)
        return previous

    return asyncio.run_coroutine_threadsafe(swap(), loop).result(timeout=10)


def _restore(service: RunningService, model: LoadedModel) -> None:
    engine = service.app_services.engine
    loop = service.server.servers[0].get_loop()

    async def swap() -> None:
        engine.swap(model)

    asyncio.run_coroutine_threadsafe(swap(), loop).result(timeout=10)


def _bad_output_batches(client: httpx.Client) -> float:
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("hollang_inference_bad_output_batches_total"):
            return float(line.split()[-1])
    return 0.0


@pytest.mark.parametrize(
    "make",
    [
        pytest.param(hostile.nan_at_other_sizes, id="nan"),
        pytest.param(hostile.extra_row_at_other_sizes, id="extra-row"),
    ],
)
def test_a_batch_with_unusable_outputs_fails_only_its_callers_and_stores_nothing(
    service: RunningService, make: Callable[[], bytes]
) -> None:
    bodies = [submission(f"g{n}", (n % 4, (n // 4) % 4, 1, 2)) for n in range(120)]
    with service.client() as client:
        counted_before = _bad_output_batches(client)
    rows_before = stored_counts(service)
    previous = _install_unvalidated(service, make())
    assert previous is not None
    try:

        async def crowd() -> list[httpx.Response]:
            # Hold the inference thread until callers are queued behind it: they form a
            # batch of more than one when it is let go (a condition, not a time).
            engine = service.app_services.engine
            gate = threading.Event()
            engine.executor.submit(gate.wait, 30)
            try:
                async with service.async_client() as client:
                    posts = asyncio.gather(
                        *(client.post("/test-responses", json=b) for b in bodies)
                    )
                    deadline = time.monotonic() + 30
                    while engine.queue_depth < 2 and time.monotonic() < deadline:
                        await asyncio.sleep(0.01)
                    gate.set()
                    return list(await posts)
            finally:
                gate.set()

        responses = asyncio.run(crowd())
        with service.client() as client:
            # one at a time: batches of one, where the model is sound
            lone = [client.post("/test-responses", json=b) for b in bodies[:3]]
            predicted = [
                client.post("/predict", json={"testResponseDetails": b["testResponseDetails"]})
                for b in bodies[:3]
            ]
            recommendations = [
                client.get(f"/recommendations/{r.json()['data']['recommendation']['id']}")
                for r in lone
            ]
            counted_after = _bad_output_batches(client)
    finally:
        _restore(service, previous)

    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503}, [
        r.text for r in responses if r.status_code not in (200, 503)
    ]
    refused = [r for r in responses if r.status_code == 503]
    assert refused, "no batch of more than one formed"
    for response in refused:
        assert response.json() == {
            "code": "SERVICE_UNAVAILABLE",
            "message": "The model gave an unusable answer; retry shortly.",
        }
        assert response.headers["retry-after"] == "2"
    assert [r.status_code for r in lone] == [200, 200, 200]
    # Exactly the answered submissions were stored: no fallback ranking for the refused.
    rows_after = stored_counts(service)
    answered = statuses.count(200) + len(lone)
    assert rows_after["test_response"] - rows_before["test_response"] == answered
    assert rows_after["recommendation"] - rows_before["recommendation"] == answered
    # ... and what was stored is the model's own batch-of-one answer.
    for recommendation, prediction in zip(recommendations, predicted, strict=True):
        stored = recommendation.json()["data"]["recommendation"]["hobbies"]
        ranked = prediction.json()["data"]["hobbies"]
        assert [h["id"] for h in sorted(stored, key=lambda h: h["ranking"])] == [
            h["id"] for h in ranked if h["id"] is not None
        ][:3]
    assert counted_after - counted_before >= 1


# ---- quality gates ----


def test_an_upload_reports_its_comparison_with_the_active_model(
    service: RunningService,
) -> None:
    with service.client() as client:
        active = info(client)["version"]
        response = upload(client, hostile.mlp("quality-1", seed=61))
        assert response.status_code == 200, response.text
        quality = response.json()["data"]["quality"]
        assert quality["comparedWith"] == active
        assert quality["inputs"] == 256
        assert 0 <= quality["top3Agreement"] <= quality["top1Agreement"] + 1
        assert 0 <= quality["top1Agreement"] <= 1
        assert set(quality["top3Counts"]) == set(hostile.LABELS)
        assert sum(quality["top3Counts"].values()) == 3 * 256
        assert sum(quality["activeTop3Counts"].values()) == 3 * 256
        assert quality["degenerate"] is False

        # the same model again agrees with itself everywhere
        again = upload(client, hostile.mlp("quality-1", seed=61)).json()["data"]["quality"]
        assert again["top1Agreement"] == again["top3Agreement"] == 1.0
        assert again["top3Counts"] == again["activeTop3Counts"] == quality["top3Counts"]


def test_a_degenerate_model_is_refused_unless_allowed(service: RunningService) -> None:
    with service.client() as client:
        before = info(client)
        response = upload(client, hostile.constant("constant-1"))
        assert response.status_code == 422
        assert "degenerate model: it gives the same three hobbies" in response.json()["message"]
        assert info(client) == before
        allowed = upload(client, hostile.constant("constant-1"), allowDegenerate="true")
        assert allowed.status_code == 200, allowed.text
        assert allowed.json()["data"]["quality"]["distinctTop3"] == 1
        assert info(client)["version"] == "constant-1"
        assert upload(client, hostile.mlp("after-constant", seed=62)).status_code == 200


def test_require_agreement_refuses_a_model_that_disagrees(service: RunningService) -> None:
    with service.client() as client:
        assert upload(client, hostile.mlp("agree-base", seed=63)).status_code == 200
        before = info(client)
        other = hostile.mlp("agree-other", seed=64)
        response = upload(client, other, requireAgreement="0.99")
        assert response.status_code == 422
        assert "agrees with the active model agree-base on" in response.json()["message"]
        assert "below the required 99.0%" in response.json()["message"]
        assert info(client) == before
        bad = upload(client, other, requireAgreement="1.5")
        assert bad.status_code == 400
        assert bad.json()["errors"][0]["field"] == "requireAgreement"
        assert upload(client, other, requireAgreement="0").status_code == 200


def test_labels_in_the_wrong_order_are_refused(service: RunningService) -> None:
    with service.client() as client:
        base = hostile.mlp("order-base", seed=65)
        assert upload(client, base).status_code == 200
        before = info(client)
        response = upload(client, hostile.reordered_labels(base, "order-reversed"))
        assert response.status_code == 422
        assert "labels in the wrong order" in response.json()["message"]
        assert info(client) == before


def test_a_sound_model_swaps_under_load_with_no_failed_request(
    service: RunningService, tmp_path: Path
) -> None:
    """Validated at every size in the sandbox, then swapped while predicts are in flight."""
    body = {"testResponseDetails": answers_for((1, 2, 3, 0))}

    async def scenario() -> tuple[list[httpx.Response], httpx.Response]:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=service.url, timeout=60, limits=limits) as client:
            predicts = [
                asyncio.ensure_future(client.post("/predict", json=body)) for _ in range(150)
            ]
            swapped = await client.post(
                "/admin/model", content=hostile.mlp("under-load", seed=66), headers=RAW
            )
            predicts += [
                asyncio.ensure_future(client.post("/predict", json=body)) for _ in range(150)
            ]
            return list(await asyncio.gather(*predicts)), swapped

    predicts, swapped = asyncio.run(scenario())
    assert swapped.status_code == 200, swapped.text
    assert [r.status_code for r in predicts if r.status_code != 200] == []
    assert predicts[-1].json()["data"]["modelVersion"] == "under-load"
