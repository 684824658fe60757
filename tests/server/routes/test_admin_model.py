"""The model admin API through a real server, on SQLite and on MariaDB.

The `service` fixture is one server per backend for this whole module, so every test reads
the state it starts from (the active version) instead of assuming one; version strings are
unique per test so tests do not depend on each other's order.
"""

from __future__ import annotations

import asyncio
import hashlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from sqlalchemy import select

from db.models import Recommendation
from model.engine import load_model
from model.modelfile import ModelFile, ModelMetadata, build_mlp
from tests.helpers import (
    RunningService,
    answers_for,
    make_settings,
    start_service,
    submission,
)

BUNDLED = Path(__file__).resolve().parents[3] / "model" / "bundled" / "default.onnx"
TOKEN = "test-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
RAW = {**AUTH, "Content-Type": "application/octet-stream"}
LABELS: tuple[str, ...] = ModelFile.read(BUNDLED).metadata.labels
NOT_A_HOBBY = "달 표면에서 스카이다이빙하기"


# ---- model files ----


def mlp_bytes(version: str, seed: int, labels: tuple[str, ...] = LABELS) -> bytes:
    """A valid 4-16-len(labels) MLP with seeded weights: the same arguments, the same bytes."""
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(size=(16, 4)), rng.normal(size=16)),
        (rng.normal(size=(len(labels), 16)), rng.normal(size=len(labels))),
    ]
    return build_mlp(layers, ModelMetadata(model_version=version, labels=labels))


