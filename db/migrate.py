"""Alembic owns the schema; this runs it without an alembic.ini on disk.

`upgrade` is what `hollang db upgrade` and `hollang serve` call. It is safe to run from
several processes at start-up (every replica of a fleet starting at once): on MySQL they
take turns under a named lock (`serialized`), and Alembic's version table makes the later
runs no-ops. Without the lock two replicas both ran the same ALTER and one crashed.

A schema *newer* than this release knows (a later release's expand step, during a blue/green
rollout) is accepted: migrations only add until a contract step, so this release's code
still works on it, and a blue replica that restarts mid-rollout must come up
(docs/deployment-rehearsal.md, "Schema changes during a rollout").
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from alembic.util.exc import CommandError
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).resolve().parent / "migrations"
log = logging.getLogger("hollang")


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
        engine = create_engine(url)
        try:
            newer = newer_than_known(engine)
        finally:
            engine.dispose()
        if newer:
            log.warning(
                "the database is at %s, a revision of a newer release: not migrating", newer
            )
            return
        command.upgrade(alembic_config(url), revision)


def newer_than_known(engine: Engine) -> str | None:
    """The database's revision when this release's migrations do not know it (a newer
    release put it there), else None."""
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    if current is None:
        return None
    try:
        ScriptDirectory(str(MIGRATIONS)).get_revision(current)
    except CommandError:
        return current
    return None


def is_current(engine: Engine) -> bool:
    """True when the database is at this release's newest revision or at a newer release's
    (checked before serving)."""
    head = ScriptDirectory.from_config(alembic_config(str(engine.url))).get_current_head()
    with engine.connect() as connection:
        current = MigrationContext.configure(connection).get_current_revision()
    return current == head or newer_than_known(engine) is not None
