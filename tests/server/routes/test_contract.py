"""The success shape of every endpoint, field by field, against the original contract.

Each test talks to a real server (SQLite and MariaDB) and checks what it answers against
the stored rows and the bundled catalogue. The module shares one server per backend, so
tests assert on deltas and on rows they created themselves.
"""

from __future__ import annotations

import json
import random
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from db.catalog import DEFAULT_CATALOG
from db.models import (
    Answer,
    Hobby,
    HobbyType,
    Question,
    Recommendation,
    RecommendationHobby,
    Survey,
    Test,
    TestResponse,
    TestResponseDetail,
    User,
)
from tests.helpers import RunningService, answers_for, owner, stored_counts, submission

CATALOG = json.loads(DEFAULT_CATALOG.read_text(encoding="utf-8"))
TYPES_BY_MBTI = {t["mbtiType"]: t for t in CATALOG["hobbyTypes"]}
HOBBIES_BY_KEY = {h["originalName"]: h for h in CATALOG["hobbies"]}


def ok(response: httpx.Response) -> Any:
    """The `data` of a success envelope, after checking the envelope itself."""
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert body["code"] == "OK"
    assert isinstance(body["message"], str) and body["message"]
    assert "data" in body
    return body["data"]


def mbti(scores: tuple[int, int, int, int]) -> str:
    """The original's rule, written out independently of the service's code."""
    return "".join(
        high if score >= 2 else low for score, high, low in zip(scores, "ENFJ", "ISTP", strict=True)
    )


def is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def api_count(client: httpx.Client) -> int:
    return int(ok(client.get("/test-responses/count"))["testResponse"]["count"])


def submit(client: httpx.Client, body: dict[str, Any]) -> dict[str, Any]:
    return ok(client.post("/test-responses", json=body))  # type: ignore[no-any-return]


def recommendation(client: httpx.Client, recommendation_id: int) -> dict[str, Any]:
    return ok(client.get(f"/recommendations/{recommendation_id}"))["recommendation"]  # type: ignore[no-any-return]


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


# ---- GET /tests ----


def test_get_tests_serves_twelve_ordered_questions_with_two_answers(
    service: RunningService, client: httpx.Client
) -> None:
    data = ok(client.get("/tests"))
    assert set(data) >= {"test"}
    test = data["test"]
    assert is_int(test["id"]) and test["version"] == 1
    questions = test["questions"]
    assert [q["number"] for q in questions] == list(range(1, 13))
    expected = {q["number"]: q for q in CATALOG["test"]["questions"]}
    for question in questions:
        assert set(question) >= {"id", "number", "content", "imageUrl", "answers"}
        assert is_int(question["id"])
        assert question["content"] == expected[question["number"]]["content"]
        assert question["imageUrl"].endswith(f"images/question/question{question['number']}.JPG")
        assert [a["number"] for a in question["answers"]] == [1, 2]
        for answer in question["answers"]:
            assert set(answer) >= {"id", "number", "content"}
            assert is_int(answer["id"])
            wanted = expected[question["number"]]["answers"][answer["number"] - 1]
            assert answer["content"] == wanted["content"]
    # the ids are the stored rows of test version 1
    with service.db.read() as session:
        test_row = session.scalars(select(Test).where(Test.version == 1)).one()
        stored = {
            q.number: q.id
            for q in session.scalars(select(Question).where(Question.test_id == test_row.id))
        }
        stored_answers = {
            (a.question_id, a.number): a.id
            for a in session.scalars(select(Answer).where(Answer.question_id.in_(stored.values())))
        }
    assert test["id"] == test_row.id
    assert {q["number"]: q["id"] for q in questions} == stored
    for question in questions:
        for answer in question["answers"]:
            assert stored_answers[(question["id"], answer["number"])] == answer["id"]


def test_get_tests_version_1_is_the_default(client: httpx.Client) -> None:
    assert ok(client.get("/tests?version=1")) == ok(client.get("/tests"))


def test_get_tests_unknown_version_is_not_found(client: httpx.Client) -> None:
    response = client.get("/tests", params={"version": 99})
    assert response.status_code == 404
    body = response.json()
    assert body["code"] == "NOT_FOUND"
    assert isinstance(body["message"], str) and body["message"]
    assert "data" not in body


# ---- POST /test-responses and GET /test-responses/count ----


