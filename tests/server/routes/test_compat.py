"""What the first-generation clients and every browser client need (original-api.md).

The singular `testResponseDetail` key, short names, `name` on every hobby,
`threeDimensionImageUrl` on hobby types, `imageUrl` on questions and the CDN key layout of
image URLs; the survey flow and the hobby ranking checked against the stored rows; CORS.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db.models import (
    Answer,
    Hobby,
    Question,
    RecommendationHobby,
    Survey,
    TestResponse,
    TestResponseDetail,
    User,
)
from tests.helpers import RunningService, answers_for, owner, submission

ORIGIN = "https://hollang.example"


def ok(response: httpx.Response) -> Any:
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["code"] == "OK"
    return body["data"]


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


def submit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    return ok(client.post("/test-responses", json=body))  # type: ignore[no-any-return]


def recommendation(client: httpx.Client, recommendation_id: int) -> dict[str, Any]:
    data = ok(client.get(f"/recommendations/{recommendation_id}"))
    return data["recommendation"]  # type: ignore[no-any-return]


def stored_name(service: RunningService, user_id: int) -> str:
    with service.db.read() as session:
        user = session.get(User, user_id)
    assert user is not None
    return user.name


# ---- POST /test-responses: the first generation's body ----


def test_singular_details_key_is_accepted(service: RunningService, client: httpx.Client) -> None:
    scores = (3, 0, 1, 2)
    body = {"user": {"name": "일세대"}, "testResponseDetail": answers_for(scores)}
    created = submit(client, body)
    shown = recommendation(client, created["recommendation"]["id"])
    assert shown["scores"] == {"scoreE": 3, "scoreN": 0, "scoreF": 1, "scoreJ": 2}
    assert shown["hobbyType"]["mbtiType"] == "ESTJ"
    with service.db.read() as session:
        chosen = session.execute(
            select(Question.number, Answer.number)
            .select_from(TestResponseDetail)
            .join(TestResponse, TestResponse.id == TestResponseDetail.test_response_id)
            .join(Answer, Answer.id == TestResponseDetail.answer_id)
            .join(Question, Question.id == Answer.question_id)
            .where(TestResponse.user_id == created["user"]["id"])
        ).all()
    assert sorted(chosen) == sorted(
        (d["questionNumber"], d["answerNumber"]) for d in body["testResponseDetail"]
    )


def test_singular_details_key_reports_errors_under_the_key_sent(client: httpx.Client) -> None:
    details = answers_for((1, 1, 1, 1))
    details[5]["answerNumber"] = 7
    response = client.post(
        "/test-responses", json={"user": {"name": "일세대"}, "testResponseDetail": details}
    )
    assert response.status_code == 400
    fields = {item["field"] for item in response.json()["errors"]}
    assert fields == {"testResponseDetail[5].answerNumber"}


@pytest.mark.parametrize(
    ("sent", "stored"),
    [
        ("홍", "홍"),
        ("홍길", "홍길"),
        ("홍길동", "홍길동"),
        ("abc", "abc"),
        ("홍길동전설", "홍길동전설"),
        (" 홍길동 ", "홍길동"),
        ("\t홍길동\n", "홍길동"),
        ("  가나다라마  ", "가나다라마"),
        ("홍 길동", "홍 길동"),
    ],
)
def test_short_names_are_accepted_and_stored_stripped(
    service: RunningService, client: httpx.Client, sent: str, stored: str
) -> None:
    created = submit(client, submission(sent))
    assert created["user"]["name"] == stored
    assert stored_name(service, created["user"]["id"]) == stored
    assert recommendation(client, created["recommendation"]["id"])["user"]["name"] == stored
    shared = ok(client.get(f"/recommendations/{created['recommendation']['id']}/shares"))
    assert shared["recommendation"]["user"]["name"] == stored


# ---- the first generation's fields ----


def test_questions_carry_an_image_url_under_the_cdn_key_layout(client: httpx.Client) -> None:
    questions = ok(client.get("/tests"))["test"]["questions"]
    assert len(questions) == 12
    for question in questions:
        assert question["imageUrl"].endswith(f"images/question/question{question['number']}.JPG")


def test_questions_keep_the_nickname_placeholder(client: httpx.Client) -> None:
    questions = ok(client.get("/tests"))["test"]["questions"]
    assert any("000" in question["content"] for question in questions)


def check_type(hobby_type: dict[str, Any]) -> None:
    mbti = hobby_type["mbtiType"]
    assert isinstance(hobby_type["name"], str) and hobby_type["name"]
    assert hobby_type["imageUrl"].endswith(f"images/hobby_type/{mbti}.png")
    assert hobby_type["threeDimensionImageUrl"].endswith(f"images/hobby_type/{mbti}.gif")
    # first-generation clients read the MBTI code from the letters' position in the URL
    assert hobby_type["imageUrl"][-8:-4] == mbti


def check_first_generation_hobby(hobby: dict[str, Any]) -> None:
    assert isinstance(hobby["id"], int)
    assert hobby["name"] == hobby["shortName"]
    assert isinstance(hobby["name"], str) and hobby["name"]
    assert isinstance(hobby["description"], str) and hobby["description"]
    assert isinstance(hobby["imageUrl"], str) and "/images/hobby/" in hobby["imageUrl"]


@pytest.mark.parametrize("scores", [(0, 0, 0, 0), (3, 3, 3, 3), (2, 0, 2, 0), (1, 3, 0, 2)])
def test_recommendation_fits_the_first_generation_data_model(
    client: httpx.Client, scores: tuple[int, int, int, int]
) -> None:
    created = submit(client, submission("모델", scores))
    recommendation_id = created["recommendation"]["id"]
    shown = recommendation(client, recommendation_id)
    check_type(shown["hobbyType"])
    assert len(shown["fitHobbyTypes"]) == 3
    for fit in shown["fitHobbyTypes"]:
        check_type(fit)
    assert len(shown["hobbies"]) == 3
    for hobby in shown["hobbies"]:
        check_first_generation_hobby(hobby)
    shared = ok(client.get(f"/recommendations/{recommendation_id}/shares"))["recommendation"]
    check_type(shared["hobbyType"])
    for hobby in shared["hobbies"]:
        check_first_generation_hobby(hobby)


def test_every_ranked_hobby_carries_name(client: httpx.Client) -> None:
    hobbies = ok(client.get("/hobbies", params={"size": 100}))["hobbies"]
    assert len(hobbies) == 19
    for hobby in hobbies:
        assert hobby["name"] == hobby["shortName"]
        assert isinstance(hobby["name"], str) and hobby["name"]


def test_predicted_hobbies_carry_name(client: httpx.Client) -> None:
    data = ok(client.post("/predict", json={"testResponseDetails": answers_for((1, 2, 3, 0))}))
    assert len(data["hobbies"]) == 19
    for hobby in data["hobbies"]:
        assert hobby["name"] == hobby["shortName"]


# ---- the survey flow ----


def survey_rows(service: RunningService, recommendation_id: int) -> dict[int, tuple[int, int]]:
    """hobby id -> (survey id, satisfaction) for the recommendation's surveyed hobbies."""
    with service.db.read() as session:
        rows = session.execute(
            select(RecommendationHobby.hobby_id, Survey.id, Survey.satisfaction)
            .join(Survey, Survey.id == RecommendationHobby.survey_id)
            .where(RecommendationHobby.recommendation_id == recommendation_id)
        ).all()
    return {hobby_id: (survey_id, satisfaction) for hobby_id, survey_id, satisfaction in rows}


