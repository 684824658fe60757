"""Engines and sessions: the one way to open a database session.

`Database.write()` opens a transaction meant to write; on SQLite it starts with
`BEGIN IMMEDIATE` so two writers queue on the busy timeout instead of deadlocking when a
read lock must be upgraded; `Database.write_connection()` is the same transaction on a bare
Core connection, for the batched write path, which needs no ORM session.
`Database.read()` is a plain session. MySQL connections have connect/read/write timeouts so
a dead server gives an error in bounded time, and the service recovers by itself when the
server comes back: a failed statement on a dead connection invalidates the whole pool, and
a connection is pinged before use when it sat idle or after any database error (see
`_ping_when_in_doubt`).

Writes that fail because the storage refuses them (disk full, read-only, an I/O error, the
SQLite file replaced or deleted, MySQL in read-only mode) are remembered until a write
succeeds, on either write path, so readiness can tell the truth (`Database.check`). A
SQLite file that existed when the engine was made is opened `mode=rw`: if it disappears,
connecting fails instead of creating an empty database in its place; and a write on a
connection whose file is no longer the one at the path is refused (`DatabaseFileChanged`)
and the pool is emptied, so no write is acknowledged into a deleted file and new
connections open the new one.
"""

from __future__ import annotations

import os
import sqlite3
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import URL, ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.orm import Session, sessionmaker

_IMMEDIATE = "hollang_sqlite_immediate"
_FILE = "hollang_sqlite_file"  # (st_dev, st_ino) of the file a connection opened
_DEADLOCK = 1213  # MySQL rolled the whole transaction back at once; running it again is safe
# A connection unused for longer than this is pinged before it is handed out; so is every
# connection for a while after any database error (see `_ping_when_in_doubt`).
PING_AFTER_IDLE = 1.0  # seconds
PING_AFTER_ERROR = 10.0  # seconds
MULTI_STATEMENTS = 1 << 16  # MySQL's CLIENT.MULTI_STATEMENTS capability flag
T = TypeVar("T")

# SQLite result codes (and their extended codes, e.g. SQLITE_IOERR_WRITE,
# SQLITE_READONLY_DBMOVED) that mean the storage, not the request, refused a write.
_SQLITE_STORAGE = (
    "SQLITE_FULL",
    "SQLITE_READONLY",
    "SQLITE_IOERR",
    "SQLITE_CANTOPEN",
    "SQLITE_CORRUPT",
    "SQLITE_NOTADB",
)
# MySQL/MariaDB errors of the same kind.
_MYSQL_STORAGE = {
    3: "error writing a file",
    1021: "disk full",
    1030: "storage engine error",
    1036: "table is read only",
    1114: "table is full",
    1142: "write privilege missing",
    1290: "read-only (--read-only)",
    1792: "read-only transaction",
    1836: "read-only mode",
}
PROBE = "UPDATE alembic_version SET version_num = version_num"  # a write that changes nothing


class DatabaseFileChanged(OperationalError):
    """The SQLite file behind a connection is no longer the file at the configured path."""

    def __init__(self, path: str) -> None:
        message = f"the database file {path} was replaced or deleted since it was opened"
        super().__init__(None, None, sqlite3.OperationalError(message))
        self.reason = message


def storage_fault(exc: BaseException) -> str | None:
    """Why a write failed, when the storage refused it; None for anything else (a lock
    wait, a lost connection, a constraint, a bug)."""
    if isinstance(exc, DatabaseFileChanged):
        return exc.reason
    orig = getattr(exc, "orig", None)
    if orig is None:
        return None
    name = getattr(orig, "sqlite_errorname", None)
    if isinstance(name, str):
        return f"{name}: {orig}" if name.startswith(_SQLITE_STORAGE) else None
    args: tuple[object, ...] = tuple(getattr(orig, "args", ()))
    if args and isinstance(args[0], int) and args[0] in _MYSQL_STORAGE:
        return f"MySQL {args[0]} ({_MYSQL_STORAGE[args[0]]}): {args[1] if len(args) > 1 else ''}"
    return None


def sqlite_file(url: URL) -> str | None:
    """The path of a SQLite database file, None for memory or another backend."""
    if url.get_backend_name() != "sqlite" or url.database in (None, "", ":memory:"):
        return None
    database = str(url.database)
    if database.startswith("file:"):  # a URI (make_engine's mode=rw): percent-encoded
        return unquote(database.removeprefix("file:"))
    return database


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except FileNotFoundError:
        return None
    return stat.st_dev, stat.st_ino


