"""Images: `hollang images upload`, the admin upload, and serving through the service, on a
local folder (streamed) and on S3 (a redirect to a presigned URL); the bundled catalogue's
placeholders on a fresh install, and readiness naming the images a catalogue lacks."""

from __future__ import annotations

import itertools
import json
import struct
import time
import zlib
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from cli.main import main
from db.catalog import DEFAULT_CATALOG, load_catalog
from server.images import ImageUrls, sniff
from tests.helpers import RunningService, make_settings, start_service, submission
from tests.s3support import StoreUnderTest

TOKEN = "images-admin-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
GIF = bytes.fromhex(
    "47494638396101000100800000000000ffffff21f90401000000002c000000000100010000020144003b"
)
JPEG_START = b"\xff\xd8\xff\xe0\x00\x10JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"


def png(red: int) -> bytes:
    """A real 1x1 PNG (signature, IHDR, IDAT, IEND with their CRCs)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", 1, 1, 8, 2, 0, 0, 0)
    pixels = zlib.compress(bytes([0, red, 0, 0]))
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", pixels) + chunk(b"IEND", b"")
    )


@pytest.fixture
def service(objects: StoreUnderTest, tmp_path: Path) -> Iterator[RunningService]:
    """Without the bundled placeholders: these tests are about what the store holds."""
    settings = objects.settings(
        f"sqlite:///{tmp_path / 'hollang.db'}",
        admin_token=TOKEN,
        max_image_bytes=4096,
        bundled_images=False,
    )
    yield from start_service(settings)


def expect_image(client: httpx.Client, path: str, body: bytes, content_type: str) -> None:
    """The image comes back with its type and cache header, directly or via one redirect."""
    response = client.get(path)
    if response.status_code == 302:
        assert response.headers["cache-control"] == "private, max-age=300"
        location = response.headers["location"]
        assert "X-Amz-Signature=" in location
        response = httpx.get(location)
    assert response.status_code == 200, response.text
    assert response.content == body
    assert response.headers["content-type"] == content_type
    assert response.headers["cache-control"] == "public, max-age=86400"


def test_cli_uploads_a_folder_and_the_service_serves_it(
    objects: StoreUnderTest, service: RunningService, tmp_path: Path
) -> None:
    folder = tmp_path / "images"
    for kind in ("hobby", "hobby_type", "question"):
        (folder / kind).mkdir(parents=True)
    (folder / "hobby" / "blog-branding.png").write_bytes(png(1))
    (folder / "hobby_type" / "ESFP.png").write_bytes(png(2))
    (folder / "hobby_type" / "ESFP.gif").write_bytes(GIF)
    (folder / "question" / "question1.JPG").write_bytes(JPEG_START)
    result = CliRunner().invoke(main, ["images", "upload", str(folder)], env=objects.env)
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["stored"] == {
        "images/hobby/blog-branding.png": "image/png",
        "images/hobby_type/ESFP.gif": "image/gif",
        "images/hobby_type/ESFP.png": "image/png",
        "images/question/question1.JPG": "image/jpeg",
    }
    with service.client(follow_redirects=False) as client:
        direct = client.get("/images/hobby/blog-branding.png")
        assert direct.status_code == (302 if objects.kind == "s3" else 200)
        expect_image(client, "/images/hobby/blog-branding.png", png(1), "image/png")
        expect_image(client, "/images/hobby_type/ESFP.gif", GIF, "image/gif")
        expect_image(client, "/images/question/question1.JPG", JPEG_START, "image/jpeg")
        # The URLs the JSON responses carry are the ones that serve the images.
        question = client.get("/tests").json()["data"]["test"]["questions"][0]
        expect_image(client, question["imageUrl"], JPEG_START, "image/jpeg")


def test_cli_refuses_a_folder_with_any_bad_file(objects: StoreUnderTest, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    (folder / "hobby").mkdir(parents=True)
    (folder / "hobby" / "fine.png").write_bytes(png(3))
    (folder / "hobby" / "renamed-gif.png").write_bytes(GIF)
    (folder / "hobby" / "notes.txt").write_bytes(b"hello")
    (folder / "hobby" / "huge.png").write_bytes(png(4) + b"\x00" * 5000)
    env = {**objects.env, "HOLLANG_MAX_IMAGE_BYTES": "4096"}
    result = CliRunner().invoke(main, ["images", "upload", str(folder)], env=env)
    assert result.exit_code == 1
    assert "renamed-gif.png must be image/png, but the file is image/gif" in result.stderr
    assert "notes.txt is not an image name of the layout" in result.stderr
    assert "huge.png is larger than 4096 bytes" in result.stderr
    assert "3 file(s) refused; nothing was uploaded" in result.stderr
    assert list(objects.store.list("images/")) == []


def test_missing_images_are_404s_and_never_break_json(service: RunningService) -> None:
    with service.client(follow_redirects=False) as client:
        for path in (
            "/images/hobby/blog-branding.png",
            "/images/hobby_type/INTJ.gif",
            "/images/hobby/../../models/active.json",
            "/images/nothing/x.png",
        ):
            response = client.get(path)
            assert response.status_code == 404, path
            assert response.json()["code"] == "NOT_FOUND"
        tests = client.get("/tests")
        assert tests.status_code == 200
        assert tests.json()["data"]["test"]["questions"][0]["imageUrl"].endswith(
            "/images/question/question1.JPG"
        )
        hobbies = client.get("/hobbies")
        assert hobbies.status_code == 200
        assert all(
            h["imageUrl"].startswith("/images/hobby/") for h in hobbies.json()["data"]["hobbies"]
        )


def test_admin_upload_checks_name_size_and_bytes(service: RunningService) -> None:
    with service.client(follow_redirects=False) as client:
        url = "/admin/images/hobby/blog-branding.png"
        assert client.put(url, content=png(5)).status_code == 401
        cases = [
            ("/admin/images/hobby/blog branding.png", png(5), 400),
            ("/admin/images/hobby_type/XXXX.png", png(5), 400),
            # dot names: the stores never list them, so they are refused, not stored unseen
            ("/admin/images/hobby/.hidden.png", png(5), 400),
            ("/admin/images/hobby/..png", png(5), 400),
            (url, GIF, 415),
            (url, b"<svg/>", 415),
            (url, png(5) + b"\x00" * 5000, 413),
            (url, b"", 400),
        ]
        for path, body, status in cases:
            response = client.put(path, content=body, headers=AUTH)
            assert response.status_code == status, (path, response.text)
            assert response.json()["code"] and response.json()["message"]
        assert client.get("/images/hobby/blog-branding.png").status_code == 404
        assert "dot" in client.put("/admin/images/hobby/.x.png", content=png(5), headers=AUTH).text
        assert client.get("/images/hobby/.hidden.png").status_code == 404

        stored = client.put(url, content=png(6), headers=AUTH)
        assert stored.status_code == 200, stored.text
        assert stored.json()["data"] == {
            "key": "images/hobby/blog-branding.png",
            "contentType": "image/png",
            "size": len(png(6)),
        }
        expect_image(client, "/images/hobby/blog-branding.png", png(6), "image/png")
        # Replacing an image keeps its key.
        assert client.put(url, content=png(7), headers=AUTH).status_code == 200
        expect_image(client, "/images/hobby/blog-branding.png", png(7), "image/png")


def test_image_urls_point_at_the_cdn_when_one_is_set(tmp_path: Path) -> None:
    """With HOLLANG_IMAGE_BASE_URL, URLs are absolute under it, with the original's layout."""
    cdn = "https://cdn.example/hollang"
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'h.db'}", image_base_url=cdn + "/")
    for service in start_service(settings):
        with service.client() as client:
            question = client.get("/tests").json()["data"]["test"]["questions"][0]
            assert question["imageUrl"] == f"{cdn}/images/question/question1.JPG"
            taken = client.post("/test-responses", json=submission(scores=(3, 3, 3, 3)))
            recommendation_id = taken.json()["data"]["recommendation"]["id"]
            shown = client.get(f"/recommendations/{recommendation_id}").json()["data"]
            recommendation = shown["recommendation"]
            assert recommendation["hobbyType"]["imageUrl"] == f"{cdn}/images/hobby_type/ENFJ.png"
            for hobby in recommendation["hobbies"]:
                assert hobby["imageUrl"].startswith(f"{cdn}/images/hobby/")
                assert hobby["imageUrl"].endswith(".png")