def test_post_test_response_answers_user_and_recommendation_ids(client: httpx.Client) -> None:
    data = submit(client, submission("계약"))
    assert set(data) >= {"user", "recommendation"}
    assert set(data["user"]) >= {"id", "name"}
    assert is_int(data["user"]["id"]) and data["user"]["name"] == "계약"
    assert set(data["recommendation"]) >= {"id"}
    assert is_int(data["recommendation"]["id"])


def test_count_increments_by_exactly_one_per_submission(client: httpx.Client) -> None:
    data = ok(client.get("/test-responses/count"))
    assert set(data) >= {"testResponse"}
    assert is_int(data["testResponse"]["count"])
    before = data["testResponse"]["count"]
    for expected in range(before + 1, before + 4):
        submit(client, submission("셈"))
        assert api_count(client) == expected


def test_count_equals_stored_test_responses(service: RunningService, client: httpx.Client) -> None:
    submit(client, submission("행수"))
    with service.db.read() as session:
        stored = session.scalar(select(func.count()).select_from(TestResponse))
    assert api_count(client) == stored


def test_one_submission_stores_exactly_its_rows(
    service: RunningService, client: httpx.Client
) -> None:
    scores = (1, 3, 0, 2)
    details = answers_for(scores)
    random.Random(7).shuffle(details)
    before = stored_counts(service)
    data = submit(client, {"user": {"name": "저장"}, "testResponseDetails": details})
    after = stored_counts(service)
    assert {k: after[k] - before[k] for k in after} == {
        "user": 1,
        "test_response": 1,
        "test_response_detail": 12,
        "recommendation": 1,
        "recommendation_hobby": 3,
        "survey": 0,
        "surveyed_links": 0,
        "recommend_count_sum": 3,
    }
    user_id, recommendation_id = data["user"]["id"], data["recommendation"]["id"]
    model_version = ok(client.get("/info"))["model"]["version"]
    shown = recommendation(client, recommendation_id)
    submitted = {d["questionNumber"]: d["answerNumber"] for d in details}
    with service.db.read() as session:
        user = session.get(User, user_id)
        assert user is not None and user.name == "저장"
        responses = session.scalars(select(TestResponse).where(TestResponse.user_id == user_id))
        (response,) = responses.all()
        chosen = session.execute(
            select(Question.number, Answer.number, Question.test_id)
            .select_from(TestResponseDetail)
            .join(Answer, Answer.id == TestResponseDetail.answer_id)
            .join(Question, Question.id == Answer.question_id)
            .where(TestResponseDetail.test_response_id == response.id)
        ).all()
        stored = session.get(Recommendation, recommendation_id)
        links = session.scalars(
            select(RecommendationHobby)
            .where(RecommendationHobby.recommendation_id == recommendation_id)
            .order_by(RecommendationHobby.ranking)
        ).all()
        test_id = session.scalars(select(Test.id).where(Test.version == 1)).one()
        hobby_type = session.get(HobbyType, stored.hobby_type_id) if stored else None
    assert len(chosen) == 12
    assert {question: answer for question, answer, _ in chosen} == submitted
    assert {test for _, _, test in chosen} == {test_id}
    assert response.test_id == test_id
    assert stored is not None
    assert stored.test_response_id == response.id
    assert stored.user_id == user_id
    assert (stored.score_e, stored.score_n, stored.score_f, stored.score_j) == scores
    assert stored.model_version == model_version
    assert hobby_type is not None and hobby_type.mbti_type == mbti(scores) == "INTJ"
    assert stored.hobby_type_id == shown["hobbyType"]["id"]
    assert [link.ranking for link in links] == [1, 2, 3]
    assert [link.hobby_id for link in links] == [h["id"] for h in shown["hobbies"]]
    assert all(link.survey_id is None for link in links)


# ---- GET /recommendations/{id} ----


HOBBY_TYPE_KEYS = {"id", "name", "description", "imageUrl", "threeDimensionImageUrl", "mbtiType"}
HOBBY_KEYS = {
    "id",
    "originalName",
    "shortName",
    "name",
    "summary",
    "description",
    "imageUrl",
    "contentUrl",
    "ranking",
}


