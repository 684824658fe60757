"""Surveys of one recommendation racing each other, through two replicas of one database.

The contract says a second survey of a hobby replaces the first (original-api.md), so two
at once are not a conflict to refuse: they are applied one after the other (the hobby rows
are locked first) and the last one stands. What must never happen is a second survey row
for one hobby, a lost link, or a 5xx.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from sqlalchemy import func, select

from db.models import RecommendationHobby, Survey
from tests.helpers import (
    RunningService,
    make_settings,
    owner,
    start_service,
    stored_counts,
    submission,
)


@pytest.fixture
def replica(service: RunningService, tmp_path: Path) -> Iterator[RunningService]:
    yield from start_service(make_settings(tmp_path, service.settings.resolved_database_url))


def new_recommendation(service: RunningService) -> tuple[int, list[int], dict[str, str]]:
    """Its id, its hobbies and the header that owns its survey."""
    with service.client() as client:
        created = client.post("/test-responses", json=submission("설문")).json()["data"]
        recommendation_id = created["recommendation"]["id"]
        shown = client.get(f"/recommendations/{recommendation_id}").json()
    hobbies = [h["id"] for h in shown["data"]["recommendation"]["hobbies"]]
    return recommendation_id, hobbies, owner(created)


def survey_rows(service: RunningService, recommendation_id: int) -> dict[int, int | None]:
    """hobby id -> satisfaction of its survey (None when not surveyed)."""
    with service.db.read() as session:
        rows = session.execute(
            select(RecommendationHobby.hobby_id, Survey.satisfaction)
            .outerjoin(Survey, Survey.id == RecommendationHobby.survey_id)
            .where(RecommendationHobby.recommendation_id == recommendation_id)
        ).all()
    return {row.hobby_id: row.satisfaction for row in rows}


def race(
    services: list[RunningService],
    recommendation_id: int,
    bodies: list[dict],  # type: ignore[type-arg]
    token: dict[str, str],
) -> list[httpx.Response]:
    async def run() -> list[httpx.Response]:
        clients = [s.async_client() for s in services]
        try:
            return await asyncio.gather(
                *(
                    clients[i % len(clients)].post(
                        f"/recommendations/{recommendation_id}/surveys", json=body, headers=token
                    )
                    for i, body in enumerate(bodies)
                )
            )
        finally:
            for client in clients:
                await client.aclose()

    return asyncio.run(run())


def test_racing_surveys_of_one_hobby_leave_one_survey_row(
    service: RunningService, replica: RunningService
) -> None:
    recommendation_id, hobbies, token = new_recommendation(service)
    before = stored_counts(service)
    satisfactions = [1 + i % 5 for i in range(20)]
    bodies = [
        {"survey": {"hobbies": [{"id": hobbies[0], "satisfaction": s}]}} for s in satisfactions
    ]
    responses = race([service, replica], recommendation_id, bodies, token)
    assert [r.status_code for r in responses] == [200] * len(bodies), [r.text for r in responses]
    after = stored_counts(service)
    assert after["survey"] - before["survey"] == 1  # replaced in place, never duplicated
    assert after["surveyed_links"] - before["surveyed_links"] == 1
    rows = survey_rows(service, recommendation_id)
    assert rows[hobbies[0]] in satisfactions
    assert rows[hobbies[1]] is None and rows[hobbies[2]] is None
    with service.client() as client:
        shown = client.get(f"/recommendations/{recommendation_id}").json()["data"]
    assert shown["recommendation"]["didSurvey"] is True


def test_racing_surveys_of_different_hobbies_all_land(
    service: RunningService, replica: RunningService
) -> None:
    recommendation_id, hobbies, token = new_recommendation(service)
    before = stored_counts(service)
    bodies = [
        {"survey": {"hobbies": [{"id": hobbies[i % 3], "satisfaction": 5 - i % 3}]}}
        for i in range(12)
    ] + [
        {"survey": {"hobbies": [{"id": h, "satisfaction": 5 - i} for i, h in enumerate(hobbies)]}}
        for _ in range(4)
    ]
    responses = race([service, replica], recommendation_id, bodies, token)
    assert {r.status_code for r in responses} == {200}, [r.text for r in responses]
    after = stored_counts(service)
    assert after["survey"] - before["survey"] == 3
    assert after["surveyed_links"] - before["surveyed_links"] == 3
    # Every hobby got one of the values sent for it (each body rates hobby i as 5 - i).
    assert survey_rows(service, recommendation_id) == {h: 5 - i for i, h in enumerate(hobbies)}
    with service.db.read() as session:
        orphans = session.scalar(
            select(func.count())
            .select_from(Survey)
            .where(
                ~Survey.id.in_(
                    select(RecommendationHobby.survey_id).where(
                        RecommendationHobby.survey_id.is_not(None)
                    )
                )
            )
        )
    assert orphans == 0