def post_survey(
    client: httpx.Client,
    created: dict[str, Any],
    hobby: dict[str, Any],
    satisfaction: int,
) -> None:
    recommendation_id = created["recommendation"]["id"]
    body = {
        "survey": {
            "hobbies": [{"id": hobby["id"], "name": hobby["name"], "satisfaction": satisfaction}]
        }
    }
    path = f"/recommendations/{recommendation_id}/surveys"
    assert ok(client.post(path, json=body, headers=owner(created))) is None


def survey_count(service: RunningService) -> int:
    with service.db.read() as session:
        return int(session.scalar(select(func.count()).select_from(Survey)) or 0)


def test_survey_marks_the_recommendation_and_a_second_survey_replaces_the_first(
    service: RunningService, client: httpx.Client
) -> None:
    created = submit(client, submission("설문왕"))
    recommendation_id = created["recommendation"]["id"]
    shown = recommendation(client, recommendation_id)
    assert shown["didSurvey"] is False
    hobby = shown["hobbies"][0]
    surveys_before = survey_count(service)

    post_survey(client, created, hobby, 2)
    assert recommendation(client, recommendation_id)["didSurvey"] is True
    first = survey_rows(service, recommendation_id)
    assert list(first) == [hobby["id"]]
    assert first[hobby["id"]][1] == 2
    assert survey_count(service) == surveys_before + 1

    post_survey(client, created, hobby, 5)
    second = survey_rows(service, recommendation_id)
    assert list(second) == [hobby["id"]]
    assert second[hobby["id"]] == (first[hobby["id"]][0], 5)
    assert survey_count(service) == surveys_before + 1
    assert recommendation(client, recommendation_id)["didSurvey"] is True


