"""Every bad input is a clean 4xx in the error envelope, never a 500, and writes nothing.

Validation failures carry ``errors: [{field, message, type}]`` whose ``field`` is the
camelCase path of the offending value (``testResponseDetails[3].answerNumber``). No body
ever leaks a stack trace or SQL.
"""

from __future__ import annotations

import copy
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from db.models import (
    Hobby,
)
from tests.helpers import RunningService, answers_for, owner, stored_counts, submission

LEAKS = ("Traceback", "sqlalchemy", "SELECT", "pymysql", "sqlite3")


def error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    """The error body, after checking the envelope, the status and that nothing leaks."""
    assert response.status_code == status, response.text
    for leak in LEAKS:
        assert leak.lower() not in response.text.lower(), response.text
    body = response.json()
    assert body["code"] == code
    assert isinstance(body["message"], str) and body["message"]
    assert "data" not in body
    return body  # type: ignore[no-any-return]


def invalid(response: httpx.Response) -> list[dict[str, Any]]:
    """The field errors of a 400 validation failure."""
    body = error(response, 400, "BAD_REQUEST")
    errors = body["errors"]
    assert isinstance(errors, list) and errors
    for item in errors:
        assert set(item) >= {"field", "message", "type"}
        assert isinstance(item["field"], str)
        assert isinstance(item["message"], str) and item["message"]
        assert isinstance(item["type"], str) and item["type"]
    return errors  # type: ignore[no-any-return]


def fields(errors: list[dict[str, Any]]) -> set[str]:
    return {item["field"] for item in errors}


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


@pytest.fixture
def writes_nothing(service: RunningService, client: httpx.Client) -> Iterator[None]:
    """Fails the test if it changed any stored row or the public count."""
    before = stored_counts(service)
    count = client.get("/test-responses/count").json()["data"]["testResponse"]["count"]
    yield
    assert stored_counts(service) == before
    assert client.get("/test-responses/count").json()["data"]["testResponse"]["count"] == count


@pytest.fixture(scope="module")
def stored(service: RunningService) -> dict[str, Any]:
    """One real recommendation to survey, with its three hobby ids."""
    with service.client() as http:
        created = http.post("/test-responses", json=submission("검증")).json()["data"]
        rid = created["recommendation"]["id"]
        shown = http.get(f"/recommendations/{rid}").json()["data"]["recommendation"]
    return {"id": rid, "hobbies": [h["id"] for h in shown["hobbies"]], "owner": owner(created)}


# ---- POST /test-responses ----


def body_with(change: Callable[[dict[str, Any]], None]) -> dict[str, Any]:
    body = copy.deepcopy(submission())
    change(body)
    return body


def set_name(value: object) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["user"].__setitem__("name", value)


def set_detail(index: int, key: str, value: object) -> Callable[[dict[str, Any]], None]:
    return lambda body: body["testResponseDetails"][index].__setitem__(key, value)


def replace_details(details: object) -> Callable[[dict[str, Any]], None]:
    return lambda body: body.__setitem__("testResponseDetails", details)


def duplicated_question(body: dict[str, Any]) -> None:
    # 12 items: question 5 is missing and question 4 appears twice
    body["testResponseDetails"][4] = {"questionNumber": 4, "answerNumber": 1}


DETAILS = "testResponseDetails"


def bad_detail(index: int, key: str, value: object) -> tuple[dict[str, Any], str]:
    """A body whose detail `index` has `key` set to `value`, and the field that names it."""
    return body_with(set_detail(index, key, value)), f"{DETAILS}[{index}].{key}"


def detail_not_an_object(body: dict[str, Any]) -> None:
    body[DETAILS][3] = 7


def detail_without_answer(body: dict[str, Any]) -> None:
    body[DETAILS][3].pop("answerNumber")


THIRTEEN = [*answers_for((1, 1, 1, 1)), {"questionNumber": 1, "answerNumber": 1}]

