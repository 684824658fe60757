"""Engines and sessions: the one way to open a database session.

`Database.write()` opens a transaction meant to write; on SQLite it starts with
`BEGIN IMMEDIATE` so two writers queue on the busy timeout instead of deadlocking when a
read lock must be upgraded. `Database.read()` is a plain session. MySQL connections have
connect/read/write timeouts so a dead server gives an error in bounded time, and the pool
pre-pings so the service recovers by itself when the server comes back.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

_IMMEDIATE = "hollang_sqlite_immediate"
_DEADLOCK = 1213  # MySQL rolled the whole transaction back at once; running it again is safe
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


def make_engine(url: str, *, pool_size: int = 10, max_overflow: int = 20) -> Engine:
    """An engine tuned for its backend."""
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = create_engine(
            # Writers queue on the busy timeout; 4 s keeps a request well inside a browser's
            # 5 s patience, so contention fails fast (and is retried) instead of hanging.
            parsed,
            connect_args={"timeout": 4, "check_same_thread": False},
            pool_pre_ping=True,
        )
        _tune_sqlite(engine)
        return engine
    if parsed.get_backend_name() == "mysql":
        query = dict(parsed.query)
        query.setdefault("charset", "utf8mb4")
        parsed = parsed.set(query=query)
        return create_engine(
            parsed,
            pool_size=pool_size,
            max_overflow=max_overflow,
            pool_timeout=5,
            pool_recycle=1800,
            pool_pre_ping=True,
            connect_args={
                "connect_timeout": 3,
                "read_timeout": 10,
                "write_timeout": 10,
                # Lock waits fail in seconds, not InnoDB's default 50 s; `transact` retries.
                "init_command": "SET SESSION innodb_lock_wait_timeout = 5",
            },
        )
    return create_engine(parsed, pool_pre_ping=True)


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
        self._writer = sessionmaker(
            self.engine.execution_options(**{_IMMEDIATE: True}), expire_on_commit=False
        )

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

    def transact(self, work: Callable[[Session], T], attempts: int = 4) -> T:
        """Run `work` in one write transaction, again from the start if it lost a conflict."""
        for attempt in range(1, attempts + 1):
            try:
                with self.write() as session:
                    return work(session)
            except DBAPIError as exc:
                if attempt == attempts or not is_retryable(exc):
                    raise
                time.sleep(0.01 * attempt)
        raise AssertionError("unreachable")

    def ping(self) -> None:
        with self.engine.connect() as connection:
            connection.execute(text("SELECT 1"))

    def dispose(self) -> None:
        self.engine.dispose()
