"""A broken model file never takes the service down and never writes half a record."""

from __future__ import annotations

import json
from pathlib import Path

from sqlalchemy import func, select

from db.models import TestResponse, User
from server.settings import BUNDLED_MODEL
from tests.helpers import make_settings, start_service, submission

TOKEN = {"Authorization": "Bearer t"}


def test_broken_initial_model_starts_unready_and_recovers_by_upload(tmp_path: Path) -> None:
    broken = tmp_path / "broken.onnx"
    broken.write_bytes(BUNDLED_MODEL.read_bytes()[:500])  # truncated
    settings = make_settings(
        tmp_path, f"sqlite:///{tmp_path / 'h.db'}", model_path=broken, admin_token="t"
    )
    for service in start_service(settings):
        with service.client() as client:
            ready = client.get("/health/ready")
            assert ready.status_code == 503
            assert "model not loaded" in ready.json()["message"]
            assert "not a loadable ONNX model" in ready.json()["message"]
            assert client.get("/tests").status_code == 200  # the catalogue still serves

            refused = client.post("/test-responses", json=submission())
            assert refused.status_code == 503
            assert refused.json()["code"] == "SERVICE_UNAVAILABLE"
            assert refused.headers["retry-after"]
            with service.db.read() as session:
                assert session.scalar(select(func.count()).select_from(User)) == 0
                assert session.scalar(select(func.count()).select_from(TestResponse)) == 0

            uploaded = client.post(
                "/admin/model", content=BUNDLED_MODEL.read_bytes(), headers=TOKEN
            )
            assert uploaded.status_code == 200, uploaded.text
            assert client.get("/health/ready").status_code == 200
            assert client.post("/test-responses", json=submission()).status_code == 200


def test_corrupted_active_model_falls_back_to_initial_model(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'h.db'}"
    settings = make_settings(tmp_path, url)
    for service in start_service(settings):
        with service.client() as client:
            assert client.get("/health/ready").status_code == 200
    pointer = json.loads((settings.objects_dir / "models" / "active.json").read_text())
    stored = settings.objects_dir / pointer["active"]["key"]
    stored.write_bytes(stored.read_bytes()[:-10] + b"0123456789")  # bit rot

    for service in start_service(settings):
        with service.client() as client:
            info = client.get("/info").json()["data"]
            assert "corrupted" in info["model"]["lastError"]
            assert info["model"]["version"] == "hollang-default-1"  # the initial file serves
            assert client.get("/health/ready").status_code == 200
            assert client.post("/test-responses", json=submission()).status_code == 200