BAD_BODIES: list[tuple[str, dict[str, Any], str]] = [
    ("missing user", body_with(lambda b: b.pop("user")), "user"),
    ("user not an object", body_with(lambda b: b.__setitem__("user", "홀랑")), "user"),
    ("user null", body_with(lambda b: b.__setitem__("user", None)), "user"),
    ("missing name", body_with(lambda b: b["user"].pop("name")), "user.name"),
    ("empty name", body_with(set_name("")), "user.name"),
    ("blank name", body_with(set_name("   ")), "user.name"),
    ("ideographic blank name", body_with(set_name("\u3000\u3000")), "user.name"),
    ("6 characters", body_with(set_name("abcdef")), "user.name"),
    ("6 Korean characters", body_with(set_name("가나다라마바")), "user.name"),
    ("control character", body_with(set_name("a\u0000b")), "user.name"),
    ("escape character", body_with(set_name("a\u001bb")), "user.name"),
    ("zero-width character", body_with(set_name("a\u200bb")), "user.name"),
    ("name is a number", body_with(set_name(12345)), "user.name"),
    ("name is a list", body_with(set_name(["a"])), "user.name"),
    ("name is null", body_with(set_name(None)), "user.name"),
    ("missing details", body_with(lambda b: b.pop(DETAILS)), DETAILS),
    ("11 details", body_with(replace_details(answers_for((1, 1, 1, 1))[:11])), DETAILS),
    ("13 details", body_with(replace_details(THIRTEEN)), DETAILS),
    ("no details", body_with(replace_details([])), DETAILS),
    ("details not a list", body_with(replace_details({"1": 1})), DETAILS),
    ("details null", body_with(replace_details(None)), DETAILS),
    ("question missing, another twice", body_with(duplicated_question), DETAILS),
    ("detail not an object", body_with(detail_not_an_object), f"{DETAILS}[3]"),
    ("answer missing", body_with(detail_without_answer), f"{DETAILS}[3].answerNumber"),
    ("question 0", *bad_detail(3, "questionNumber", 0)),
    ("question 13", *bad_detail(3, "questionNumber", 13)),
    ("question -1", *bad_detail(3, "questionNumber", -1)),
    ("answer 0", *bad_detail(3, "answerNumber", 0)),
    ("answer 3", *bad_detail(3, "answerNumber", 3)),
    ("answer string", *bad_detail(3, "answerNumber", "1")),
    ("question string", *bad_detail(3, "questionNumber", "4")),
    ("answer true", *bad_detail(3, "answerNumber", True)),
    ("question true", *bad_detail(0, "questionNumber", True)),
    ("answer 1.5", *bad_detail(3, "answerNumber", 1.5)),
    ("answer 1.0", *bad_detail(3, "answerNumber", 1.0)),
    ("question 4.5", *bad_detail(3, "questionNumber", 4.5)),
    ("answer null", *bad_detail(3, "answerNumber", None)),
    ("question null", *bad_detail(3, "questionNumber", None)),
    ("answer huge", *bad_detail(3, "answerNumber", 10**30)),
]


@pytest.mark.parametrize(
    ("body", "field"),
    [pytest.param(body, field, id=name) for name, body, field in BAD_BODIES],
)
@pytest.mark.usefixtures("writes_nothing")
def test_bad_submission_is_rejected_with_its_field(
    client: httpx.Client, body: dict[str, Any], field: str
) -> None:
    errors = invalid(client.post("/test-responses", json=body))
    assert field in fields(errors), errors


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b'{"user": {"name": "a"}, ', id="truncated"),
        pytest.param(b"{user: 1}", id="unquoted key"),
        pytest.param(b"", id="empty"),
    ],
)
@pytest.mark.usefixtures("writes_nothing")
def test_malformed_json_is_a_bad_request(client: httpx.Client, raw: bytes) -> None:
    response = client.post(
        "/test-responses", content=raw, headers={"content-type": "application/json"}
    )
    invalid(response)


