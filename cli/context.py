"""What every command opens: the settings, the database, the object store, local files.

One place for the sequence "settings, make the data folder, migrate, open, dispose", so
each command says only what it does with the database, and one atomic writer for every
file a command leaves behind (a model, a downloaded object), so no reader ever sees half
of one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path
from typing import IO, TYPE_CHECKING

import click

if TYPE_CHECKING:
    from db.session import Database
    from model.registry import ModelRegistry
    from server.settings import Settings
    from storage.objectstore import ObjectStore

log = logging.getLogger("hollang")


@contextlib.contextmanager
def open_database(settings: Settings, *, migrate: bool = False) -> Iterator[Database]:
    """A small pool on the configured database, disposed of on the way out.

    `migrate` first creates the data folder (the SQLite default lives there) and brings the
    schema to the newest migration, as `hollang serve` and `catalog load` need."""
    from db.migrate import upgrade
    from db.session import Database

    if migrate:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        upgrade(settings.resolved_database_url)
    database = Database(settings.resolved_database_url, pool_size=1, max_overflow=0)
    try:
        yield database
    finally:
        database.dispose()


def prepare_database(settings: Settings) -> None:
    """Migrate to the newest schema and seed the bundled catalogue into an empty database
    (what `hollang serve` does before it starts the workers)."""
    from db.catalog import DEFAULT_CATALOG, catalog_is_empty, load_catalog
    from db.migrate import serialized

    # One replica at a time (db/migrate.py): two seeding an empty catalogue would collide.
    with (
        serialized(settings.resolved_database_url),
        open_database(settings, migrate=True) as database,
        database.write() as session,
    ):
        if catalog_is_empty(session):
            result = load_catalog(session, DEFAULT_CATALOG.read_bytes(), "bundled default")
            log.info("seeded the bundled catalogue %s", result.version)


@dataclass
class Context:
    """The settings of this environment, and what a command opens from them, lazily."""

    settings: Settings = field(default_factory=lambda: _settings())

    @cached_property
    def store(self) -> ObjectStore:
        from storage.factory import object_store

        return object_store(self.settings)

    @cached_property
    def registry(self) -> ModelRegistry:
        from model.registry import ModelRegistry

        return ModelRegistry(self.store)

    def database(self, *, migrate: bool = False) -> contextlib.AbstractContextManager[Database]:
        return open_database(self.settings, migrate=migrate)

    def hobby_keys(self) -> frozenset[str]:
        """The active catalogue's hobby keys; a database failure is a one-line error."""
        from sqlalchemy.exc import SQLAlchemyError

        from db.catalog import read_catalog

        try:
            with self.database() as database, database.read() as session:
                return read_catalog(session).hobby_keys
        except SQLAlchemyError as exc:
            raise click.ClickException(
                f"cannot read the catalogue to check against: {exc}"
            ) from None


def _settings() -> Settings:
    from server.settings import Settings

    return Settings()


@contextlib.contextmanager
def atomic_file(path: Path) -> Iterator[IO[bytes]]:
    """A file that appears at `path` whole, or not at all.

    Written to a hidden sibling, flushed to disk and renamed over `path` when the block
    ends; removed if it fails. Readable by others (0644), unlike mkstemp's 0600, so a
    server running as another user can read a model written here."""
    path = path.resolve()
    temporary: str | None = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.fchmod(handle, 0o644)
        with os.fdopen(handle, "wb") as out:
            yield out
            out.flush()
            os.fsync(out.fileno())
        os.replace(temporary, path)
        temporary = None
    except OSError as exc:
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None
    finally:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)


def write_file(path: Path, data: bytes) -> None:
    """`atomic_file` for bytes already in memory."""
    with atomic_file(path) as out:
        out.write(data)
