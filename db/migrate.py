"""Alembic owns the schema; this runs it without an alembic.ini on disk.

`upgrade` is what `hollang db upgrade` and `hollang serve` call. It is safe to run from
several processes at start-up (every replica of a fleet starting at once): on MySQL they
take turns under a named lock (`serialized`), and Alembic's version table makes the later
runs no-ops. Without the lock two replicas both ran the same ALTER and one crashed.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


LOCK_TIMEOUT = 300  # seconds a replica waits for another one's migration
_held = threading.local()


@contextmanager
def serialized(url: str) -> Iterator[None]:
    """Hold the database's schema lock (MySQL's GET_LOCK) while the block runs, so replicas
    starting together migrate and seed one after another. Reentrant within a thread;
    a no-op on SQLite, which one process at a time serves."""
    held: set[str] = _held.__dict__.setdefault("urls", set())
    parsed = make_url(url)
    if parsed.get_backend_name() != "mysql" or url in held:
        yield
        return
    name = f"hollang-schema:{parsed.database}"[:64]
    engine = create_engine(parsed)
    try:
        with engine.connect() as connection:
            got = connection.scalar(
                text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": LOCK_TIMEOUT}
            )
            if got != 1:
                raise RuntimeError(f"could not take the schema lock {name!r} in {LOCK_TIMEOUT} s")
            held.add(url)
            try:
                yield
            finally:
                held.discard(url)
                connection.scalar(text("SELECT RELEASE_LOCK(:name)"), {"name": name})
    finally:
        engine.dispose()


def upgrade(url: str, revision: str = "head") -> None:
    with serialized(url):
        command.upgrade(alembic_config(url), revision)


def is_current(engine: Engine) -> bool:
    """True when the database is at the newest revision (used by readiness)."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as connection:
        return MigrationContext.configure(connection).get_current_revision() == head
