"""POST /admin/model/shadow on a real server: the candidate scores live requests without
being served, GET /admin/model and /metrics report how it agrees with the active model
(checked here against both models run independently), `null` stops it, and a candidate
that cannot be scored is refused or reported without touching serving."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from typing import Any

import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import numpy_helper

from model.modelfile import INPUT_NAME, ModelFile, ModelMetadata, build_mlp
from model.registry import ModelRegistry
from tests.helpers import RunningService, answers_for
from tests.s3support import LABELS, model_bytes, wait_for
from tests.server.scrape import delta, key, scrape

AUTH = {"Authorization": "Bearer test-admin-token"}
NOT_A_HOBBY = "달 표면에서 스카이다이빙하기"
INPUTS = [(e, n, f, j) for e in range(4) for n in (0, 3) for f in (1, 2) for j in (0, 3)][:20]


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


def registry_of(service: RunningService) -> ModelRegistry:
    return ModelRegistry(service.app_services.objects)


def model_status(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/admin/model", headers=AUTH)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def set_shadow(client: httpx.Client, version: str | None) -> httpx.Response:
    return client.post("/admin/model/shadow", json={"version": version}, headers=AUTH)


def near(active: ModelFile, version: str, seed: int, scale: float = 0.5) -> bytes:
    """The active model with noise on its output biases: a candidate that agrees with it
    on some inputs and not on others."""
    weights = {
        item.name: numpy_helper.to_array(item)
        for item in onnx.load_from_string(active.data).graph.initializer
    }
    count = len(weights) // 2
    layers = [(weights[f"layer{i}.weight"], weights[f"layer{i}.bias"]) for i in range(count)]
    last_weight, last_bias = layers[-1]
    noise = np.random.default_rng(seed).normal(scale=scale, size=last_bias.shape)
    layers[-1] = (last_weight, last_bias + noise.astype(np.float32))
    labels = active.metadata.labels
    return build_mlp(layers, ModelMetadata(model_version=version, labels=labels))


def active_file(service: RunningService) -> ModelFile:
    registry = registry_of(service)
    pointer = registry.read_pointer()
    assert pointer is not None
    return registry.fetch(pointer.active)


def top(logits: np.ndarray, labels: tuple[str, ...], count: int) -> list[str]:
    return [labels[i] for i in np.argsort(-logits, kind="stable")[:count]]


def test_a_shadow_scores_live_requests_without_being_served(
    service: RunningService, client: httpx.Client
) -> None:
    suffix = uuid.uuid4().hex[:6]
    candidate_version = f"candidate-{suffix}"
    base = active_file(service)
    candidate = near(base, candidate_version, seed=5)
    registry_of(service).publish(ModelFile.from_bytes(candidate))
    active = model_status(client)["active"]["modelVersion"]
    assert active == base.metadata.model_version

    response = set_shadow(client, candidate_version)
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["message"] == f"Model {candidate_version} is scored beside the active model."
    assert body["data"]["pointer"]["shadow"]["version"] == candidate_version
    assert body["data"]["shadow"]["model"]["modelVersion"] == candidate_version
    assert body["data"]["active"]["modelVersion"] == active  # the candidate is not served

    before = scrape(client)
    session = ort.InferenceSession(candidate, providers=["CPUExecutionProvider"])
    top1 = top3 = 0
    for scores in INPUTS:
        reply = client.post("/predict", json={"testResponseDetails": answers_for(scores)})
        assert reply.status_code == 200, reply.text
        data = reply.json()["data"]
        assert data["modelVersion"] == active
        served = [hobby["key"] for hobby in data["hobbies"]]
        row = np.asarray([scores], np.float32)
        theirs = top(session.run(None, {INPUT_NAME: row})[0][0], base.metadata.labels, 3)
        top1 += served[0] == theirs[0]
        top3 += set(served[:3]) == set(theirs)
    assert 0 < top1 < len(INPUTS) or 0 < top3 < len(INPUTS)  # the comparison has something to say

    def scored() -> dict[str, Any] | None:
        live: dict[str, Any] = model_status(client)["shadow"]["live"]
        return live if live["rows"] >= len(INPUTS) else None

    live = wait_for(scored, 10, "the shadow to score every request")
    assert live["comparedWith"] == active
    assert live["rows"] == len(INPUTS)
    assert live["top1Agreement"] == top1 / len(INPUTS)
    assert live["top3Agreement"] == top3 / len(INPUTS)
    # one request at a time, each a batch of one, gathered into fewer shadow runs
    # (tests/model/test_shadow.py shows how many exactly)
    assert 1 <= live["runs"] <= len(INPUTS)
    assert live["meanRunSeconds"] > 0
    assert live["failedRows"] == 0 and live["skippedRows"] == 0

    after = scrape(client)
    labels = {"shadow": candidate_version, "active": active}
    assert delta(after, before, key("hollang_shadow_rows_total", **labels)) == len(INPUTS)
    assert delta(after, before, key("hollang_shadow_top1_agreements_total", **labels)) == top1
    assert delta(after, before, key("hollang_shadow_top3_agreements_total", **labels)) == top3
    runs = key("hollang_shadow_inference_seconds_count", shadow=candidate_version)
    assert delta(after, before, runs) == live["runs"]
    assert after[key("hollang_model_shadow", version=candidate_version)] == 1
    # The active model's own count moved by the requests only: the shadow is not counted.
    predictions = key("hollang_model_predictions_total", version=active)
    assert delta(after, before, predictions) == len(INPUTS)

    response = set_shadow(client, None)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "No shadow model."
    assert response.json()["data"]["shadow"] is None
    assert response.json()["data"]["pointer"]["shadow"] is None
    stopped = scrape(client)
    assert not any(dict(labels).get("version") == candidate_version for _, labels in stopped), (
        "a stopped shadow's series are still shown"
    )
    assert client.post("/predict", json={"testResponseDetails": answers_for((1, 1, 1, 1))})


def test_shadow_requests_that_cannot_be_done_are_4xx(
    service: RunningService, client: httpx.Client
) -> None:
    active = model_status(client)["active"]["modelVersion"]
    unknown = set_shadow(client, "no-such-version")
    assert unknown.status_code == 404, unknown.text
    assert "no published model has version 'no-such-version'" in unknown.json()["message"]
    itself = set_shadow(client, active)
    assert itself.status_code == 409, itself.text
    assert "is the active model, not a candidate" in itself.json()["message"]
    for body in ({}, {"version": ""}, {"version": 3}, [1]):
        bad = client.post("/admin/model/shadow", json=body, headers=AUTH)
        assert bad.status_code == 400, (body, bad.text)
        assert bad.json()["code"] == "BAD_REQUEST"
    assert client.post("/admin/model/shadow", json={"version": None}).status_code == 401

    stranger = f"stranger-{uuid.uuid4().hex[:6]}"
    data = model_bytes(stranger, seed=6, labels=(*LABELS[:-1], NOT_A_HOBBY))
    registry_of(service).publish(ModelFile.from_bytes(data))  # published without validation
    refused = set_shadow(client, stranger)
    assert refused.status_code == 422, refused.text
    assert "not hobbies of the active catalogue" in refused.json()["message"]
    assert model_status(client)["pointer"]["shadow"] is None


def test_a_broken_shadow_in_the_pointer_never_affects_serving(
    service: RunningService, client: httpx.Client
) -> None:
    """Named in the pointer behind the API's back: the replica refuses it at its poll,
    says so, counts it, and serves as before."""
    broken = f"broken-{uuid.uuid4().hex[:6]}"
    data = model_bytes(broken, seed=7, labels=(*LABELS[:-1], NOT_A_HOBBY))
    registry = registry_of(service)
    entry = registry.publish(ModelFile.from_bytes(data))
    before = scrape(client)
    pointer = registry.read_pointer()
    assert pointer is not None
    registry.set_shadow(entry, pointer)

    def reported() -> dict[str, Any] | None:
        shadow: dict[str, Any] | None = model_status(client)["shadow"]
        return shadow if shadow and shadow["error"] else None

    shadow = wait_for(reported, 10, "the replica to refuse the broken shadow")
    assert shadow["model"] is None
    assert f"refused shadow model {broken}" in shadow["error"]
    assert "not hobbies of the active catalogue" in shadow["error"]
    status = model_status(client)
    assert status["lastError"] is None  # the active model is fine
    assert status["pointer"]["shadow"]["version"] == broken
    reply = client.post("/predict", json={"testResponseDetails": answers_for((2, 2, 1, 0))})
    assert reply.status_code == 200
    assert reply.json()["data"]["modelVersion"] == status["active"]["modelVersion"]
    after = scrape(client)
    refused = key("hollang_model_refused_loads_total", role="shadow")
    assert delta(after, before, refused) == 1  # refused once, not at every poll
    assert set_shadow(client, None).status_code == 200
    assert model_status(client)["shadow"] is None
