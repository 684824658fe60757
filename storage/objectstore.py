"""One small object-store interface; the embedded default keeps objects in a local folder.

Conditional writes (`if_match` / `if_none_match`) are part of the interface because the
model registry's "active" pointer must not be clobbered by two operators at once. An ETag
is the hex MD5 of the object's bytes, as S3 reports for single-part uploads, so both
implementations agree on it.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Protocol


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


class ObjectStore(Protocol):
    """What every implementation offers; keys are '/'-separated relative paths."""

    def get(self, key: str) -> StoredObject: ...

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str: ...

    def exists(self, key: str) -> bool: ...

    def describe(self) -> str: ...


def etag_of(data: bytes) -> str:
    return hashlib.md5(data, usedforsecurity=False).hexdigest()


class LocalObjectStore:
    """Objects as files under one root folder, safe across processes on one machine.

    Writes go to a temporary file and are renamed into place, so readers never see half an
    object; conditional writes hold an exclusive `flock` on a sibling lock file while they
    compare and replace.
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)

    def describe(self) -> str:
        return f"local folder {self.root}"

    def _path(self, key: str) -> Path:
        pure = PurePosixPath(key)
        if pure.is_absolute() or not key or any(part in ("..", "") for part in pure.parts):
            raise ValueError(f"invalid object key {key!r}")
        return self.root.joinpath(*pure.parts)

    def get(self, key: str) -> StoredObject:
        try:
            data = self._path(key).read_bytes()
        except FileNotFoundError:
            raise ObjectNotFound(key) from None
        except OSError as exc:
            raise ObjectStoreError(f"cannot read {key}: {exc.strerror}") from exc
        return StoredObject(key=key, data=data, etag=etag_of(data))

    def exists(self, key: str) -> bool:
        return self._path(key).is_file()

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        path = self._path(key)
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            with self._locked(path):
                if if_none_match and path.exists():
                    raise PreconditionFailed(f"{key} already exists")
                if if_match is not None:
                    current = etag_of(path.read_bytes()) if path.exists() else None
                    if current != if_match:
                        raise PreconditionFailed(f"{key} changed since it was read")
                fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
                try:
                    with os.fdopen(fd, "wb") as handle:
                        handle.write(data)
                        handle.flush()
                        os.fsync(handle.fileno())
                    os.replace(tmp, path)
                except BaseException:
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(tmp)
                    raise
        except OSError as exc:
            raise ObjectStoreError(f"cannot write {key}: {exc.strerror}") from exc
        return etag_of(data)

    @contextlib.contextmanager
    def _locked(self, path: Path) -> Iterator[None]:
        with open(path.with_name(f".{path.name}.lock"), "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock, fcntl.LOCK_UN)
