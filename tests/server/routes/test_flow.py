"""The whole user journey, concurrent submissions, and a fault midway through a write."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
from sqlalchemy import func, select, text

from db.models import (
    Hobby,
    Recommendation,
    RecommendationHobby,
    Survey,
    User,
)
from tests.helpers import RunningService, owner, stored_counts, submission


def test_take_read_share_survey_rank(service: RunningService) -> None:
    with service.client() as client:
        test = client.get("/tests").json()["data"]["test"]
        assert [q["number"] for q in test["questions"]] == list(range(1, 13))

        before = client.get("/hobbies", params={"size": 100}).json()["data"]["hobbies"]
        counts_before = {h["id"]: h["recommendCount"] for h in before}

        created = client.post("/test-responses", json=submission("여행자", (3, 0, 2, 1)))
        assert created.status_code == 200, created.text
        body = created.json()
        assert body["code"] == "OK"
        recommendation_id = body["data"]["recommendation"]["id"]
        assert body["data"]["user"]["name"] == "여행자"

        full = client.get(f"/recommendations/{recommendation_id}").json()["data"]["recommendation"]
        assert full["didSurvey"] is False
        assert full["hobbyType"]["mbtiType"] == "ESFP"
        assert [h["ranking"] for h in full["hobbies"]] == [1, 2, 3]
        assert full["scores"] == {"scoreE": 3, "scoreN": 0, "scoreF": 2, "scoreJ": 1}

        shared = client.get(f"/recommendations/{recommendation_id}/shares").json()["data"]
        shared = shared["recommendation"]
        assert [h["id"] for h in shared["hobbies"]] == [h["id"] for h in full["hobbies"]]
        assert "didSurvey" not in shared and "fitHobbyTypes" not in shared
        assert all("contentUrl" not in h for h in shared["hobbies"])

        first = full["hobbies"][0]
        survey = {
            "survey": {
                "hobbies": [{"id": first["id"], "name": first["shortName"], "satisfaction": 5}]
            }
        }
        answered = client.post(
            f"/recommendations/{recommendation_id}/surveys",
            json=survey,
            headers=owner(body["data"]),
        )
        assert answered.status_code == 200, answered.text
        assert answered.json()["data"] is None
        again = client.get(f"/recommendations/{recommendation_id}").json()["data"]
        assert again["recommendation"]["didSurvey"] is True

        after = client.get("/hobbies", params={"size": 100}).json()["data"]["hobbies"]
        counts_after = {h["id"]: h["recommendCount"] for h in after}
        recommended = {h["id"] for h in full["hobbies"]}
        for hobby_id, count in counts_after.items():
            expected = counts_before[hobby_id] + (1 if hobby_id in recommended else 0)
            assert count == expected, hobby_id
        ranked = [h["recommendCount"] for h in after]
        assert ranked == sorted(ranked, reverse=True)

    with service.db.read() as session:
        stored = session.get(Recommendation, recommendation_id)
        assert stored is not None
        assert stored.model_version == service.app_services.engine.model.version
        links = session.scalars(
            select(RecommendationHobby).where(
                RecommendationHobby.recommendation_id == recommendation_id
            )
        ).all()
        satisfied = [link for link in links if link.survey_id is not None]
        assert [link.hobby_id for link in satisfied] == [first["id"]]
        assert session.get(Survey, satisfied[0].survey_id).satisfaction == 5  # type: ignore[union-attr]


def test_fifty_concurrent_submissions_lose_no_increment(service: RunningService) -> None:
    before = stored_counts(service)

    async def submit_all() -> list[int]:
        async with service.async_client() as client:
            scores = [(i % 4, (i // 4) % 4, (i // 16) % 4, i % 3) for i in range(50)]
            responses = await asyncio.gather(
                *(
                    client.post("/test-responses", json=submission(f"동시{i}", s))
                    for i, s in enumerate(scores)
                )
            )
        return [response.status_code for response in responses]

    statuses = asyncio.run(submit_all())
    assert statuses == [200] * 50
    after = stored_counts(service)
    assert after["recommend_count_sum"] - before["recommend_count_sum"] == 150
    assert after["test_response"] - before["test_response"] == 50
    assert after["test_response_detail"] - before["test_response_detail"] == 600
    assert after["recommendation_hobby"] - before["recommendation_hobby"] == 150
    with service.db.read() as session:
        per_hobby = dict(
            session.execute(
                select(RecommendationHobby.hobby_id, func.count()).group_by(
                    RecommendationHobby.hobby_id
                )
            ).all()
        )
        for hobby in session.scalars(select(Hobby)):
            assert hobby.recommend_count == per_hobby.get(hobby.id, 0), hobby.original_name


POISON = "실패"


@pytest.fixture
def failing_last_insert(service: RunningService) -> Iterator[None]:
    """A real database trigger that aborts the LAST insert of a submission by user POISON."""
    with service.db.engine.begin() as connection:
        if connection.dialect.name == "sqlite":
            connection.exec_driver_sql(
                "CREATE TRIGGER fail_midway BEFORE INSERT ON recommendation_hobby "
                "WHEN (SELECT u.name FROM recommendation r JOIN user u ON u.id = r.user_id "
                f"WHERE r.id = NEW.recommendation_id) = '{POISON}' "
                "BEGIN SELECT RAISE(ABORT, 'injected fault'); END"
            )
        else:
            connection.exec_driver_sql(
                "CREATE TRIGGER fail_midway BEFORE INSERT ON recommendation_hobby FOR EACH ROW "
                "BEGIN IF (SELECT u.name FROM recommendation r JOIN `user` u ON u.id = r.user_id "
                f"WHERE r.id = NEW.recommendation_id) = '{POISON}' THEN "
                "SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'injected fault'; END IF; END"
            )
    try:
        yield
    finally:
        with service.db.engine.begin() as connection:
            connection.execute(text("DROP TRIGGER IF EXISTS fail_midway"))


def test_failure_midway_leaves_no_partial_rows(
    service: RunningService, failing_last_insert: None
) -> None:
    before = stored_counts(service)
    with service.client() as client:
        failed = client.post("/test-responses", json=submission(POISON))
        ok = client.post("/test-responses", json=submission("정상"))
    assert failed.status_code >= 500
    body = failed.json()
    assert set(body) == {"code", "message"}
    assert "injected" not in body["message"] and "INSERT" not in failed.text
    assert ok.status_code == 200
    after = stored_counts(service)
    # Only the healthy submission's rows exist: the failed one left nothing behind,
    # not even its user, details or the recommend_count increments done before the fault.
    assert after["user"] - before["user"] == 1
    assert after["test_response"] - before["test_response"] == 1
    assert after["test_response_detail"] - before["test_response_detail"] == 12
    assert after["recommendation"] - before["recommendation"] == 1
    assert after["recommend_count_sum"] - before["recommend_count_sum"] == 3
    with service.db.read() as session:
        assert (
            session.scalar(select(func.count()).select_from(User).where(User.name == POISON)) == 0
        )