def test_survey_of_all_three_hobbies_at_once(service: RunningService, client: httpx.Client) -> None:
    created = submit(client, submission("세개", (3, 3, 0, 0)))
    recommendation_id = created["recommendation"]["id"]
    hobbies = recommendation(client, recommendation_id)["hobbies"]
    body = {
        "survey": {
            "hobbies": [
                {"id": h["id"], "name": h["name"], "satisfaction": rating}
                for h, rating in zip(hobbies, (1, 3, 5), strict=True)
            ]
        }
    }
    path = f"/recommendations/{recommendation_id}/surveys"
    assert ok(client.post(path, json=body, headers=owner(created))) is None
    rows = survey_rows(service, recommendation_id)
    assert {hobby_id: satisfaction for hobby_id, (_, satisfaction) in rows.items()} == {
        hobbies[0]["id"]: 1,
        hobbies[1]["id"]: 3,
        hobbies[2]["id"]: 5,
    }
    assert len({survey_id for survey_id, _ in rows.values()}) == 3


def test_survey_of_one_recommendation_leaves_another_unsurveyed(client: httpx.Client) -> None:
    created = submit(client, submission("하나"))
    first = created["recommendation"]["id"]
    second = submit(client, submission("둘"))["recommendation"]["id"]
    hobby = recommendation(client, first)["hobbies"][2]
    post_survey(client, created, hobby, 4)
    assert recommendation(client, first)["didSurvey"] is True
    assert recommendation(client, second)["didSurvey"] is False


# ---- the hobby ranking ----


def stored_recommend_counts(service: RunningService) -> tuple[dict[int, int], dict[int, int]]:
    """(hobby id -> recommend_count, hobby id -> recommendation_hobby rows) for active hobbies."""
    with service.db.read() as session:
        active = select(Hobby.id, Hobby.recommend_count).where(Hobby.active.is_(True))
        counts = {hobby_id: count for hobby_id, count in session.execute(active)}
        per_hobby = select(RecommendationHobby.hobby_id, func.count()).group_by(
            RecommendationHobby.hobby_id
        )
        links = {hobby_id: count for hobby_id, count in session.execute(per_hobby)}
    return counts, {hobby_id: links.get(hobby_id, 0) for hobby_id in counts}


def test_ranking_counts_match_the_stored_recommendations(
    service: RunningService, client: httpx.Client
) -> None:
    for scores in [(0, 0, 0, 0), (3, 3, 3, 3), (1, 2, 3, 0), (3, 0, 0, 3), (2, 2, 0, 1)]:
        submit(client, submission("랭킹", scores))
    data = ok(client.get("/hobbies", params={"sort": "recommendCount", "size": 100}))
    hobbies = data["hobbies"]
    counts, links = stored_recommend_counts(service)
    assert data["totalCount"] == len(hobbies) == len(counts) == 19
    assert {h["id"]: h["recommendCount"] for h in hobbies} == counts == links
    ranked = [h["recommendCount"] for h in hobbies]
    assert ranked == sorted(ranked, reverse=True)
    assert len(set(ranked)) > 1  # enough submissions that the order means something
    # ties are broken by id, the same way in every tie
    directions = set()
    for count in set(ranked):
        ids = [h["id"] for h in hobbies if h["recommendCount"] == count]
        if len(ids) > 1:
            assert ids in (sorted(ids), sorted(ids, reverse=True)), ids
            directions.add(ids == sorted(ids))
    assert len(directions) <= 1