def check_hobby_type(service: RunningService, shown: dict[str, Any], mbti_type: str) -> None:
    assert set(shown) >= HOBBY_TYPE_KEYS
    assert shown["mbtiType"] == mbti_type
    assert shown["name"] == TYPES_BY_MBTI[mbti_type]["name"]
    assert shown["description"] == TYPES_BY_MBTI[mbti_type]["description"]
    assert shown["imageUrl"].endswith(f"images/hobby_type/{mbti_type}.png")
    assert shown["threeDimensionImageUrl"].endswith(f"images/hobby_type/{mbti_type}.gif")
    with service.db.read() as session:
        row = session.get(HobbyType, shown["id"])
    assert row is not None and row.mbti_type == mbti_type


def check_hobby(service: RunningService, shown: dict[str, Any], ranking: int) -> None:
    assert is_int(shown["id"])
    assert shown["ranking"] == ranking
    with service.db.read() as session:
        row = session.get(Hobby, shown["id"])
    assert row is not None
    assert shown["originalName"] == row.original_name
    doc = HOBBIES_BY_KEY[row.original_name]
    assert shown["shortName"] == doc["shortName"]
    assert shown["name"] == shown["shortName"]
    assert shown["summary"] == doc["summary"]
    assert shown["description"] == doc["description"]
    assert shown["imageUrl"].endswith(f"images/hobby/{doc['imageKey']}.png")


def test_recommendation_shape_field_by_field(service: RunningService, client: httpx.Client) -> None:
    scores = (2, 1, 3, 0)
    created = submit(client, submission("모양", scores))
    shown = recommendation(client, created["recommendation"]["id"])
    assert set(shown) >= {
        "id",
        "didSurvey",
        "user",
        "hobbyType",
        "hobbies",
        "fitHobbyTypes",
        "scores",
        "modelVersion",
    }
    assert shown["id"] == created["recommendation"]["id"]
    assert shown["didSurvey"] is False
    assert shown["user"] == {"id": created["user"]["id"], "name": "모양"}
    check_hobby_type(service, shown["hobbyType"], mbti(scores))
    assert [h["ranking"] for h in shown["hobbies"]] == [1, 2, 3]
    for ranking, hobby in enumerate(shown["hobbies"], start=1):
        assert set(hobby) >= HOBBY_KEYS
        check_hobby(service, hobby, ranking)
        assert hobby["contentUrl"] == HOBBIES_BY_KEY[hobby["originalName"]]["contentUrl"]
    assert len({h["id"] for h in shown["hobbies"]}) == 3
    fits = shown["fitHobbyTypes"]
    assert [f["ranking"] for f in fits] == [1, 2, 3]
    wanted = sorted(TYPES_BY_MBTI[mbti(scores)]["fitHobbyTypes"], key=lambda f: f["ranking"])
    assert [f["mbtiType"] for f in fits] == [f["mbtiType"] for f in wanted]
    for fit in fits:
        assert set(fit) >= HOBBY_TYPE_KEYS | {"ranking"}
        check_hobby_type(service, {k: v for k, v in fit.items() if k != "ranking"}, fit["mbtiType"])
    assert shown["scores"] == {"scoreE": 2, "scoreN": 1, "scoreF": 3, "scoreJ": 0}
    assert shown["modelVersion"] == ok(client.get("/info"))["model"]["version"]


@pytest.mark.parametrize(
    "scores",
    [
        (0, 0, 0, 0),
        (3, 3, 3, 3),
        (2, 2, 2, 2),
        (1, 1, 1, 1),
        (2, 1, 3, 0),
        (1, 2, 0, 3),
        (3, 0, 2, 1),
    ],
)
def test_recommended_type_and_scores_follow_the_scoring_rule(
    client: httpx.Client, scores: tuple[int, int, int, int]
) -> None:
    details = answers_for(scores)
    random.Random(sum(scores)).shuffle(details)
    created = submit(client, {"user": {"name": "규칙"}, "testResponseDetails": details})
    shown = recommendation(client, created["recommendation"]["id"])
    expected = mbti(scores)
    assert shown["hobbyType"]["mbtiType"] == expected
    assert shown["hobbyType"]["imageUrl"].endswith(f"images/hobby_type/{expected}.png")
    assert shown["hobbyType"]["threeDimensionImageUrl"].endswith(
        f"images/hobby_type/{expected}.gif"
    )
    assert shown["scores"] == dict(
        zip(("scoreE", "scoreN", "scoreF", "scoreJ"), scores, strict=True)
    )
    # the three hobbies are the model's top three for the same answers
    predicted = ok(client.post("/predict", json={"testResponseDetails": details}))
    assert predicted["mbtiType"] == expected
    assert [h["id"] for h in shown["hobbies"]] == [h["id"] for h in predicted["hobbies"][:3]]