def handed_out_image_urls(client: httpx.Client) -> set[str]:
    """Every image URL in the test, hobby list and recommendation responses: one
    recommendation per MBTI type (scores 0 or 3 on each of the four axes)."""
    urls = set()
    test = client.get("/tests").json()["data"]["test"]
    urls |= {q["imageUrl"] for q in test["questions"]}
    hobbies = client.get("/hobbies", params={"size": 100}).json()["data"]["hobbies"]
    urls |= {h["imageUrl"] for h in hobbies}
    for scores in itertools.product((0, 3), repeat=4):
        taken = client.post("/test-responses", json=submission(scores=scores))  # type: ignore[arg-type]
        assert taken.status_code == 200, taken.text
        recommendation_id = taken.json()["data"]["recommendation"]["id"]
        for path in (
            f"/recommendations/{recommendation_id}",
            f"/recommendations/{recommendation_id}/shares",
        ):
            shown = client.get(path).json()["data"]["recommendation"]
            kinds = [shown["hobbyType"], *shown.get("fitHobbyTypes", [])]
            for kind in kinds:
                urls |= {kind["imageUrl"], kind["threeDimensionImageUrl"]}
            urls |= {h["imageUrl"] for h in shown["hobbies"]}
    return urls


def catalogue_image_urls() -> set[str]:
    """Every URL the bundled catalogue can hand out, straight from its file."""
    document = json.loads(DEFAULT_CATALOG.read_text())
    images = ImageUrls.from_setting(None)
    urls = {images.hobby(h["imageKey"]) for h in document["hobbies"]}
    for entry in document["hobbyTypes"]:
        urls |= {
            images.hobby_type(entry["mbtiType"]),
            images.hobby_type_animated(entry["mbtiType"]),
        }
    urls |= {images.question(q["number"]) for q in document["test"]["questions"]}
    return urls


