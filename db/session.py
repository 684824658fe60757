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
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import ExceptionContext, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError
from sqlalchemy.orm import Session, sessionmaker

_IMMEDIATE = "hollang_sqlite_immediate"
_DEADLOCK = 1213  # MySQL rolled the whole transaction back at once; running it again is safe
# A connection unused for longer than this is pinged before it is handed out; so is every
# connection for a while after any database error (see `_ping_when_in_doubt`).
PING_AFTER_IDLE = 1.0  # seconds
PING_AFTER_ERROR = 10.0  # seconds
MULTI_STATEMENTS = 1 << 16  # MySQL's CLIENT.MULTI_STATEMENTS capability flag
T = TypeVar("T")


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
        engine = create_engine(
            # Writers queue on the busy timeout; 4 s keeps a request well inside a browser's
            # 5 s patience, so contention fails fast (and is retried) instead of hanging.
            parsed,
            # No pre-ping: a file does not disconnect.
            connect_args={"timeout": 4, "check_same_thread": False},
        )
        _tune_sqlite(engine)
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


def _tune_sqlite(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
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

    @property
    def backend(self) -> str:
        return self.engine.url.get_backend_name()

    @contextmanager
    def read(self) -> Iterator[Session]:
        with self._reader() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One transaction: committed when the block ends, rolled back on any error."""
        with self._writer() as session, session.begin():
            yield session

    @contextmanager
    def write_connection(self) -> Iterator[Connection]:
        """`write()` without the ORM: a Core connection in one write transaction. The
        session's layers cost more CPU than a batched write's statements (README)."""
        with self._core_engine.begin() as connection:
            yield connection

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
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

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
