"""Submissions that arrive together are written in one transaction.

Per submission, a write is a handful of tiny statements and a commit, and each commit bumps
three of the same nineteen hot `recommend_count` rows: alone, concurrent submissions queue
on those locks and on the access layer's per-transaction CPU. `SubmissionWriter` gathers
them with the inference batcher's adaptive rule (`batching.adaptive.AdaptiveBatcher`: a lone
submission is written at once; when others are queued, it gathers while they keep
arriving, bounded by `HOLLANG_WRITE_MAX_DELAY_MS` and `HOLLANG_WRITE_MAX_BATCH`), and
writes the whole batch with `db.recommendations.write_submissions`: a fixed number of
multi-row statements, one +k per hobby, one commit. Each caller is answered with its own
ids only after that commit returned.

- **Idempotency keys.** The key rows are inserted first in the batch's transaction and
  filled with their responses at its end, as `db.idempotency.run_once` does for one: a
  key exists exactly when its submission does. Within a batch, the first submission with
  a key writes; later ones with that key are replays of it (or `KeyReused`, for another
  body). A key another process committed meanwhile fails the batch's key insert, and
  the member retried alone replays it.
- **Failure isolation.** A batch that fails for a reason that may lie in one member's rows
  is retried one member at a time, each in its own transaction, so a bad row fails only
  its own request. A failure of the database itself (a lost connection, a full pool, a
  lock wait timeout) fails every member at once: retrying each alone would only multiply
  the wait.
- One batch is written at a time per process (its own writer thread); while it is in the
  database the next one gathers, so under load batches grow by themselves.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from sqlalchemy import Connection, bindparam, case, update
from sqlalchemy.exc import DBAPIError, IntegrityError, InterfaceError
from sqlalchemy.exc import TimeoutError as PoolTimeout

from batching.adaptive import AdaptiveBatcher, BatchSettings, BatchStats
from db.idempotency import KeyReused, StoredResponse, lookup
from db.models import IdempotencyKey
from db.recommendations import Recorded, Submission, write_submissions
from db.session import Database

OK = 200
# Not a member's fault: lock wait timeout, and the client's connection errors (MySQL/MariaDB)
_DATABASE_FAILING = frozenset({1205, 2002, 2003, 2005, 2006, 2013, 2055})
_FILL_ONE_KEY = (
    update(IdempotencyKey)
    .where(IdempotencyKey.key == bindparam("k"))
    .values(response_status=OK, response_body=bindparam("body"))
)


@dataclass(frozen=True)
class PendingWrite:
    """One submission to store; with a key, `render` turns its ids into the response body
    that the key's row keeps for replays."""

    submission: Submission
    key: str | None = None
    request_sha256: str = ""
    render: Callable[[Recorded], str] | None = None


WriteResult = Recorded | StoredResponse  # a keyed write is answered with its stored response


