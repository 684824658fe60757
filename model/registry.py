"""Model versions and the "active" pointer, kept in an object store every worker can read.

Layout under the store (the same on a local folder and on S3):

- ``models/sha256/<hex>.onnx``: the model files, content-addressed, never overwritten;
- ``models/versions/<version>.json``: which file a version string names (versions are
  immutable: publishing a version again with other bytes is refused);
- ``models/active.json``: the pointer: the active entry, the previously active ones (most
  recent first) and the shadow candidate, if any.

Workers poll the pointer and swap when it moves; operators move it with conditional puts,
so two concurrent activations cannot silently overwrite each other. The shadow lives in the
same document so that one poll tells a replica both what to serve and what to score beside
it, and one conditional put moves either without losing the other.

The history is a stack: an activation pushes the model it replaces, a rollback pops down to
its target, so rolling back again goes one further back instead of toggling between two.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import re
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime

from model.modelfile import ModelFile, ModelFileError
from storage.objectstore import ObjectNotFound, ObjectStore, PreconditionFailed

POINTER_KEY = "models/active.json"
VERSIONS_PREFIX = "models/versions/"
HISTORY_LENGTH = 20
_SAFE_VERSION = re.compile(r"[^A-Za-z0-9._+-]")


class RegistryError(RuntimeError):
    """A registry operation that cannot be done (unknown version, nothing to roll back to)."""


class UnknownVersion(RegistryError):
    """No published model has that version (the admin API answers 404)."""


class CorruptPointer(RegistryError):
    """The pointer object exists but cannot be parsed. Carries the etag of the bytes that
    were read, so an activation can replace exactly them (and no newer repair)."""

    def __init__(self, reason: str, etag: str) -> None:
        super().__init__(
            f"the active model pointer {POINTER_KEY} is unreadable ({reason}); upload a model "
            "or run `hollang model activate VERSION` to overwrite it"
        )
        self.etag = etag


@dataclass(frozen=True)
class RegistryEntry:
    version: str
    sha256: str
    key: str
    activated_at: str = ""

    def to_json(self) -> dict[str, str]:
        return asdict(self)

    def describe(self) -> dict[str, str]:
        """camelCase, for the admin API."""
        return {
            "version": self.version,
            "sha256": self.sha256,
            "key": self.key,
            "activatedAt": self.activated_at,
        }


@dataclass(frozen=True)
class ActivePointer:
    active: RegistryEntry
    history: tuple[RegistryEntry, ...]  # previously active, most recent first
    etag: str
    shadow: RegistryEntry | None = None  # scored beside the active model, never served


class ModelRegistry:
    """Publishes, looks up, fetches and activates model versions in an object store."""

    def __init__(self, store: ObjectStore) -> None:
        self.store = store

    def publish(self, file: ModelFile) -> RegistryEntry:
        """Store a checked model file and record its version; idempotent for the same bytes."""
        version = file.metadata.model_version
        entry = RegistryEntry(version=version, sha256=file.sha256, key=_model_key(file.sha256))
        manifest_key = _version_key(version)
        try:
            existing = json.loads(self.store.get(manifest_key).data)
        except ObjectNotFound:
            existing = None
        if existing is not None and existing["sha256"] != file.sha256:
            raise RegistryError(
                f"version {version!r} is already published with different content; "
                "give the new model its own version string"
            )
        if not self.store.exists(entry.key):
            self.store.put(entry.key, file.data, content_type="application/octet-stream")
        if existing is None:
            body = json.dumps(entry.to_json()).encode()
            # A concurrent publish of the same bytes may win the race; the check above
            # already proved both agree, so losing it is fine.
            with contextlib.suppress(PreconditionFailed):
                self.store.put(
                    manifest_key, body, content_type="application/json", if_none_match=True
                )
        return entry

    def find(self, version: str) -> RegistryEntry:
        try:
            data = json.loads(self.store.get(_version_key(version)).data)
        except ObjectNotFound:
            raise UnknownVersion(f"no published model has version {version!r}") from None
        return RegistryEntry(version=data["version"], sha256=data["sha256"], key=data["key"])

    def versions(self) -> list[RegistryEntry]:
        """Every published version (one small manifest each), in key order."""
        entries = []
        for key in self.store.list(VERSIONS_PREFIX):
            data = json.loads(self.store.get(key).data)
            entries.append(
                RegistryEntry(version=data["version"], sha256=data["sha256"], key=data["key"])
            )
        return entries

    def fetch(self, entry: RegistryEntry) -> ModelFile:
        """Read a model file back, refusing one whose bytes no longer match its address."""
        data = self.store.get(entry.key).data
        if hashlib.sha256(data).hexdigest() != entry.sha256:
            raise ModelFileError(f"stored model {entry.key} is corrupted (sha256 mismatch)")
        file = ModelFile.from_bytes(data)
        if file.metadata.model_version != entry.version:
            raise ModelFileError(f"stored model {entry.key} does not carry version {entry.version}")
        return file

    def read_pointer(self) -> ActivePointer | None:
        """The pointer, None if there is none; `CorruptPointer` if it cannot be parsed.

        Tolerant: fields this version does not know are ignored (a newer version may add
        some), and so is a malformed history entry; only an unusable `active` is an error."""
        try:
            stored = self.store.get(POINTER_KEY)
        except ObjectNotFound:
            return None
        try:
            body = json.loads(stored.data)
        except ValueError as exc:  # truncated, not UTF-8, not JSON
            raise CorruptPointer(f"not JSON: {exc}", stored.etag) from None
        active = _entry(body.get("active")) if isinstance(body, dict) else None
        if active is None:
            raise CorruptPointer("no valid 'active' entry", stored.etag)
        history = body.get("history")
        entries = [_entry(item) for item in history] if isinstance(history, list) else []
        return ActivePointer(
            active=active,
            history=tuple(entry for entry in entries if entry is not None),
            etag=stored.etag,
            shadow=_entry(body.get("shadow")),  # a malformed shadow is no shadow
        )

    def activate(
        self,
        entry: RegistryEntry,
        expected: ActivePointer | CorruptPointer | None,
        *,
        history: tuple[RegistryEntry, ...] | None = None,
    ) -> ActivePointer:
        """Point at `entry` if the pointer is still `expected`; else `PreconditionFailed`.

        The replaced model is pushed onto the history unless `history` is given (a rollback
        passes what remains below its target). The shadow is kept, unless it is the model
        now activated: a promoted candidate has nothing left to be compared with.
        `expected` may be a `CorruptPointer`: it is then replaced (if still those bytes),
        with an empty history."""
        stamped = replace(entry, activated_at=datetime.now(UTC).isoformat(timespec="seconds"))
        shadow: RegistryEntry | None = None
        if isinstance(expected, ActivePointer):
            if history is None:
                history = (expected.active, *expected.history)
            if expected.shadow is not None and expected.shadow.sha256 != entry.sha256:
                shadow = expected.shadow
        return self._write(stamped, (history or ())[:HISTORY_LENGTH], shadow, expected)

    def set_shadow(self, entry: RegistryEntry | None, expected: ActivePointer) -> ActivePointer:
        """Name `entry` as the shadow (None: no shadow) if the pointer is still `expected`;
        else `PreconditionFailed`. The active model and the history are unchanged."""
        if entry is not None:
            entry = replace(entry, activated_at=datetime.now(UTC).isoformat(timespec="seconds"))
        return self._write(expected.active, expected.history, entry, expected)

    def _write(
        self,
        active: RegistryEntry,
        history: tuple[RegistryEntry, ...],
        shadow: RegistryEntry | None,
        expected: ActivePointer | CorruptPointer | None,
    ) -> ActivePointer:
        document: dict[str, object] = {
            "active": active.to_json(),
            "history": [item.to_json() for item in history],
        }
        if shadow is not None:
            document["shadow"] = shadow.to_json()
        etag = self.store.put(
            POINTER_KEY,
            json.dumps(document, ensure_ascii=False).encode(),
            content_type="application/json",
            if_match=expected.etag if expected is not None else None,
            if_none_match=expected is None,
        )
        return ActivePointer(active=active, history=history, etag=etag, shadow=shadow)

    def previous(self, pointer: ActivePointer) -> RegistryEntry:
        """The most recently active version that differs from the current one."""
        return self.rollback_target(pointer)[0]

    def rollback_target(
        self, pointer: ActivePointer, to: str | None = None
    ) -> tuple[RegistryEntry, tuple[RegistryEntry, ...]]:
        """Where a rollback goes, and the history that remains below it.

        Without `to`: the most recent history entry that differs from the active model.
        With `to`: the most recent history entry of that version. Everything above the
        target is dropped, which is what makes the next rollback go one further back."""
        for index, entry in enumerate(pointer.history):
            if (entry.version == to) if to is not None else (entry.sha256 != pointer.active.sha256):
                return entry, pointer.history[index + 1 :]
        if to is None:
            raise RegistryError("there is no previous model version to roll back to")
        if to == pointer.active.version:
            raise RegistryError(f"model {to!r} is already the active one")
        raise RegistryError(
            f"model {to!r} is not in the activation history; to make a published version "
            "active, run `hollang model activate VERSION`"
        )


def _entry(item: object) -> RegistryEntry | None:
    """A pointer entry from JSON, ignoring unknown fields; None if a needed one is wrong."""
    if not isinstance(item, dict):
        return None
    values = {name: item.get(name) for name in ("version", "sha256", "key")}
    activated_at = item.get("activated_at", "")
    if not all(isinstance(value, str) and value for value in values.values()):
        return None
    return RegistryEntry(
        version=str(values["version"]),
        sha256=str(values["sha256"]),
        key=str(values["key"]),
        activated_at=activated_at if isinstance(activated_at, str) else "",
    )


def _model_key(sha256: str) -> str:
    return f"models/sha256/{sha256}.onnx"


def _version_key(version: str) -> str:
    digest = hashlib.sha256(version.encode()).hexdigest()[:8]
    return f"{VERSIONS_PREFIX}{_SAFE_VERSION.sub('_', version)}-{digest}.json"
