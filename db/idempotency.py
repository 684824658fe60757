"""Idempotency keys: a retried POST gets the first response back and writes nothing.

A key row is inserted FIRST in the transaction that does the work, and filled with the
response at its end, so a key exists exactly when its work was committed: a failed write
leaves no key, and the client's retry does the work then. The key is the primary key,
so a second request with the same key, on any replica, cannot commit a second copy:

- MySQL/InnoDB: its INSERT waits on the first transaction's row lock, then fails with a
  duplicate key once that one commits (or succeeds, if it rolled back).
- SQLite: writers are serialised (`BEGIN IMMEDIATE`), so it fails at once.

The loser then reads the committed row and answers with the winner's response, so two
clients racing with one key both get the same result. Nobody ever sees a half-filled row:
it is only visible after the commit that filled it.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import IdempotencyKey
from db.session import Database

KEY_MAX = 255


class KeyReused(ValueError):
    """The key was first used with a different request; its response cannot be replayed."""


@dataclass(frozen=True)
class StoredResponse:
    status: int
    body: str  # the exact JSON text the first request answered
    replayed: bool  # True when this is the first request's response, given again


def fingerprint(*parts: object) -> str:
    """A hash of what the request asks for (its canonical JSON), to spot a reused key."""
    canonical = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(canonical.encode()).hexdigest()


_FIND = select(
    IdempotencyKey.request_sha256, IdempotencyKey.response_status, IdempotencyKey.response_body
).where(IdempotencyKey.key == bindparam("key"))


def find_response(connection: Connection, key: str, request_sha256: str) -> StoredResponse | None:
    """The committed response for `key`, or None; raises KeyReused for another request."""
    row = connection.execute(_FIND, {"key": key}).first()
    if row is None:
        return None
    stored_sha256, status, body = row
    if stored_sha256 != request_sha256:
        raise KeyReused(f"idempotency key {key!r} was used with a different request")
    if status is None or body is None:  # pragma: no cover
        raise AssertionError("a committed idempotency key always has its response")
    return StoredResponse(status, body, replayed=True)


def lookup(db: Database, key: str, request_sha256: str) -> StoredResponse | None:
    """Check before doing any work, so a retry never depends on the model or the load.

    A Core connection, not a session: this runs before every keyed submission, and the
    ORM's session and identity map cost more CPU than the one-row query."""
    with db.read_connection() as connection:
        return find_response(connection, key, request_sha256)


def run_once(
    db: Database,
    key: str,
    request_sha256: str,
    work: Callable[[Session], tuple[int, str]],
) -> StoredResponse:
    """Run `work` (returning status and JSON body) in one transaction with the key's row,
    unless `key` was committed already, in which case its stored response is returned."""

    def transaction(session: Session) -> StoredResponse:
        session.execute(insert(IdempotencyKey).values(key=key, request_sha256=request_sha256))
        status, body = work(session)
        session.execute(
            update(IdempotencyKey)
            .where(IdempotencyKey.key == key)
            .values(response_status=status, response_body=body)
        )
        return StoredResponse(status, body, replayed=False)

    try:
        return db.transact(transaction)
    except IntegrityError:
        # Most likely another request committed this key first; anything else re-raises.
        stored = lookup(db, key, request_sha256)
        if stored is None:
            raise
        return stored