def test_a_fresh_install_serves_an_image_for_every_url_it_hands_out(tmp_path: Path) -> None:
    """The embedded default (SQLite, local folder, nothing uploaded): no image URL of any
    response is a 404, each answers with real image bytes of the type its name says."""
    settings = make_settings(tmp_path, f"sqlite:///{tmp_path / 'hollang.db'}")
    for service in start_service(settings):
        with service.client() as client:
            handed_out = handed_out_image_urls(client)
            every = catalogue_image_urls()
            assert handed_out <= every
            kinds = {url.split("/")[2] for url in handed_out}
            assert kinds == {"hobby", "hobby_type", "question"}
            assert any(url.endswith(".gif") for url in handed_out)
            expected = {".png": "image/png", ".gif": "image/gif", ".JPG": "image/jpeg"}
            for url in sorted(every):
                response = client.get(url)
                assert response.status_code == 200, url
                content_type = expected[Path(url).suffix]
                assert response.headers["content-type"] == content_type, url
                assert sniff(response.content) == content_type, url
                assert response.headers["cache-control"] == "public, max-age=86400"
            ready = client.get("/health/ready").json()["data"]
            assert ready["checks"]["images"] == "ok"
            assert ready["status"] == "UP"
            assert list(service.app_services.objects.list("images/")) == []  # nothing copied


def test_readiness_names_the_images_a_loaded_catalogue_lacks(
    objects: StoreUnderTest, tmp_path: Path
) -> None:
    """A catalogue with a hobby the package has no picture for, loaded into a running
    service: readiness names exactly that image (and stays ready), its URL is a 404, and
    an upload clears it. An upload also takes precedence over a placeholder. On the local
    folder and on S3 (where a placeholder is answered directly, not redirected to)."""
    settings = objects.settings(f"sqlite:///{tmp_path / 'hollang.db'}", admin_token=TOKEN)
    for service in start_service(settings):
        document = json.loads(DEFAULT_CATALOG.read_text())
        extra = {
            **document["hobbies"][0],
            "originalName": "스카이다이빙 입문",
            "imageKey": "sky-diving",
        }
        document["hobbies"].append(extra)
        with service.db.write() as session:
            load_catalog(session, json.dumps(document).encode(), "with a new hobby")
        with service.client() as client:
            checks = wait_for_images_check(client, lambda value: value != "ok")
            assert checks["images"] == "missing 1: hobby/sky-diving.png"
            assert client.get("/health/ready").status_code == 200
            assert client.get("/images/hobby/sky-diving.png").status_code == 404
            placeholder = client.get("/images/hobby/running-crew.png", follow_redirects=False)
            assert placeholder.status_code == 200  # from the package, whatever the store
            assert placeholder.headers["content-type"] == "image/png"
            uploaded = client.put(
                "/admin/images/hobby/sky-diving.png", content=png(9), headers=AUTH
            )
            assert uploaded.status_code == 200, uploaded.text
            assert wait_for_images_check(client, lambda value: value == "ok")["images"] == "ok"
            expect_image(client, "/images/hobby/sky-diving.png", png(9), "image/png")
            # An uploaded image replaces the placeholder under the same key.
            assert placeholder.content != png(10)
            client.put("/admin/images/hobby/running-crew.png", content=png(10), headers=AUTH)
            expect_image(client, "/images/hobby/running-crew.png", png(10), "image/png")


def wait_for_images_check(client: httpx.Client, done: object) -> dict[str, str]:
    """The readiness checks once `done(checks["images"])`: the catalogue is polled and the
    check runs in the background, so the new state shows up within a few polls."""
    deadline = time.monotonic() + 20
    while True:
        checks: dict[str, str] = client.get("/health/ready").json()["data"]["checks"]
        if done(checks["images"]) or time.monotonic() > deadline:  # type: ignore[operator]
            return checks
        time.sleep(0.1)