# ---- GET /recommendations/{id}/shares ----


def test_share_view_shape_and_absent_private_fields(
    service: RunningService, client: httpx.Client
) -> None:
    scores = (0, 3, 1, 2)
    created = submit(client, submission("공유", scores))
    recommendation_id = created["recommendation"]["id"]
    full = recommendation(client, recommendation_id)
    shared = ok(client.get(f"/recommendations/{recommendation_id}/shares"))["recommendation"]
    assert set(shared) >= {"id", "user", "hobbyType", "hobbies"}
    assert "didSurvey" not in shared
    assert "fitHobbyTypes" not in shared
    assert shared["id"] == recommendation_id
    assert shared["user"] == {"id": created["user"]["id"], "name": "공유"}
    assert shared["hobbyType"] == full["hobbyType"]
    check_hobby_type(service, shared["hobbyType"], mbti(scores))
    assert [h["ranking"] for h in shared["hobbies"]] == [1, 2, 3]
    for ranking, hobby in enumerate(shared["hobbies"], start=1):
        assert "contentUrl" not in hobby
        assert set(hobby) >= HOBBY_KEYS - {"contentUrl"}
        check_hobby(service, hobby, ranking)
    assert [h["id"] for h in shared["hobbies"]] == [h["id"] for h in full["hobbies"]]


# ---- POST /recommendations/{id}/surveys ----


def test_survey_answers_null_data(service: RunningService, client: httpx.Client) -> None:
    created = submit(client, submission("설문"))
    recommendation_id = created["recommendation"]["id"]
    hobby = recommendation(client, recommendation_id)["hobbies"][1]
    body = {"survey": {"hobbies": [{"id": hobby["id"], "name": hobby["name"], "satisfaction": 4}]}}
    path = f"/recommendations/{recommendation_id}/surveys"
    response = client.post(path, json=body, headers=owner(created))
    assert ok(response) is None
    with service.db.read() as session:
        satisfaction = session.scalar(
            select(Survey.satisfaction)
            .join(RecommendationHobby, RecommendationHobby.survey_id == Survey.id)
            .where(
                RecommendationHobby.recommendation_id == recommendation_id,
                RecommendationHobby.hobby_id == hobby["id"],
            )
        )
    assert satisfaction == 4
    assert recommendation(client, recommendation_id)["didSurvey"] is True


# ---- GET /hobbies ----


def test_hobbies_page_shape(service: RunningService, client: httpx.Client) -> None:
    submit(client, submission("순위"))
    data = ok(client.get("/hobbies", params={"page": 0, "size": 7}))
    assert set(data) >= {"hobbies", "page", "size", "totalCount"}
    assert data["page"] == 0 and data["size"] == 7
    with service.db.read() as session:
        rows = {h.id: h for h in session.scalars(select(Hobby).where(Hobby.active.is_(True)))}
    assert data["totalCount"] == len(rows) == len(CATALOG["hobbies"])
    assert len(data["hobbies"]) == 7
    for hobby in data["hobbies"]:
        assert set(hobby) >= {"id", "shortName", "name", "recommendCount", "imageUrl"}
        row = rows[hobby["id"]]
        assert hobby["shortName"] == row.short_name == hobby["name"]
        assert is_int(hobby["recommendCount"]) and hobby["recommendCount"] == row.recommend_count
        assert hobby["imageUrl"].endswith(f"images/hobby/{row.image_key}.png")
    counts = [h["recommendCount"] for h in data["hobbies"]]
    assert counts == sorted(counts, reverse=True)


# ---- POST /predict ----


