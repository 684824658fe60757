"""Hostile input against a real server on both databases: bodies over the cap, hostile
names, a broken database; and the security headers on every kind of response.

Covered elsewhere, not repeated here: admin bearer token (401 without or with a wrong
token, routes absent without a configured token: tests/server/routes/test_admin_model.py),
CORS for unlisted origins and `size`/`page` bounds (tests/server/routes/test_compat.py,
test_validation.py).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from http import HTTPStatus
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import select

from db.models import User
from tests.db.breakage import drop_tables
from tests.helpers import (
    TOKEN_HEADER,
    RunningService,
    make_settings,
    start_service,
    stored_counts,
    submission,
)

ORIGIN = "https://hollang.example"  # the conftest service's configured CORS origin
CAP = 64 * 1024  # HOLLANG_MAX_BODY_BYTES default
AUTH = {"Authorization": "Bearer test-admin-token"}
LEAKS = ("traceback", "sqlalchemy", "select ", "pymysql", "sqlite3", 'file "', "no such table")
TOO_LARGE = HTTPStatus.REQUEST_ENTITY_TOO_LARGE


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http


def padded(body: dict[str, Any], size: int) -> bytes:
    """`body` as JSON, padded with trailing spaces (still valid JSON) to exactly `size`."""
    raw = json.dumps(body).encode()
    assert len(raw) <= size
    return raw + b" " * (size - len(raw))


def chunks(data: bytes, size: int = 8192) -> Iterator[bytes]:
    """A body httpx sends chunked (Transfer-Encoding, no Content-Length)."""
    for start in range(0, len(data), size):
        yield data[start : start + size]


def assert_clean_error(response: httpx.Response, status: int) -> dict[str, Any]:
    """The standard envelope, nothing of our internals in it."""
    assert response.status_code == status, response.text
    lowered = response.text.lower()
    for leak in LEAKS:
        assert leak not in lowered, response.text
    body: dict[str, Any] = response.json()
    assert body["code"] == HTTPStatus(status).name
    assert isinstance(body["message"], str) and body["message"]
    return body


# ---- request body cap ----


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_over_the_cap_is_a_413_and_writes_nothing(
    service: RunningService, client: httpx.Client, framing: str
) -> None:
    data = padded(submission("큰몸"), CAP + 1)
    content: bytes | Iterator[bytes] = data if framing == "content-length" else chunks(data)
    before = stored_counts(service)
    response = client.post(
        "/test-responses",
        content=content,
        headers={"Content-Type": "application/json", "Origin": ORIGIN},
    )
    body = assert_clean_error(response, TOO_LARGE)
    assert body["message"] == f"The request body is larger than {CAP} bytes."
    assert response.headers["access-control-allow-origin"] == ORIGIN
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["x-request-id"]
    assert stored_counts(service) == before


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_a_body_of_exactly_the_cap_is_served(client: httpx.Client, framing: str) -> None:
    data = padded(submission("딱맞게"), CAP)
    content: bytes | Iterator[bytes] = data if framing == "content-length" else chunks(data)
    response = client.post(
        "/test-responses", content=content, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text
    assert response.json()["data"]["user"]["name"] == "딱맞게"


def test_the_cap_applies_before_routing(client: httpx.Client) -> None:
    response = client.post("/no/such/route", content=b"x" * (CAP + 1))
    assert_clean_error(response, TOO_LARGE)


@pytest.mark.parametrize("framing", ["content-length", "chunked"])
def test_admin_uploads_have_the_larger_model_cap(client: httpx.Client, framing: str) -> None:
    """Four times the API cap reaches the model validator (which refuses junk: 422)."""
    data = b"\x00not an onnx model" * (4 * CAP // 18)
    assert len(data) > 3 * CAP
    content: bytes | Iterator[bytes] = data if framing == "content-length" else chunks(data)
    response = client.post(
        "/admin/model",
        content=content,
        headers={**AUTH, "Content-Type": "application/octet-stream"},
    )
    assert_clean_error(response, HTTPStatus.UNPROCESSABLE_ENTITY)


# ---- hostile names ----

# Each fits the 1..5 visible characters rule, so it is stored and must come back verbatim.
ODD_BUT_VALID = ["';--", "<b>", '"><', "{{1}}", "%s%n", "1=1", "${x}", "\\'", "a;b", "</p>"]
HOSTILE = {
    "sql injection": "Robert'); DROP TABLE user;--",
    "script tag": "<script>alert(1)</script>",
    "very long": "가" * 5000,
    "nul": "a\x00b",
    "newline": "a\nb",
    "escape sequence": "\x1b[31m",
    "right-to-left override": "a\u202eb",
    "bidi isolate": "\u2066ab\u2069",
}


@pytest.mark.parametrize("name", ODD_BUT_VALID)
def test_odd_names_are_stored_verbatim_and_returned_as_json(
    service: RunningService, client: httpx.Client, name: str
) -> None:
    created = client.post("/test-responses", json=submission(name))
    assert created.status_code == 200, created.text
    data = created.json()["data"]
    assert data["user"]["name"] == name
    with service.db.read() as session:
        assert session.scalar(select(User.name).where(User.id == data["user"]["id"])) == name
    for path in ("", "/shares"):
        shown = client.get(f"/recommendations/{data['recommendation']['id']}{path}")
        assert shown.status_code == 200
        # JSON, never sniffed as HTML by a browser
        assert shown.headers["content-type"] == "application/json"
        assert shown.headers["x-content-type-options"] == "nosniff"
        assert shown.json()["data"]["recommendation"]["user"]["name"] == name


@pytest.mark.parametrize("name", list(HOSTILE.values()), ids=list(HOSTILE))
def test_hostile_names_are_rejected_and_store_nothing(
    service: RunningService, client: httpx.Client, name: str
) -> None:
    before = stored_counts(service)
    response = client.post("/test-responses", json=submission(name))
    body = assert_clean_error(response, HTTPStatus.BAD_REQUEST)
    assert [error["field"] for error in body["errors"]] == ["user.name"]
    assert stored_counts(service) == before  # and the user table is still there


# ---- security headers ----

REQUESTS = [
    ("GET", "/tests?version=1", 200),
    ("GET", "/hobbies?size=1", 200),
    ("POST", "/test-responses", 400),
    ("GET", "/recommendations/987654321", 404),
    ("DELETE", "/tests", 405),
    ("GET", "/admin/model", 401),
    ("GET", "/health/ready", 200),
    ("GET", "/openapi.json", 200),
    ("GET", "/metrics", 200),
]


@pytest.mark.parametrize(("method", "path", "status"), REQUESTS)
def test_every_response_carries_the_security_headers(
    client: httpx.Client, method: str, path: str, status: int
) -> None:
    response = client.request(method, path, json={} if method == "POST" else None)
    assert response.status_code == status
    headers = response.headers
    assert headers["x-content-type-options"] == "nosniff"
    assert headers["x-frame-options"] == "DENY"
    assert headers["referrer-policy"] == "no-referrer"
    assert headers["content-security-policy"] == "default-src 'none'; frame-ancestors 'none'"
    assert headers["cache-control"] == "no-store"


DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# ReDoc's styled-components insert <style> elements, and its search runs in a blob: worker.
REDOC_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; "
    "frame-ancestors 'none'"
)


@pytest.mark.parametrize(
    ("path", "policy"),
    [("/docs", DOCS_CSP), ("/docs/oauth2-redirect", DOCS_CSP), ("/redoc", REDOC_CSP)],
)
def test_the_docs_pages_get_a_policy_of_only_their_own_files(
    client: httpx.Client, path: str, policy: str
) -> None:
    """Exactly the policy, so a widening (a CDN, 'unsafe-inline' scripts) fails here; the
    pages carry no inline script or style, and every asset they name is this service's."""
    response = client.get(path)
    assert response.status_code == 200
    assert response.headers["content-security-policy"] == policy
    assert response.headers["x-frame-options"] == "DENY"
    page = response.text
    assert "<style" not in page and not re.search(r"\s(style|on\w+)=", page)
    scripts = re.findall(r"<script([^>]*)>", page)
    assert scripts and all(re.fullmatch(r' src="/docs/assets/[^"]+"', s) for s in scripts)
    urls = re.findall(r'(?:src|href)="([^"]+)"', page)
    assert urls and all(url.startswith("/docs/assets/") for url in urls), urls