@pytest.mark.parametrize(
    "raw",
    [
        pytest.param(b"\xff\xfe\x00", id="not utf-8"),
        pytest.param(b"[" * 30_000 + b"]" * 30_000, id="nested too deeply"),  # under the body cap
        pytest.param(b'{"user": {"name": ' + b"9" * 5000 + b"}}", id="5000-digit integer"),
    ],
)
@pytest.mark.usefixtures("writes_nothing")
def test_undecodable_body_is_malformed_json_with_field_errors(
    client: httpx.Client, raw: bytes
) -> None:
    response = client.post(
        "/test-responses", content=raw, headers={"content-type": "application/json"}
    )
    error(response, 400, "BAD_REQUEST")  # the envelope itself is right
    invalid(response)


@pytest.mark.parametrize("name", ["\u3164", "\uffa0", "\u115f", "\u3164\u3164\u3164"])
def test_name_of_only_invisible_filler_is_rejected(
    service: RunningService, client: httpx.Client, name: str
) -> None:
    before = stored_counts(service)
    errors = invalid(client.post("/test-responses", json=submission(name)))
    assert fields(errors) == {"user.name"}
    assert stored_counts(service) == before


@pytest.mark.parametrize(
    "raw",
    [b"[]", b"null", b'"name"', b"12", b"true", b"[{}]"],
    ids=["array", "null", "string", "number", "boolean", "array of object"],
)
@pytest.mark.usefixtures("writes_nothing")
def test_body_that_is_not_an_object_is_a_bad_request(client: httpx.Client, raw: bytes) -> None:
    response = client.post(
        "/test-responses", content=raw, headers={"content-type": "application/json"}
    )
    invalid(response)


@pytest.mark.usefixtures("writes_nothing")
def test_nested_error_path_names_the_item_and_its_camel_case_field(client: httpx.Client) -> None:
    body = submission()
    body["testResponseDetails"][3]["answerNumber"] = 9
    errors = invalid(client.post("/test-responses", json=body))
    assert fields(errors) == {"testResponseDetails[3].answerNumber"}


@pytest.mark.usefixtures("writes_nothing")
def test_several_bad_fields_are_all_listed(client: httpx.Client) -> None:
    body = submission(name="")
    body["testResponseDetails"][0]["questionNumber"] = 0
    body["testResponseDetails"][11]["answerNumber"] = "2"
    errors = invalid(client.post("/test-responses", json=body))
    assert fields(errors) >= {
        "user.name",
        "testResponseDetails[0].questionNumber",
        "testResponseDetails[11].answerNumber",
    }


@pytest.mark.parametrize(
    "body",
    [
        pytest.param({}, id="empty"),
        pytest.param({"testResponseDetails": answers_for((1, 1, 1, 1))[:11]}, id="11 details"),
        pytest.param(
            {"testResponseDetails": [{"questionNumber": 1, "answerNumber": 1}] * 12},
            id="one question twelve times",
        ),
        pytest.param(body_with(set_detail(2, "answerNumber", True)), id="boolean answer"),
    ],
)
@pytest.mark.usefixtures("writes_nothing")
def test_bad_predict_body_is_a_bad_request(client: httpx.Client, body: dict[str, Any]) -> None:
    invalid(client.post("/predict", json=body))


# ---- unknown paths, wrong methods ----


@pytest.mark.parametrize(
    "path", ["/nope", "/test", "/tests/1", "/recommendations", "/hobbies/1/x", "/admin/secrets"]
)
def test_unknown_path_is_not_found(client: httpx.Client, path: str) -> None:
    error(client.get(path), 404, "NOT_FOUND")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("DELETE", "/tests"),
        ("POST", "/tests"),
        ("PUT", "/test-responses"),
        ("GET", "/test-responses"),
        ("DELETE", "/test-responses"),
        ("POST", "/test-responses/count"),
        ("DELETE", "/recommendations/1"),
        ("PUT", "/recommendations/1"),
        ("GET", "/recommendations/1/surveys"),
        ("POST", "/recommendations/1/shares"),
        ("DELETE", "/hobbies"),
        ("GET", "/predict"),
    ],
)
@pytest.mark.usefixtures("writes_nothing")
def test_wrong_method_is_method_not_allowed(client: httpx.Client, method: str, path: str) -> None:
    error(client.request(method, path), 405, "METHOD_NOT_ALLOWED")