def test_predict_shape_and_it_stores_nothing(service: RunningService, client: httpx.Client) -> None:
    scores = (3, 1, 2, 0)
    rows_before = stored_counts(service)
    count_before = api_count(client)
    data = ok(client.post("/predict", json={"testResponseDetails": answers_for(scores)}))
    assert set(data) >= {"scores", "mbtiType", "hobbies", "modelVersion"}
    assert data["scores"] == {"scoreE": 3, "scoreN": 1, "scoreF": 2, "scoreJ": 0}
    assert data["mbtiType"] == mbti(scores)
    assert data["modelVersion"] == ok(client.get("/info"))["model"]["version"]
    hobbies = data["hobbies"]
    assert len(hobbies) == len(CATALOG["hobbies"]) == 19
    assert [h["ranking"] for h in hobbies] == list(range(1, 20))
    assert {h["key"] for h in hobbies} == set(HOBBIES_BY_KEY)
    scores_out = [h["score"] for h in hobbies]
    assert all(isinstance(s, float) for s in scores_out)
    assert scores_out == sorted(scores_out, reverse=True)
    with service.db.read() as session:
        ids = {h.original_name: h.id for h in session.scalars(select(Hobby))}
    for hobby in hobbies:
        assert set(hobby) >= {"key", "id", "shortName", "score", "ranking"}
        assert hobby["id"] == ids[hobby["key"]]
        assert hobby["shortName"] == HOBBIES_BY_KEY[hobby["key"]]["shortName"]
    assert stored_counts(service) == rows_before
    assert api_count(client) == count_before


# ---- health, info, docs ----


def test_health_live(client: httpx.Client) -> None:
    response = client.get("/health/live")
    assert response.status_code == 200
    assert response.json()["code"] == "OK"


def test_health_ready_reports_its_checks(client: httpx.Client) -> None:
    data = ok(client.get("/health/ready"))
    assert data["status"] == "UP"
    assert data["checks"]["database"] == "ok"
    assert data["checks"]["model"] == "ok"
    assert data["checks"]["catalog"] == "ok"


def test_info_reports_service_model_and_catalog_versions(
    service: RunningService, client: httpx.Client
) -> None:
    import server

    data = ok(client.get("/info"))
    assert data["service"]["version"] == server.__version__
    assert isinstance(data["model"]["version"], str) and data["model"]["version"]
    with service.db.read() as session:
        from db.catalog import read_catalog

        catalog = read_catalog(session)
    assert data["catalog"]["version"] == catalog.version
    # the model version a recommendation stores is the one /info reports
    created = submit(client, submission("정보"))
    with service.db.read() as session:
        stored = session.get(Recommendation, created["recommendation"]["id"])
    assert stored is not None and stored.model_version == data["model"]["version"]


def test_docs_is_an_html_page(client: httpx.Client) -> None:
    response = client.get("/docs")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert "<html" in response.text.lower()


@pytest.mark.parametrize("page", ["/docs", "/redoc", "/docs/oauth2-redirect"])
def test_docs_pages_work_offline_from_the_package(client: httpx.Client, page: str) -> None:
    """Every script and stylesheet the page names is served here, with a type a browser
    under `nosniff` accepts, so the page needs no network beyond this service."""
    response = client.get(page)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assets = re.findall(r'<(?:script src|link rel="stylesheet" href)="([^"]+)"', response.text)
    assert assets
    expected = {".js": "text/javascript", ".css": "text/css"}
    for url in assets:
        assert url.startswith("/docs/assets/"), url
        asset = client.get(url)
        assert asset.status_code == 200, url
        kind = asset.headers["content-type"].split(";")[0]
        assert kind == expected[Path(url).suffix], (url, kind)
        assert asset.headers["cache-control"] == "public, max-age=86400"
        assert len(asset.content) > 0
    if page == "/docs":
        [init] = [url for url in assets if url.endswith("swagger-init.js")]
        assert '"/openapi.json"' in client.get(init).text  # it loads this service's document
    if page == "/redoc":
        assert 'spec-url="/openapi.json"' in response.text
    assert client.get("/docs/assets/nothing.js").status_code == 404


def test_openapi_document_lists_every_public_path(client: httpx.Client) -> None:
    response = client.get("/openapi.json")
    assert response.status_code == 200
    document = response.json()
    assert document["openapi"].startswith("3.")
    assert document["info"]["title"]
    paths = {re.sub(r"\{[^}]+\}", "{id}", path): item for path, item in document["paths"].items()}
    for path, method in [
        ("/tests", "get"),
        ("/test-responses", "post"),
        ("/test-responses/count", "get"),
        ("/recommendations/{id}", "get"),
        ("/recommendations/{id}/shares", "get"),
        ("/recommendations/{id}/surveys", "post"),
        ("/hobbies", "get"),
        ("/predict", "post"),
    ]:
        assert method in paths[path], path
