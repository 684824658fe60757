"""The object-store contract, the same cases on a local folder and on S3 (moto over HTTP)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import httpx
import pytest

from storage.objectstore import ObjectNotFound, ObjectStoreError, PreconditionFailed
from storage.s3 import S3ObjectStore
from tests.helpers import free_port
from tests.s3support import StoreUnderTest, chunks


def test_put_get_stream_list(objects: StoreUnderTest) -> None:
    store = objects.store
    etag = store.put("a/b/one.json", b'{"x": 1}', content_type="application/json")
    assert etag == hashlib.md5(b'{"x": 1}').hexdigest()
    stored = store.get("a/b/one.json")
    assert (stored.data, stored.etag) == (b'{"x": 1}', etag)
    store.put("a/b/two.bin", b"\x00" * 10)
    store.put("a/c.txt", b"c")
    stream = store.open("a/b/two.bin")
    assert stream.size == 10
    assert chunks(stream.chunks) == b"\x00" * 10
    assert list(store.list("a/b/")) == ["a/b/one.json", "a/b/two.bin"]
    assert list(store.list("a/")) == ["a/b/one.json", "a/b/two.bin", "a/c.txt"]
    assert list(store.list("nothing/")) == []
    assert store.exists("a/c.txt") and not store.exists("a/missing")
    with pytest.raises(ObjectNotFound):
        store.get("a/missing")
    with pytest.raises(ObjectNotFound):
        store.open("a/missing")


def test_conditional_put_conflicts(objects: StoreUnderTest) -> None:
    store = objects.store
    first = store.put("pointer.json", b"v1", if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("pointer.json", b"v1-again", if_none_match=True)
    # Two operators read the same pointer; the first write wins, the second is refused.
    second = store.put("pointer.json", b"v2", if_match=first)
    with pytest.raises(PreconditionFailed):
        store.put("pointer.json", b"v3", if_match=first)
    assert store.get("pointer.json").data == b"v2"
    store.put("pointer.json", b"v3", if_match=second)
    with pytest.raises(PreconditionFailed):
        store.put("never-written.json", b"x", if_match=first)
    assert not store.exists("never-written.json")


def test_put_file_streams_a_large_file(objects: StoreUnderTest, tmp_path: Path) -> None:
    """17 MiB: above the S3 multipart threshold (16 MiB), so S3 takes it in parts."""
    path = tmp_path / "big.bin"
    with path.open("wb") as out:
        for _ in range(17):
            out.write(os.urandom(1024 * 1024))
    store = objects.store
    store.put_file("exports/big.bin", path, content_type="application/gzip")
    stream = store.open("exports/big.bin")
    digest = hashlib.sha256()
    for chunk in stream.chunks:
        digest.update(chunk)
    assert stream.size == path.stat().st_size
    assert digest.hexdigest() == hashlib.sha256(path.read_bytes()).hexdigest()


def test_url_is_presigned_on_s3_and_none_locally(objects: StoreUnderTest) -> None:
    store = objects.store
    store.put(
        "images/x.png", b"\x89PNG\r\n\x1a\nrest", content_type="image/png", cache_control="public"
    )
    url = store.url("images/x.png", expires_in=600)
    if objects.kind == "local":
        assert url is None
        return
    assert url is not None and "X-Amz-Signature=" in url
    response = httpx.get(url)
    assert response.status_code == 200
    assert response.content == b"\x89PNG\r\n\x1a\nrest"
    assert response.headers["content-type"] == "image/png"
    assert response.headers["cache-control"] == "public"


@pytest.mark.parametrize("key", ["", "/abs", "a/../b", "a//b"])
def test_invalid_keys_are_refused(objects: StoreUnderTest, key: str) -> None:
    with pytest.raises(ValueError):
        objects.store.put(key, b"x")


def test_unreachable_s3_is_a_store_error_not_a_hang() -> None:
    """A closed port: every call fails with ObjectStoreError after botocore's retries."""
    store = S3ObjectStore(
        "bucket",
        endpoint_url=f"http://127.0.0.1:{free_port()}",
        connect_timeout=1,
        read_timeout=1,
        max_attempts=2,
    )
    for call in (
        lambda: store.get("k"),
        lambda: store.put("k", b"x", if_match="0" * 32),
        lambda: store.exists("k"),
        lambda: list(store.list("")),
        lambda: store.open("k"),
    ):
        with pytest.raises(ObjectStoreError) as caught:
            call()
        assert not isinstance(caught.value, ObjectNotFound | PreconditionFailed)
