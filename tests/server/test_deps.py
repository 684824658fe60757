"""The narrow dependencies (`server/deps.py`): each route takes the piece its signature
names, so `app.dependency_overrides` replaces exactly that piece on a running server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi import FastAPI

from cli.context import prepare_database
from db.session import Database
from server.catalog_view import CatalogCache
from server.deps import get_catalog, get_database
from server.images import ImageUrls
from tests.helpers import RunningService, make_settings, start_service, submission

CDN = "https://cdn.hollang.example"


@pytest.fixture
def running(database_url: str, tmp_path: Path) -> Iterator[RunningService]:
    yield from start_service(make_settings(tmp_path, database_url))


def app_of(service: RunningService) -> FastAPI:
    app: FastAPI = service.server.config.loaded_app.app  # type: ignore[union-attr]
    return app


def image_urls(recommendation: dict) -> list[str]:  # type: ignore[type-arg]
    hobby_type = recommendation["hobbyType"]
    return [
        hobby_type["imageUrl"],
        hobby_type["threeDimensionImageUrl"],
        *(hobby["imageUrl"] for hobby in recommendation["hobbies"]),
        *(fit["imageUrl"] for fit in recommendation["fitHobbyTypes"]),
    ]


def without_catalogue(recommendation: dict) -> dict:  # type: ignore[type-arg]
    """The parts of a recommendation that come from its stored row alone."""
    catalogue = ("hobbyType", "hobbies", "fitHobbyTypes")
    return {k: v for k, v in recommendation.items() if k not in catalogue}


def test_overriding_the_catalogue_changes_what_the_routes_answer(
    running: RunningService,
) -> None:
    """A catalogue cache of the same catalogue, with CDN image URLs: GET /recommendations
    and GET /tests answer from it; the rest (the stored row, the test) is the real one."""
    app = app_of(running)
    served = running.app_services.catalog
    cdn = CatalogCache(
        lambda: served.catalog,
        lambda: served.catalog.catalog_id,
        ImageUrls.from_setting(CDN),
    )
    with running.client() as client:
        created = client.post("/test-responses", json=submission())
        assert created.status_code == 200, created.text
        path = f"/recommendations/{created.json()['data']['recommendation']['id']}"
        before = client.get(path).json()["data"]["recommendation"]
        assert all(url.startswith("/images/") for url in image_urls(before))

        app.dependency_overrides[get_catalog] = lambda: cdn
        try:
            after = client.get(path).json()["data"]["recommendation"]
            questions = client.get("/tests").json()["data"]["test"]["questions"]
        finally:
            app.dependency_overrides.clear()
        assert all(
            url == CDN + old for url, old in zip(image_urls(after), image_urls(before), strict=True)
        )
        assert without_catalogue(after) == without_catalogue(before)
        assert all(q["imageUrl"].startswith(f"{CDN}/images/question/") for q in questions)
        assert client.get(path).json()["data"]["recommendation"] == before


def test_overriding_the_database_changes_what_the_routes_read(
    running: RunningService, tmp_path: Path
) -> None:
    """Another real (migrated, seeded, empty) database in place of the service's: the stored
    recommendation is not there, so `StoredRecommendationDep`, which reads through
    `DatabaseDep`, answers the standard 404; the count reads it too."""
    other_dir = tmp_path / "other"
    other_url = f"sqlite:///{other_dir / 'other.db'}"
    prepare_database(make_settings(other_dir, other_url))
    other = Database(other_url)
    app = app_of(running)
    try:
        with running.client() as client:
            created = client.post("/test-responses", json=submission())
            assert created.status_code == 200, created.text
            recommendation_id = created.json()["data"]["recommendation"]["id"]
            path = f"/recommendations/{recommendation_id}"
            assert client.get(path).status_code == 200
            assert client.get("/test-responses/count").json()["data"]["testResponse"] == {
                "count": 1
            }

            app.dependency_overrides[get_database] = lambda: other
            try:
                missing = client.get(path)
                shared = client.get(f"{path}/shares")
                count = client.get("/test-responses/count").json()["data"]["testResponse"]
            finally:
                app.dependency_overrides.clear()
            assert missing.status_code == 404
            assert missing.json() == {
                "code": "NOT_FOUND",
                "message": f"Recommendation {recommendation_id} does not exist.",
            }
            assert shared.status_code == 404
            assert count == {"count": 0}
            assert client.get(path).status_code == 200
    finally:
        other.dispose()
