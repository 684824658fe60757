"""Per-version metrics on a real server: requests, batch sizes, inference time and the
top-3 hobbies counted under the version that answered, exactly; after a swap the old
version's series leave /metrics (no 0-valued series per version ever served) and the swap
is counted. Non-finite outputs are counted per version by a real engine."""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from prometheus_client import REGISTRY

from batching.adaptive import BatchSettings
from model.batcher import BadModelOutput
from model.engine import ModelEngine, open_session
from model.modelfile import ModelFile
from server import metrics
from tests.helpers import RunningService, answers_for, make_settings, start_service
from tests.model import hostile
from tests.s3support import model_bytes
from tests.server.scrape import delta, key, scrape

AUTH = {"Authorization": "Bearer test-admin-token"}
INPUTS = [(0, 0, 0, 0), (3, 3, 3, 3), (1, 2, 3, 0), (2, 0, 1, 3), (3, 1, 0, 2), (0, 3, 2, 1)]


@pytest.fixture
def service(tmp_path: Path) -> Iterator[RunningService]:
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'hollang.db'}", admin_token="test-admin-token"
    )
    yield from start_service(settings)


def predict(client: httpx.Client, scores: tuple[int, int, int, int]) -> dict:  # type: ignore[type-arg]
    response = client.post("/predict", json={"testResponseDetails": answers_for(scores)})
    assert response.status_code == 200, response.text
    data: dict = response.json()["data"]  # type: ignore[type-arg]
    return data


def test_series_follow_the_version_that_answered(service: RunningService) -> None:
    with service.client() as client:
        before = scrape(client)
        served = [predict(client, scores) for scores in INPUTS]
        version = served[0]["modelVersion"]
        top3 = Counter(hobby["key"] for data in served for hobby in data["hobbies"][:3])
        after = scrape(client)
        count = len(INPUTS)
        for name in (
            "hollang_model_predictions_total",
            "hollang_model_batch_size_count",
            "hollang_model_batch_size_sum",
            "hollang_model_inference_seconds_count",
        ):
            assert delta(after, before, key(name, version=version)) == count, name
        recommended = {
            dict(labels)["hobby"]: delta(after, before, (name, labels))
            for name, labels in after
            if name == "hollang_model_recommended_total" and dict(labels)["version"] == version
        }
        assert {hobby: n for hobby, n in recommended.items() if n} == top3
        assert after[key("hollang_model_active", version=version)] == 1

        new = "per-version-2"
        upload = client.post(
            "/admin/model",
            content=model_bytes(new, seed=3),
            headers={**AUTH, "Content-Type": "application/octet-stream"},
        )
        assert upload.status_code == 200, upload.text
        assert predict(client, (1, 1, 1, 1))["modelVersion"] == new
        swapped = scrape(client)
        shown = {dict(labels).get("version") for _, labels in swapped}
        assert version not in shown, "the replaced version's series are still shown"
        assert swapped[key("hollang_model_active", version=new)] == 1
        assert swapped[key("hollang_model_predictions_total", version=new)] == 1
        assert delta(swapped, after, key("hollang_model_swaps_total")) == 1


def sample(name: str, **labels: str) -> float:
    return REGISTRY.get_sample_value(name, labels) or 0.0


def test_non_finite_outputs_are_counted_under_their_version() -> None:
    """A model that answers NaN for batches of more than one row (never validated here):
    the batch's callers get BadModelOutput, its rows are counted, a lone row is served."""
    file = ModelFile.from_bytes(hostile.nan_at_other_sizes())
    version = file.metadata.model_version

    async def run() -> list[object]:
        engine = ModelEngine(BatchSettings(max_batch_size=8))
        metrics.observe_engine(engine)
        engine.swap(open_session(file))
        try:
            alone = await engine.predict([1, 2, 3, 0])
            together = await asyncio.gather(
                *(engine.predict([i % 4, 1, 2, 3]) for i in range(5)), return_exceptions=True
            )
            await asyncio.sleep(0)  # the observer runs after the callers were answered
            return [alone, *together]
        finally:
            await engine.close()

    nonfinite = sample("hollang_model_nonfinite_outputs_total", version=version)
    served = sample("hollang_model_predictions_total", version=version)
    results = asyncio.run(run())
    metrics.fold_version_metrics()  # what a worker's sampler does every second
    assert all(isinstance(result, BadModelOutput) for result in results[1:]), results
    assert sample("hollang_model_nonfinite_outputs_total", version=version) - nonfinite == 5
    assert sample("hollang_model_predictions_total", version=version) - served == 1


def test_gathered_rows_are_counted_at_a_sample_or_once_there_are_many(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Row and hobby counts are folded in by the sampler (or before a scrape), or at once
    when a version has gathered `FOLD_ROWS` rows, so memory stays bounded between samples."""
    version = "fold-test-1"
    model = open_session(ModelFile.from_bytes(model_bytes(version, seed=4)))
    observer = metrics.VersionMetrics(model)
    inputs = np.asarray(INPUTS[:3], np.float32)
    outputs = model.run(inputs)
    top3 = Counter(
        model.labels[i] for row in np.argsort(-outputs, axis=1)[:, :3].tolist() for i in row
    )
    monkeypatch.setattr(metrics, "FOLD_ROWS", 5)

    def counted() -> tuple[float, dict[str, float]]:
        hobbies = {
            label: sample("hollang_model_recommended_total", version=version, hobby=label)
            for label in model.labels
        }
        return sample("hollang_model_predictions_total", version=version), hobbies

    observer.batch_done(inputs, outputs, 1e-5)
    assert counted()[0] == 0  # gathered
    assert sample("hollang_model_batch_size_count", version=version) == 1  # observed at once
    observer.batch_done(inputs, outputs, 1e-5)  # 6 rows >= FOLD_ROWS: folded now
    rows, hobbies = counted()
    assert rows == 6
    assert {label: n for label, n in hobbies.items() if n} == {
        label: 2 * n for label, n in top3.items()
    }
    observer.batch_done(inputs, outputs, 1e-5)
    assert counted()[0] == 6
    metrics.fold_version_metrics()  # the sampler's call
    assert counted()[0] == 9