class SubmissionWriter(AdaptiveBatcher[PendingWrite, WriteResult]):
    """The write batcher of one process; `observe(size)` is told each batch's size."""

    what = "write"

    def __init__(
        self,
        db: Database,
        settings: BatchSettings,
        observe: Callable[[int], None] | None = None,
        returning: bool | None = None,
        script: bool | None = None,
    ) -> None:
        super().__init__(settings, BatchStats())
        self._db = db
        self._observe = observe
        # None: what the database does best (`write_submissions`); tests force each way
        self._returning = returning
        self._script = script
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="hollang-writes")

    async def close(self) -> None:
        """Write and commit everything queued, then stop the writer thread."""
        await super().close()
        self._executor.shutdown(wait=True)

    async def _run_batch(
        self, batch: list[tuple[PendingWrite, asyncio.Future[WriteResult]]]
    ) -> None:
        loop = asyncio.get_running_loop()
        items = [item for item, _ in batch]
        try:
            outcomes = await loop.run_in_executor(self._executor, self.write, items)
        except BaseException as exc:  # pragma: no cover - `write` returns its failures
            outcomes = [exc] * len(items)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if future.done():  # the caller went away; its rows are committed regardless
                continue
            if isinstance(outcome, BaseException):
                future.set_exception(outcome)
            else:
                future.set_result(outcome)

    def write(self, items: Sequence[PendingWrite]) -> list[WriteResult | BaseException]:
        """Write `items` (in the calling thread): together, or one by one if that failed."""
        leaders: dict[str, int] = {}  # key -> index of its first item in this batch
        writers: list[int] = []
        for index, item in enumerate(items):
            if item.key is not None and item.key in leaders:
                continue
            if item.key is not None:
                leaders[item.key] = index
            writers.append(index)
        outcomes: list[WriteResult | BaseException | None] = [None] * len(items)
        started = time.perf_counter()
        try:
            written = self._db.transact_core(
                lambda connection: self._transaction(connection, [items[i] for i in writers])
            )
        except Exception as exc:
            self.stats.failed_batches += 1
            if len(writers) == 1 or not _may_lie_in_one_row(exc):
                for index in writers:
                    outcomes[index] = self._recover(items[index], exc)
            else:
                for index in writers:
                    outcomes[index] = self._write_alone(items[index], outcomes)
        else:
            self._committed(len(writers), started)
            for index, result in zip(writers, written, strict=True):
                outcomes[index] = result
        for index, item in enumerate(items):
            if outcomes[index] is None:  # a later item with a key already in this batch
                assert item.key is not None
                first = leaders[item.key]
                outcomes[index] = self._follow(item, items[first], outcomes[first], outcomes)
        return [outcome for outcome in outcomes if outcome is not None]

    def _follow(
        self,
        item: PendingWrite,
        leader: PendingWrite,
        outcome: WriteResult | BaseException | None,
        outcomes: Sequence[WriteResult | BaseException | None],
    ) -> WriteResult | BaseException:
        """A second use of a key within one batch: the first one's response, replayed."""
        if isinstance(outcome, StoredResponse):
            if item.request_sha256 != leader.request_sha256:
                return KeyReused(f"idempotency key {item.key!r} was used with a different request")
            return StoredResponse(outcome.status, outcome.body, replayed=True)
        # The first one failed, so nothing is stored for the key: this one tries by itself.
        return self._write_alone(item, outcomes)

    def _write_alone(
        self, item: PendingWrite, outcomes: Sequence[WriteResult | BaseException | None]
    ) -> WriteResult | BaseException:
        """`item` in a transaction of its own, unless the database itself is failing (as an
        earlier member of this batch found out): then it shares that failure at once."""
        down = [o for o in outcomes if isinstance(o, Exception) and not _may_lie_in_one_row(o)]
        if down:
            return down[0]
        started = time.perf_counter()
        try:
            result = self._db.transact_core(lambda c: self._transaction(c, [item]))[0]
        except Exception as exc:
            return self._recover(item, exc)
        self._committed(1, started)
        return result

    def _committed(self, size: int, started: float) -> None:
        self.stats.record(size, time.perf_counter() - started)
        if self._observe is not None:
            self._observe(size)

    def _recover(self, item: PendingWrite, exc: Exception) -> WriteResult | BaseException:
        """A keyed write that lost to another process's commit of its key replays that one
        (as `run_once` does); any other failure is the caller's to answer."""
        if item.key is None or not isinstance(exc, IntegrityError):
            return exc
        try:
            stored = lookup(self._db, item.key, item.request_sha256)
        except Exception as failure:  # KeyReused: the key was committed for another body
            return failure
        return stored if stored is not None else exc

    def _transaction(
        self, connection: Connection, items: Sequence[PendingWrite]
    ) -> list[WriteResult]:
        # The keys' rows go first, as in run_once: a racing writer of the same key waits there.
        keys = [(item.key, item.request_sha256) for item in items if item.key is not None]
        recorded = write_submissions(
            connection,
            [item.submission for item in items],
            returning=self._returning,
            script=self._script,
            keys=keys,
        )
        results: list[WriteResult] = []
        bodies: dict[str, str] = {}
        for item, ids in zip(items, recorded, strict=True):
            if item.key is None:
                results.append(ids)
                continue
            if item.render is None:
                raise ValueError("a keyed write needs `render` to build its stored response")
            bodies[item.key] = item.render(ids)
            results.append(StoredResponse(OK, bodies[item.key], replayed=False))
        if bodies:
            _fill_keys(connection, bodies)
        return results


def _fill_keys(connection: Connection, bodies: dict[str, str]) -> None:
    """The keys' responses, in one UPDATE whatever their number."""
    if len(bodies) == 1:
        ((key, body),) = bodies.items()
        connection.execute(_FILL_ONE_KEY, {"k": key, "body": body})
        return
    connection.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.key.in_(list(bodies)))
        .values(response_status=OK, response_body=case(bodies, value=IdempotencyKey.key))
    )


def _may_lie_in_one_row(exc: BaseException) -> bool:
    """False for failures of the database itself, which every member would meet again."""
    if isinstance(exc, InterfaceError | PoolTimeout):
        return False
    if isinstance(exc, DBAPIError):
        if exc.connection_invalidated:
            return False
        orig = exc.orig
        code = orig.args[0] if orig is not None and getattr(orig, "args", None) else None
        if code in _DATABASE_FAILING or "database is locked" in str(orig):
            return False
    return True