# ---- GET /recommendations/{id} and its share view ----


@pytest.mark.parametrize("suffix", ["", "/shares"])
def test_unknown_recommendation_is_not_found(client: httpx.Client, suffix: str) -> None:
    # the original answered 400 here; the contract's fix is 404
    error(client.get(f"/recommendations/999999999{suffix}"), 404, "NOT_FOUND")
    error(client.get(f"/recommendations/{2**63 - 1}{suffix}"), 404, "NOT_FOUND")


@pytest.mark.parametrize("bad_id", ["abc", "0", "-1", "1.5", "1e3", str(2**63), "%20"])
@pytest.mark.parametrize("suffix", ["", "/shares"])
def test_malformed_recommendation_id_is_a_bad_request(
    client: httpx.Client, bad_id: str, suffix: str
) -> None:
    invalid(client.get(f"/recommendations/{bad_id}{suffix}"))


# ---- POST /recommendations/{id}/surveys ----


def survey(*ratings: tuple[object, object]) -> dict[str, Any]:
    return {"survey": {"hobbies": [{"id": i, "satisfaction": s} for i, s in ratings]}}


def post_survey(client: httpx.Client, stored: dict[str, Any], body: object) -> httpx.Response:
    """As the recommendation's owner, so only the body is wrong."""
    return client.post(
        f"/recommendations/{stored['id']}/surveys", json=body, headers=stored["owner"]
    )


@pytest.mark.usefixtures("writes_nothing")
def test_survey_of_unknown_recommendation_is_not_found(
    client: httpx.Client, stored: dict[str, Any]
) -> None:
    response = client.post(
        "/recommendations/999999999/surveys",
        json=survey((stored["hobbies"][0], 3)),
        headers=stored["owner"],
    )
    error(response, 404, "NOT_FOUND")


@pytest.mark.usefixtures("writes_nothing")
def test_survey_of_a_hobby_outside_the_recommendation_is_rejected_and_stores_nothing(
    service: RunningService, client: httpx.Client, stored: dict[str, Any]
) -> None:
    with service.db.read() as session:
        stranger = session.scalars(
            select(Hobby.id).where(Hobby.id.not_in(stored["hobbies"])).limit(1)
        ).one()
    body = survey((stored["hobbies"][0], 5), (stranger, 2))
    errors = invalid(post_survey(client, stored, body))
    assert fields(errors) == {"survey.hobbies[1].id"}
    shown = client.get(f"/recommendations/{stored['id']}").json()["data"]["recommendation"]
    assert shown["didSurvey"] is False


@pytest.mark.parametrize(
    ("ratings", "field"),
    [
        pytest.param([(0, 0)], "survey.hobbies[0].satisfaction", id="satisfaction 0"),
        pytest.param([(0, 6)], "survey.hobbies[0].satisfaction", id="satisfaction 6"),
        pytest.param([(0, -1)], "survey.hobbies[0].satisfaction", id="satisfaction -1"),
        pytest.param([(0, "3")], "survey.hobbies[0].satisfaction", id="satisfaction string"),
        pytest.param([(0, True)], "survey.hobbies[0].satisfaction", id="satisfaction true"),
        pytest.param([(0, 3.5)], "survey.hobbies[0].satisfaction", id="satisfaction 3.5"),
        pytest.param([(0, None)], "survey.hobbies[0].satisfaction", id="satisfaction null"),
        pytest.param([(0, 3), (1, 0)], "survey.hobbies[1].satisfaction", id="second item"),
        pytest.param([(0, 3), (0, 4)], "survey.hobbies", id="duplicate hobby"),
        pytest.param([], "survey.hobbies", id="empty list"),
        pytest.param([(0, 3), (1, 3), (2, 3), (0, 3)], "survey.hobbies", id="four items"),
    ],
)
@pytest.mark.usefixtures("writes_nothing")
def test_bad_survey_is_rejected(
    client: httpx.Client,
    stored: dict[str, Any],
    ratings: list[tuple[int, object]],
    field: str,
) -> None:
    body = survey(*((stored["hobbies"][index], value) for index, value in ratings))
    errors = invalid(post_survey(client, stored, body))
    assert field in fields(errors), errors


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param({}, "survey", id="missing survey"),
        pytest.param({"survey": None}, "survey", id="survey null"),
        pytest.param({"survey": {}}, "survey.hobbies", id="missing hobbies"),
        pytest.param({"survey": {"hobbies": {}}}, "survey.hobbies", id="hobbies not a list"),
        pytest.param(
            {"survey": {"hobbies": [{"satisfaction": 3}]}}, "survey.hobbies[0].id", id="no id"
        ),
        pytest.param(survey(("1", 3)), "survey.hobbies[0].id", id="id string"),
        pytest.param(survey((0, 3)), "survey.hobbies[0].id", id="id 0"),
        pytest.param(survey((True, 3)), "survey.hobbies[0].id", id="id true"),
    ],
)
@pytest.mark.usefixtures("writes_nothing")
def test_malformed_survey_body_is_rejected(
    client: httpx.Client, stored: dict[str, Any], body: dict[str, Any], field: str
) -> None:
    errors = invalid(post_survey(client, stored, body))
    assert field in fields(errors), errors