def _refuse_if_moved(connection: Any, engine: Engine, path: str) -> None:
    """Raise `DatabaseFileChanged`, after emptying the pool, if the connection's file is not
    the one at `path` any more: every pooled connection has the old file open."""
    if connection.info.get(_FILE) != _identity(path):
        connection.invalidate()
        engine.dispose()
        raise DatabaseFileChanged(path)


def is_retryable(exc: BaseException) -> bool:
    """A deadlock between transactions (not a fault), detected at once.

    Lock-wait timeouts are not retried: they already cost seconds, and a retry would push
    the request past what a browser waits for.
    """
    if not isinstance(exc, DBAPIError) or exc.orig is None:
        return False
    args: tuple[object, ...] = tuple(getattr(exc.orig, "args", ()))
    return bool(args) and args[0] == _DEADLOCK


def make_engine(
    url: str, *, pool_size: int = 10, max_overflow: int = 20, multi_statements: bool = False
) -> Engine:
    """An engine tuned for its backend. `multi_statements` (MySQL only): its connections run
    scripts of several statements sent at once; only the write batcher's engine has it."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        path = sqlite_file(parsed)
        if path is not None and Path(path).exists() and not parsed.query:
            # An existing database must stay the one we use: never create a new, empty
            # file in its place (module docstring).
            parsed = parsed.set(database=f"file:{quote(path)}", query={"mode": "rw", "uri": "true"})
        engine = create_engine(
            # Writers queue on the busy timeout; 4 s keeps a request well inside a browser's
            # 5 s patience, so contention fails fast (and is retried) instead of hanging.
            parsed,
            # No pre-ping: a file does not disconnect (its replacement is checked instead).
            connect_args={"timeout": 4, "check_same_thread": False},
        )
        _tune_sqlite(engine, path)
        return engine
    if parsed.get_backend_name() == "mysql":
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        if multi_statements:  # the dialect adds CLIENT.FOUND_ROWS to it, as it always does
            query["client_flag"] = str(MULTI_STATEMENTS)
        parsed = parsed.set(query=query)
        engine = create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=5,
            pool_recycle=1800,
            connect_args={
                "connect_timeout": 3,
                "read_timeout": 10,
                "write_timeout": 10,
                # Lock waits fail in seconds, not InnoDB's default 50 s; `transact` retries.
                "init_command": "SET SESSION innodb_lock_wait_timeout = 5",
            },
        )
        _ping_when_in_doubt(engine)
        return engine
    return create_engine(parsed, pool_pre_ping=True)


def _ping_when_in_doubt(engine: Engine) -> None:
    """Pre-ping a connection only when it may be dead: it sat idle for `PING_AFTER_IDLE`,
    or any statement failed in the last `PING_AFTER_ERROR` seconds.

    SQLAlchemy's `pool_pre_ping` pings on every checkout: one round trip and 10-17 µs of CPU
    per checkout measured here (README, Batched submissions), to catch a server that went
    away, which a busy connection finds out on its first statement anyway. That first
    failure invalidates the whole pool (SQLAlchemy's default on a disconnect), so the next
    checkouts reconnect, and the error window makes every checkout ping while the server
    may still be flapping.
    A ping that fails raises `DisconnectionError`, on which the pool replaces the connection
    and tries again, exactly as pre-ping does. Fresh connections are never pinged.
    """
    last_error = [float("-inf")]

    @event.listens_for(engine, "checkin")
    def _on_checkin(_dbapi_connection: Any, record: Any) -> None:
        record.info["hollang_idle_since"] = time.monotonic()

    @event.listens_for(engine, "checkout")
    def _on_checkout(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
        idle_since = record.info.get("hollang_idle_since")
        now = time.monotonic()
        if idle_since is None:  # a new connection (`info` starts empty): it just connected
            return
        if now - idle_since < PING_AFTER_IDLE and now - last_error[0] > PING_AFTER_ERROR:
            return
        try:
            engine.dialect.do_ping(dbapi_connection)
        except Exception as exc:
            raise DisconnectionError(f"connection failed its ping: {exc}") from exc

    @event.listens_for(engine, "handle_error")
    def _on_error(_context: ExceptionContext) -> None:
        last_error[0] = time.monotonic()


def _tune_sqlite(engine: Engine, path: str | None) -> None:
    @event.listens_for(engine, "do_connect")
    def _before_connect(_dialect: Any, record: Any, _args: Any, _params: Any) -> None:
        if path is not None:
            record.info[_FILE] = _identity(path)

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, record: Any) -> None:
        if path is not None and record.info.get(_FILE) != _identity(path):
            # Replaced while connecting: which file this connection has is unknown, so
            # its first write is refused (`_refuse_if_moved`) and it is replaced.
            record.info[_FILE] = "unknown"
        dbapi_connection.isolation_level = None  # we issue BEGIN ourselves (see below)
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA foreign_keys=ON")
        if engine.url.database not in (None, "", ":memory:"):
            cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute("PRAGMA synchronous=NORMAL")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(connection: Any) -> None:
        immediate = connection.get_execution_options().get(_IMMEDIATE, False)
        if immediate and path is not None:
            _refuse_if_moved(connection, engine, path)
        connection.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


class Database:
    """Owns the engine and hands out sessions."""

    def __init__(self, url: str, **engine_options: Any) -> None:
        self.url = url
        self.engine = make_engine(url, **engine_options)
        self._reader = sessionmaker(self.engine, expire_on_commit=False)
        self._write_engine = self.engine.execution_options(**{_IMMEDIATE: True})
        self._writer = sessionmaker(self._write_engine, expire_on_commit=False)
        # The write batcher's connections (`transact_core`): on MySQL a small pool of its
        # own whose connections accept multi-statement scripts (db/recommendations.py).
        self._core_engine: Engine = self._write_engine
        if self.backend == "mysql":
            self._core_engine = make_engine(url, pool_size=2, max_overflow=0, multi_statements=True)
        self.write_failure: str | None = None  # why the last write failed, if storage
        self._file = sqlite_file(self.engine.url)

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def read_connection(self) -> Iterator[Connection]:
        """`read()` without the ORM, for hot one-query reads: the session and its identity
        map cost more CPU than the query (GET /recommendations/{id}, idempotency lookups)."""
        with self.engine.connect() as connection:
            yield connection

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error."""
        with self._remembering_faults(), self._writer() as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """`write()` without the ORM: a Core connection in one write transaction. The
        session's layers cost more CPU than a batched write's statements (README)."""
        with self._remembering_faults(), self._core_engine.begin() as connection:
            yield connection

    @contextmanager
    def _remembering_faults(self) -> Iterator[None]:
        """Around a write transaction: a storage fault is kept in `write_failure` until a
        write succeeds (readiness reads it)."""
        try:
            yield
        except Exception as exc:
            reason = storage_fault(exc)
            if reason is not None:
                self.write_failure = reason
            raise
        self.write_failure = None

    def transact(self, work: Callable[[Session], T], attempts: int = 4) -> T:
        """Run `work` in one write transaction, again from the start if it lost a conflict."""

        def once() -> T:
            with self.write() as session:
                return work(session)

        return _retrying(once, attempts)

    def transact_core(self, work: Callable[[Connection], T], attempts: int = 4) -> T:
        """`transact` on a Core connection (`write_connection`)."""

        def once() -> T:
            with self.write_connection() as connection:
                return work(connection)

        return _retrying(once, attempts)

    def ping(self) -> None:
        """A round trip; for SQLite, also that the connection's file is still the path's."""
        with self.engine.connect() as connection:
            if self._file is not None:
                try:
                    _refuse_if_moved(connection, self.engine, self._file)
                except DatabaseFileChanged as changed:
                    self.write_failure = changed.reason  # until a write to the new file works
                    raise
            connection.execute(text("SELECT 1"))

    def check(self) -> str:
        """Return "ok", or why the database cannot serve: unreachable, or refusing writes.

        After a storage failure, one write that changes nothing (`PROBE`) tells whether
        writes work again; no write is tried while they do. Blocking and possibly slow (a
        connect or lock timeout): readiness runs it off the request (server/readiness.py).
        """
        try:
            self.ping()
        except DatabaseFileChanged as exc:
            return exc.reason
        except Exception as exc:  # any failure means not ready; the reason is reported
            return f"unreachable: {storage_fault(exc) or type(exc).__name__}"
        if self.write_failure is None:
            return "ok"
        try:
            with self.write() as session:
                session.execute(text(PROBE))
        except Exception as exc:
            return f"refusing writes: {storage_fault(exc) or type(exc).__name__}"
        return "ok"

    def dispose(self) -> None:
        self.engine.dispose()
        if self._core_engine is not self._write_engine:
            self._core_engine.dispose()


def _retrying(once: Callable[[], T], attempts: int) -> T:
    """Run `once` again from the start while it loses a conflict (`is_retryable`)."""
    for attempt in range(1, attempts + 1):
        try:
            return once()
        except DBAPIError as exc:
            if attempt == attempts or not is_retryable(exc):
                raise
            time.sleep(0.01 * attempt)
    raise AssertionError("unreachable")