def input_width_3() -> bytes:
    """Consistent in itself, but takes [batch, 3]."""
    weight = numpy_helper.from_array(np.ones((len(LABELS), 3), np.float32), "w")
    bias = numpy_helper.from_array(np.zeros(len(LABELS), np.float32), "b")
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["scores", "w", "b"], ["logits"], transB=1)],
        "width3",
        [helper.make_tensor_value_info("scores", TensorProto.FLOAT, ["batch", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["batch", len(LABELS)])],
        [weight, bias],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    helper.set_model_props(model, ModelMetadata("width-3", LABELS).to_props())
    return model.SerializeToString()


def without_metadata() -> bytes:
    model = onnx.load_from_string(mlp_bytes("no-metadata", seed=40))
    del model.metadata_props[:]
    return model.SerializeToString()


def nan_bias() -> bytes:
    rng = np.random.default_rng(41)
    bias = rng.normal(size=len(LABELS))
    bias[7] = np.nan
    layers = [(rng.normal(size=(len(LABELS), 4)), bias)]
    return build_mlp(layers, ModelMetadata("nan-bias", LABELS))


def local_logits(data: bytes, scores: tuple[int, int, int, int]) -> dict[str, float]:
    model = load_model(ModelFile.from_bytes(data))
    row = model.run(np.array([scores], dtype=np.float32))[0]
    return dict(zip(model.labels, row.tolist(), strict=True))


# ---- requests ----


def info(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/info")
    assert response.status_code == 200
    model: dict[str, Any] = response.json()["data"]["model"]
    return model


def status(client: httpx.Client) -> dict[str, Any]:
    response = client.get("/admin/model", headers=AUTH)
    assert response.status_code == 200, response.text
    data: dict[str, Any] = response.json()["data"]
    return data


def upload(client: httpx.Client, data: bytes, *, multipart: bool = False) -> httpx.Response:
    if multipart:
        files = {"file": ("model.onnx", data, "application/octet-stream")}
        return client.post("/admin/model", files=files, headers=AUTH)
    return client.post("/admin/model", content=data, headers=RAW)


def recorded_version(service: RunningService, client: httpx.Client) -> str:
    """Take the test once; the model version stored with its recommendation row."""
    response = client.post("/test-responses", json=submission())
    assert response.status_code == 200, response.text
    recommendation_id = response.json()["data"]["recommendation"]["id"]
    with service.db.read() as session:
        version = session.scalar(
            select(Recommendation.model_version).where(Recommendation.id == recommendation_id)
        )
    assert isinstance(version, str)
    return version


def predicted_version(client: httpx.Client) -> str:
    response = client.post("/predict", json={"testResponseDetails": answers_for((3, 0, 2, 1))})
    assert response.status_code == 200, response.text
    version: str = response.json()["data"]["modelVersion"]
    return version


@pytest.fixture
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as client:
        yield client


# ---- authentication ----


@pytest.mark.parametrize(
    "headers",
    [
        pytest.param({}, id="no-token"),
        pytest.param({"Authorization": "Bearer wrong-token"}, id="wrong-token"),
        pytest.param({"Authorization": f"Bearer {TOKEN}x"}, id="token-prefix"),
        pytest.param({"Authorization": f"Basic {TOKEN}"}, id="basic-scheme"),
    ],
)
def test_admin_routes_require_the_bearer_token(
    service: RunningService, client: httpx.Client, headers: dict[str, str]
) -> None:
    before = info(client)
    requests = [
        client.get("/admin/model", headers=headers),
        client.post(
            "/admin/model",
            content=mlp_bytes("unauthorised-1", seed=1),
            headers={**headers, "Content-Type": "application/octet-stream"},
        ),
        client.post("/admin/model/rollback", headers=headers),
    ]
    for response in requests:
        assert response.status_code == 401, response.text
        assert response.headers["www-authenticate"] == "Bearer"
        assert response.json() == {
            "code": "UNAUTHORIZED",
            "message": "A valid admin bearer token is required.",
        }
    assert info(client) == before  # nothing was uploaded or rolled back


def test_status_shows_the_active_model_and_the_pointer(client: httpx.Client) -> None:
    response = client.get("/admin/model", headers=AUTH)
    assert response.status_code == 200
    body = response.json()
    assert body["code"] == "OK"
    data = body["data"]
    current = info(client)
    assert data["active"]["modelVersion"] == current["version"]
    assert data["active"]["sha256"] == current["sha256"]
    assert data["active"]["labels"] and data["active"]["sizeBytes"] > 0
    assert data["pointer"]["active"]["version"] == current["version"]
    assert data["pointer"]["active"]["sha256"] == current["sha256"]
    assert isinstance(data["pointer"]["history"], list)


# ---- upload, record, rollback ----


def test_upload_serves_records_and_rolls_back(
    service: RunningService, client: httpx.Client
) -> None:
    before = info(client)["version"]
    assert before is not None

    # raw body
    first = mlp_bytes("test-upload-1", seed=1)
    response = upload(client, first)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "Model test-upload-1 is active."
    data = response.json()["data"]
    assert data["active"]["modelVersion"] == "test-upload-1"
    assert data["active"]["sha256"] == hashlib.sha256(first).hexdigest()
    assert info(client)["version"] == "test-upload-1"
    assert info(client)["sha256"] == hashlib.sha256(first).hexdigest()
    assert recorded_version(service, client) == "test-upload-1"
    assert predicted_version(client) == "test-upload-1"
    pointer = status(client)["pointer"]
    assert pointer["active"]["version"] == "test-upload-1"
    assert pointer["history"][0]["version"] == before

    # multipart field `file`
    second = mlp_bytes("test-upload-2", seed=2)
    response = upload(client, second, multipart=True)
    assert response.status_code == 200, response.text
    assert info(client)["version"] == "test-upload-2"
    assert recorded_version(service, client) == "test-upload-2"
    history = [entry["version"] for entry in status(client)["pointer"]["history"]]
    assert history[:2] == ["test-upload-1", before]

    # the served answers are this model's own logits
    scores = (3, 0, 2, 1)
    response = client.post("/predict", json={"testResponseDetails": answers_for(scores)})
    served = {h["key"]: h["score"] for h in response.json()["data"]["hobbies"]}
    expected = local_logits(second, scores)
    assert served.keys() == expected.keys()
    for key, score in expected.items():
        assert served[key] == pytest.approx(score, rel=1e-5, abs=1e-5)

    # rollback
    response = client.post("/admin/model/rollback", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == "Rolled back to model test-upload-1."
    assert response.json()["data"]["active"]["modelVersion"] == "test-upload-1"
    assert info(client)["version"] == "test-upload-1"
    assert recorded_version(service, client) == "test-upload-1"
    pointer = status(client)["pointer"]
    assert pointer["active"]["version"] == "test-upload-1"
    # The history is popped, not pushed: another rollback goes one further back.
    assert pointer["history"][0]["version"] == before
    response = client.post("/admin/model/rollback", headers=AUTH)
    assert response.status_code == 200, response.text
    assert response.json()["message"] == f"Rolled back to model {before}."
    assert info(client)["version"] == before


# ---- rejections ----


REJECTS = [
    pytest.param(
        lambda: np.random.default_rng(7).bytes(5000), "not a loadable ONNX model", id="random"
    ),
    pytest.param(
        lambda: BUNDLED.read_bytes()[: BUNDLED.stat().st_size * 2 // 3],
        "not a loadable ONNX model",
        id="truncated",
    ),
    pytest.param(
        lambda: mlp_bytes("unknown-labels", seed=3, labels=(*LABELS[:-1], NOT_A_HOBBY)),
        "not hobbies of the active catalogue",
        id="unknown-label",
    ),
    pytest.param(input_width_3, "input shape must be [batch, 4]", id="input-width-3"),
    pytest.param(without_metadata, "metadata 'hollang.format' is missing", id="no-metadata"),
    pytest.param(nan_bias, "non-finite", id="nan-bias"),
]


@pytest.mark.parametrize("multipart", [False, True], ids=["raw", "multipart"])
@pytest.mark.parametrize(("make", "reason"), REJECTS)
def test_a_bad_model_is_refused_and_the_old_one_keeps_serving(
    service: RunningService, client: httpx.Client, make: Any, reason: str, multipart: bool
) -> None:
    before = info(client)
    response = upload(client, make(), multipart=multipart)
    assert response.status_code == 422, response.text
    body = response.json()
    assert body["message"].startswith("Model rejected: ")
    assert reason in body["message"]
    assert info(client) == before
    assert predicted_version(client) == before["version"]
    assert status(client)["pointer"]["active"]["sha256"] == before["sha256"]


@pytest.mark.parametrize(
    ("content_type", "body", "says"),
    [
        pytest.param("multipart/form-data", b"--x\r\n", "Missing boundary", id="no boundary"),
        pytest.param("multipart/form-data; boundary=x", b"garbage", "malformed", id="garbage"),
    ],
)
def test_a_malformed_multipart_upload_says_what_is_wrong(
    client: httpx.Client, content_type: str, body: bytes, says: str
) -> None:
    before = info(client)
    response = client.post(
        "/admin/model", content=body, headers={**AUTH, "Content-Type": content_type}
    )
    assert response.status_code == 400
    message = response.json()["message"]
    assert "multipart form is malformed" in message and says in message
    assert "JSON" not in response.text
    assert info(client) == before


def test_multipart_without_the_file_field_is_a_400(client: httpx.Client) -> None:
    before = info(client)
    response = client.post(
        "/admin/model",
        files={
            "model": ("model.onnx", mlp_bytes("wrong-field", seed=5), "application/octet-stream")
        },
        headers=AUTH,
    )
    assert response.status_code == 400
    assert "'file'" in response.json()["message"]
    assert client.post("/admin/model", content=b"", headers=RAW).status_code == 400
    assert info(client) == before


def test_a_published_version_cannot_be_reused_with_other_bytes(
    service: RunningService, client: httpx.Client
) -> None:
    original = mlp_bytes("conflict-1", seed=11)
    assert upload(client, original).status_code == 200
    before = info(client)
    assert before["version"] == "conflict-1"

    response = upload(client, mlp_bytes("conflict-1", seed=12))
    assert response.status_code == 422
    assert "already published with different content" in response.json()["message"]
    assert info(client) == before
    assert recorded_version(service, client) == "conflict-1"

    # the same bytes again are fine: publishing is idempotent
    response = upload(client, original, multipart=True)
    assert response.status_code == 200, response.text
    assert info(client)["sha256"] == hashlib.sha256(original).hexdigest()


# ---- swaps under load, through HTTP ----


def test_uploads_and_a_rollback_under_concurrent_predicts_fail_no_request(
    service: RunningService,
) -> None:
    models = {f"load-{n}": mlp_bytes(f"load-{n}", seed=100 + n) for n in (1, 2, 3)}
    scores = (2, 3, 1, 0)
    expected = {version: local_logits(data, scores) for version, data in models.items()}
    body = {"testResponseDetails": answers_for(scores)}

    async def scenario() -> tuple[list[httpx.Response], list[httpx.Response]]:
        # A fresh connection per request: httpx's pool is slow to reuse hundreds of idle
        # keep-alive connections at once, which would only slow the test down.
        limits = httpx.Limits(max_connections=400, max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=service.url, timeout=30, limits=limits) as client:

            async def upload_async(data: bytes) -> httpx.Response:
                return await client.post("/admin/model", content=data, headers=RAW)

            operations = [
                lambda: upload_async(models["load-1"]),
                lambda: upload_async(models["load-2"]),
                lambda: upload_async(models["load-3"]),
                lambda: client.post("/admin/model/rollback", headers=AUTH),
            ]
            predicts: list[asyncio.Task[httpx.Response]] = []
            admin: list[httpx.Response] = []
            # 300 predicts in 5 waves of 60; each admin operation runs while a wave is in flight
            for operation in [*operations, None]:
                predicts += [
                    asyncio.create_task(client.post("/predict", json=body)) for _ in range(60)
                ]
                await asyncio.sleep(0.005)
                if operation is not None:
                    admin.append(await operation())
            return list(await asyncio.gather(*predicts)), admin

    predicts, admin = asyncio.run(scenario())
    assert [r.status_code for r in admin] == [200, 200, 200, 200], [r.text for r in admin]
    assert admin[-1].json()["data"]["active"]["modelVersion"] == "load-2"
    assert len(predicts) == 300
    failures = [(r.status_code, r.text[:200]) for r in predicts if r.status_code != 200]
    assert failures == []
    seen: dict[str, int] = {}
    for response in predicts:
        data = response.json()["data"]
        version = data["modelVersion"]
        seen[version] = seen.get(version, 0) + 1
        if version in expected:  # each answer is the claimed model's own
            served = {h["key"]: h["score"] for h in data["hobbies"]}
            for key, score in expected[version].items():
                assert served[key] == pytest.approx(score, rel=1e-5, abs=1e-5)
    assert len(seen) >= 2, seen
    with service.client() as client:
        assert info(client)["version"] == "load-2"


# ---- separately configured servers ----


@pytest.fixture
def small_limit_service(tmp_path: Path, database_url: str) -> Iterator[RunningService]:
    settings = make_settings(tmp_path, database_url, admin_token=TOKEN, max_model_bytes=2048)
    yield from start_service(settings)


@pytest.fixture
def no_admin_service(tmp_path: Path, database_url: str) -> Iterator[RunningService]:
    yield from start_service(make_settings(tmp_path, database_url))


def test_an_oversize_upload_is_a_413(small_limit_service: RunningService) -> None:
    big = mlp_bytes("too-big", seed=21)
    assert len(big) > 2048
    with small_limit_service.client() as client:
        before = info(client)
        for response in (
            upload(client, big),
            upload(client, big, multipart=True),
            # chunked, without a Content-Length: the limit holds while streaming
            client.post(
                "/admin/model",
                content=iter([big[:1000], big[1000:2000], big[2000:]]),
                headers=RAW,
            ),
        ):
            assert response.status_code == 413, response.text
            assert response.json()["message"] == "The model file is larger than 2048 bytes."
        assert info(client) == before
        assert predicted_version(client) == before["version"]
        # nothing uploaded, so nothing to roll back to
        response = client.post("/admin/model/rollback", headers=AUTH)
        assert response.status_code == 409
        assert "no previous model version" in response.json()["message"]
        # a model under the limit is accepted
        small = mlp_bytes("small-1", seed=22, labels=LABELS[:3])
        assert len(small) <= 2048
        response = upload(client, small)
        assert response.status_code == 200, response.text
        assert info(client)["version"] == "small-1"


def model_of_size(size: int) -> bytes:
    """A valid 3-label model of exactly `size` bytes (padded through its description)."""
    rng = np.random.default_rng(23)
    layers = [(rng.normal(size=(3, 4)), rng.normal(size=3))]
    for pad in range(size):
        meta = ModelMetadata("exact-size", LABELS[:3], description="x" * pad)
        data = build_mlp(layers, meta)
        if len(data) >= size:
            assert len(data) == size
            return data
    raise AssertionError("cannot pad to that size")


def test_a_file_of_exactly_the_limit_is_accepted_as_multipart_too(
    small_limit_service: RunningService,
) -> None:
    data = model_of_size(2048)
    with small_limit_service.client() as client:
        response = upload(client, data)
        assert response.status_code == 200, response.text  # raw: accepted
        response = upload(client, data, multipart=True)
        assert response.status_code == 200, response.text  # multipart: refused with the bug


def test_without_an_admin_token_the_admin_api_does_not_exist(
    no_admin_service: RunningService,
) -> None:
    with no_admin_service.client() as client:
        assert client.get("/admin/model").status_code == 404
        assert client.get("/admin/model", headers=AUTH).status_code == 404
        response = client.post("/admin/model", content=mlp_bytes("x-1", seed=1), headers=RAW)
        assert response.status_code == 404
        assert client.post("/admin/model/rollback", headers=AUTH).status_code == 404
        paths = client.get("/openapi.json").json()["paths"]
        assert "/predict" in paths  # the document itself is there
        assert not [path for path in paths if path.startswith("/admin")]
        assert info(client)["version"] == ModelFile.read(BUNDLED).metadata.model_version