@pytest.mark.usefixtures("writes_nothing")
def test_survey_with_malformed_json_is_a_bad_request(
    client: httpx.Client, stored: dict[str, Any]
) -> None:
    response = client.post(
        f"/recommendations/{stored['id']}/surveys",
        content=b'{"survey": ',
        headers={"content-type": "application/json", **stored["owner"]},
    )
    invalid(response)


# ---- GET /hobbies ----


@pytest.mark.parametrize(
    "sort", ["password", "recommend_count", "recommendCount,sideways", "id;DROP TABLE hobby", ""]
)
def test_unknown_hobby_sort_is_rejected_on_the_sort_field(client: httpx.Client, sort: str) -> None:
    errors = invalid(client.get("/hobbies", params={"sort": sort}))
    assert fields(errors) == {"sort"}


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"size": 0}, "size"),
        ({"size": 101}, "size"),
        ({"size": -5}, "size"),
        ({"size": "ten"}, "size"),
        ({"page": -1}, "page"),
        ({"page": "first"}, "page"),
        ({"page": 1.5}, "page"),
    ],
)
def test_out_of_range_paging_is_rejected(
    client: httpx.Client, params: dict[str, object], field: str
) -> None:
    errors = invalid(client.get("/hobbies", params=params))
    assert field in fields(errors)


def test_hobbies_sorted_by_recommend_count_ascending(
    client: httpx.Client, stored: dict[str, Any]
) -> None:
    response = client.get("/hobbies", params={"sort": "recommendCount,asc", "size": 100})
    assert response.status_code == 200, response.text
    hobbies = response.json()["data"]["hobbies"]
    keys = [h["recommendCount"] for h in hobbies]
    assert keys == sorted(keys)
    # the stored recommendation made at least one count non-zero, so the order is not trivial
    assert keys[0] < keys[-1]


@pytest.mark.parametrize("direction", ["", ",desc", ",asc"])
def test_hobbies_sorted_by_short_name(client: httpx.Client, direction: str) -> None:
    response = client.get("/hobbies", params={"sort": f"shortName{direction}", "size": 100})
    assert response.status_code == 200, response.text
    names = [h["shortName"] for h in response.json()["data"]["hobbies"]]
    assert len(names) == len(set(names)) > 1
    assert names == sorted(names, reverse=direction != ",asc")


# ---- GET /tests ----


@pytest.mark.parametrize("version", ["0", "-1", "abc", "1.5", str(10**30)])
def test_malformed_test_version_is_a_bad_request(client: httpx.Client, version: str) -> None:
    errors = invalid(client.get("/tests", params={"version": version}))
    assert fields(errors) == {"version"}


def test_unknown_test_version_is_not_found(client: httpx.Client) -> None:
    error(client.get("/tests", params={"version": 2}), 404, "NOT_FOUND")