def test_paging_returns_each_active_hobby_exactly_once(
    service: RunningService, client: httpx.Client
) -> None:
    submit(client, submission("페이지", (2, 3, 1, 0)))
    for sort in ["recommendCount", "recommendCount,asc", "id", "shortName", "createdAt"]:
        seen: list[int] = []
        page = 0
        while True:
            data = ok(client.get("/hobbies", params={"page": page, "size": 5, "sort": sort}))
            assert data["page"] == page and data["size"] == 5
            assert len(data["hobbies"]) <= 5
            if not data["hobbies"]:
                break
            seen.extend(h["id"] for h in data["hobbies"])
            page += 1
        counts, _ = stored_recommend_counts(service)
        assert page == 4, sort  # 19 hobbies in pages of 5
        assert sorted(seen) == sorted(counts), sort
        assert len(seen) == len(set(seen)) == data["totalCount"] == 19


def test_ranking_is_the_same_on_every_read(client: httpx.Client) -> None:
    first = ok(client.get("/hobbies", params={"size": 100}))["hobbies"]
    second = ok(client.get("/hobbies", params={"size": 100}))["hobbies"]
    assert first == second


# ---- CORS ----


PREFLIGHT = {
    "Origin": ORIGIN,
    "Access-Control-Request-Method": "POST",
    "Access-Control-Request-Headers": "content-type",
}


@pytest.mark.parametrize(
    "path", ["/test-responses", "/recommendations/1/surveys", "/predict", "/tests"]
)
def test_preflight_of_a_post_is_allowed(client: httpx.Client, path: str) -> None:
    response = client.options(path, headers=PREFLIGHT)
    assert 200 <= response.status_code < 300
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert "POST" in response.headers["access-control-allow-methods"]
    allowed = [
        h.strip().lower() for h in response.headers["access-control-allow-headers"].split(",")
    ]
    assert "content-type" in allowed


def test_simple_request_from_a_listed_origin_gets_the_allow_origin_header(
    client: httpx.Client,
) -> None:
    response = client.get("/tests", headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN


def test_post_from_a_listed_origin_gets_the_allow_origin_header(client: httpx.Client) -> None:
    response = client.post("/test-responses", json=submission("코스"), headers={"Origin": ORIGIN})
    assert response.status_code == 200
    assert response.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/nope", 404),
        ("GET", "/recommendations/999999999", 404),
        ("GET", "/recommendations/abc", 400),
        ("DELETE", "/tests", 405),
    ],
)
def test_error_responses_carry_cors_headers_too(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    response = client.request(method, path, headers={"Origin": ORIGIN})
    assert response.status_code == status
    assert response.headers["access-control-allow-origin"] == ORIGIN


def test_invalid_submission_from_a_listed_origin_carries_cors_headers(
    client: httpx.Client,
) -> None:
    response = client.post("/test-responses", json={"user": {}}, headers={"Origin": ORIGIN})
    assert response.status_code == 400
    assert response.headers["access-control-allow-origin"] == ORIGIN


@pytest.mark.parametrize(
    "origin", ["https://evil.example", "http://hollang.example", "https://hollang.example.evil"]
)
def test_unlisted_origin_gets_no_allow_origin_header(client: httpx.Client, origin: str) -> None:
    response = client.get("/tests", headers={"Origin": origin})
    assert response.status_code == 200
    assert "access-control-allow-origin" not in response.headers
    preflight = client.options("/test-responses", headers={**PREFLIGHT, "Origin": origin})
    assert "access-control-allow-origin" not in preflight.headers


def test_browsers_may_read_the_request_id_and_replay_headers(client: httpx.Client) -> None:
    response = client.get("/tests", headers={"Origin": ORIGIN})
    exposed = {
        h.strip().lower() for h in response.headers["access-control-expose-headers"].split(",")
    }
    assert {"x-request-id", "idempotent-replayed"} <= exposed
