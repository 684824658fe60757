"""Beyond the bounded inference queue, callers get a clear 503 with Retry-After at once."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import RunningService, answers_for, make_settings, start_service


@pytest.fixture
def small_queue_service(tmp_path: Path) -> Iterator[RunningService]:
    # max_inline_us=0: every batch goes to the inference thread, as a slow model's would
    # (the bundled model is fast enough to run on the event loop, bypassing the thread).
    settings = make_settings(
        tmp_path,
        f"sqlite:///{tmp_path / 'hollang.db'}",
        max_batch_size=1,
        max_queue_size=2,
        max_inline_us=0,
    )
    yield from start_service(settings)


def test_full_queue_answers_503_with_retry_after(small_queue_service: RunningService) -> None:
    engine = small_queue_service.app_services.engine
    release = threading.Event()
    # Occupy the single inference thread, as a long batch would, so requests pile up.
    engine.executor.submit(release.wait, 30)

    async def burst() -> list[tuple[int, dict, str | None]]:  # type: ignore[type-arg]
        async with small_queue_service.async_client() as client:
            body = {"testResponseDetails": answers_for((1, 2, 3, 0))}
            tasks = [asyncio.create_task(client.post("/predict", json=body)) for _ in range(12)]
            # Wait (bounded) until every request is queued, in flight or refused.
            async with asyncio.timeout(20):
                while engine.stats.rejected + engine.queue_depth < 11:
                    await asyncio.sleep(0.01)
            await asyncio.sleep(0.1)
            release.set()
            responses = await asyncio.gather(*tasks)
        return [(r.status_code, r.json(), r.headers.get("retry-after")) for r in responses]

    results = asyncio.run(burst())
    statuses = sorted(status for status, _, _ in results)
    # At most one batch in flight (size 1) plus two queued are served: whether the flush
    # loop took the first row before the queue filled depends on arrival order.
    assert statuses.count(200) in (2, 3), statuses
    refused = [(body, retry) for status, body, retry in results if status == 503]
    assert len(refused) == 12 - statuses.count(200)
    for body, retry in refused:
        assert body["code"] == "SERVICE_UNAVAILABLE"
        assert "overloaded" in body["message"]
        assert retry == "1"
    assert engine.stats.rejected == len(refused)
