"""One small object-store interface; the embedded default keeps objects in a local folder.

Conditional writes (`if_match` / `if_none_match`) are part of the interface because the
model registry's "active" pointer must not be clobbered by two operators at once. An ETag
is the hex MD5 of the object's bytes, as S3 reports for single-part uploads, so both
implementations agree on it.

`content_type` and `cache_control` are stored as object metadata on S3 (a CDN or a
presigned URL serves them); the local folder keeps bytes only, and whoever serves a local
object derives the headers from the key (see `server/images.py`).
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import mimetypes
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Protocol

CHUNK_SIZE = 64 * 1024


class ObjectStoreError(RuntimeError):
    """The store could not be reached or refused the operation."""


class ObjectNotFound(ObjectStoreError):
    """No object under that key."""


class PreconditionFailed(ObjectStoreError):
    """A conditional write lost: the object changed (or appeared) since it was read."""


@dataclass(frozen=True)
class StoredObject:
    key: str
    data: bytes
    etag: str
    content_type: str = "application/octet-stream"


@dataclass(frozen=True)
class ObjectStream:
    """An object being read in chunks; `chunks` releases the source when exhausted."""

    key: str
    size: int
    content_type: str
    chunks: Iterator[bytes]


class ObjectStore(Protocol):
    """What every implementation offers; keys are '/'-separated relative paths."""

    def get(self, key: str) -> StoredObject: ...

    def open(self, key: str) -> ObjectStream:
        """Start streaming an object; raises `ObjectNotFound` before any chunk is read."""
        ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        cache_control: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str: ...

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str = "application/octet-stream",
        cache_control: str | None = None,
    ) -> None:
        """Upload a (possibly large) file without reading it into memory."""
        ...

    def exists(self, key: str) -> bool: ...

    def list(self, prefix: str) -> Iterator[str]:
        """Keys under `prefix`, in lexical order."""
        ...

    def url(self, key: str, *, expires_in: int) -> str | None:
        """A URL a browser can fetch the object from (presigned), or None if there is none."""
        ...

    def describe(self) -> str: ...


def etag_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


def check_key(key: str) -> str:
    """The same keys on every store: relative, '/'-separated, no empty, '.' or '..' part."""
    if not key or any(part in ("", ".", "..") for part in key.split("/")):
        raise ValueError(f"invalid object key {key!r}")
    return key


def guess_content_type(key: str) -> str:
    return mimetypes.guess_type(key)[0] or "application/octet-stream"


class LocalObjectStore:
    """Objects as files under one root folder, safe across processes on one machine.

    Writes go to a temporary file and are renamed into place, so readers never see half an
    object; conditional writes hold an exclusive `flock` on a sibling lock file while they
    compare and replace. Temporary and lock files start with a dot and are never listed.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        return self.root.joinpath(*check_key(key).split("/"))

    def get(self, key: str) -> StoredObject:
        try:
            data = self._path(key).read_bytes()
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {key}: {exc.strerror}") from exc
        return StoredObject(
            key=key, data=data, etag=etag_of(data), content_type=guess_content_type(key)
        )

    def open(self, key: str) -> ObjectStream:
        path = self._path(key)
        try:
            handle = path.open("rb")
            size = os.fstat(handle.fileno()).st_size
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {key}: {exc.strerror}") from exc
        return ObjectStream(key, size, guess_content_type(key), _chunks_of(handle))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def list(self, prefix: str) -> Iterator[str]:
        base = self.root / prefix if prefix else self.root
        if not base.is_dir():
            return iter(())
        keys = [
            path.relative_to(self.root).as_posix()
            for path in base.rglob("*")
            if path.is_file() and not any(part.startswith(".") for part in path.parts)
        ]
        return iter(sorted(keys))

    def url(self, key: str, *, expires_in: int) -> str | None:
        return None

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        cache_control: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        path = self._path(key)

        def check() -> None:
            if if_none_match and path.exists():
                raise PreconditionFailed(f"{key} already exists")
            if if_match is not None:
                current = etag_of(path.read_bytes()) if path.exists() else None
                if current != if_match:
                    raise PreconditionFailed(f"{key} changed since it was read")

        self._replace(path, key, lambda out: out.write(data), check)
        return etag_of(data)

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str = "application/octet-stream",
        cache_control: str | None = None,
    ) -> None:
        def copy(out: BinaryIO) -> None:
            with path.open("rb") as source:
                shutil.copyfileobj(source, out, CHUNK_SIZE)

        self._replace(self._path(key), key, copy, lambda: None)

    def _replace(
        self, path: Path, key: str, write: Callable[[BinaryIO], object], check: Callable[[], None]
    ) -> None:
        """Write to a temporary sibling and rename it over `path`, under the key's lock."""
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(path):
                check()
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        write(handle)
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.chmod(tmp, 0o644)  # mkstemp's 0600 would hide it from a server user
                    os.replace(tmp, path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                    raise
        except OSError as exc:
            raise ObjectStoreError(f"cannot write {key}: {exc.strerror or exc}") from exc

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)


def _chunks_of(handle: BinaryIO) -> Iterator[bytes]:
    with handle:
        while chunk := handle.read(CHUNK_SIZE):
            yield chunk