# ---- a broken database ----


@pytest.fixture
def breakable(tmp_path: Path, database_url: str) -> Iterator[RunningService]:
    yield from start_service(make_settings(tmp_path, database_url))


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("GET", "/hobbies", None),
        ("GET", "/test-responses/count", None),
        ("POST", "/test-responses", submission("고장")),
        ("GET", "/recommendations/1", None),
        (
            "POST",
            "/recommendations/1/surveys",
            {"survey": {"hobbies": [{"id": 1, "satisfaction": 3}]}},
        ),
    ],
)
def test_a_broken_database_gives_a_clean_5xx_without_sql_or_traces(
    breakable: RunningService, method: str, path: str, body: dict[str, Any] | None
) -> None:
    drop_tables(
        breakable.settings.resolved_database_url,
        "hobby",
        "recommendation_hobby",
        "recommendation",
        "test_response_detail",
        "test_response",
        "counter",
    )
    with breakable.client() as http:
        # any token: the database is asked for the recommendation's before it is compared
        response = http.request(method, path, json=body, headers={TOKEN_HEADER: "any"})
    assert response.status_code in (500, 503), response.text
    assert_clean_error(response, response.status_code)
    assert response.headers["x-request-id"]


# ---- 405 ----


def test_a_405_names_every_method_of_the_path(client: httpx.Client) -> None:
    """GET and POST /admin/model are two routes; `Allow` must list both (schemathesis
    found it naming only the first)."""
    response = client.delete("/admin/model", headers=AUTH)
    assert_clean_error(response, HTTPStatus.METHOD_NOT_ALLOWED)
    assert {m.strip() for m in response.headers["allow"].split(",")} >= {"GET", "POST"}
