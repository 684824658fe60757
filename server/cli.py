"""The `hollang` command: serve, migrate, load catalogues, and the model tools."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import click

from model.cli import model_cli
from server.export_cli import export_command
from server.images_cli import images_cli
from server.logs import configure_logging
from server.objects_cli import objects_cli
from server.registry_cli import REGISTRY_COMMANDS

if TYPE_CHECKING:
    from server.settings import Settings


@click.group()
def main() -> None:
    """Hollang: hobby recommendations from a 12-question personality test."""
    configure_logging()


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HOLLANG_HOST")
@click.option("--port", default=8000, show_default=True, type=int, envvar="HOLLANG_PORT")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    envvar="HOLLANG_WORKERS",
    help="Worker processes (the container image reads HOLLANG_WORKERS).",
)
@click.option("--no-migrate", is_flag=True, help="Do not migrate and seed the database first.")
def serve(host: str, port: int, workers: int, no_migrate: bool) -> None:
    """Serve the API (uvicorn with uvloop and httptools, bounded per connection).

    SIGTERM drains: new connections are refused, accepted requests and the batch queue
    finish (at most 30 s), then the process exits 0."""
    from server.prometheus_dir import metrics_directory

    # Before anything imports prometheus_client: the workers share metrics through files.
    with metrics_directory():
        from server import serving
        from server.app import prepare_database
        from server.protocol import GuardedHttpToolsProtocol
        from server.settings import Settings

        if not no_migrate:
            prepare_database(Settings())
        serving.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="auto",
            http=GuardedHttpToolsProtocol,  # httptools, bounded per connection
            access_log=False,  # server.middleware logs one line per request instead
            log_config=None,  # uvicorn's own logs go through our (JSON) handler
            timeout_graceful_shutdown=30,
        )


@main.group()
def db() -> None:
    """Database schema."""


@db.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database (HOLLANG_DATABASE_URL) to the newest schema."""
    from db.migrate import upgrade
    from server.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    click.echo("database is at the newest schema")


@main.group()
def catalog() -> None:
    """The test, hobbies and hobby types."""


@catalog.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def catalog_load(file: Path) -> None:
    """Load or update a catalogue from FILE (migrates first); it becomes the active one."""
    from sqlalchemy.exc import SQLAlchemyError

    from db.catalog import CatalogError, load_catalog, read_catalog
    from db.migrate import upgrade
    from db.session import Database
    from server.settings import Settings

    settings = Settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    upgrade(settings.resolved_database_url)
    database = Database(settings.resolved_database_url)
    try:
        with database.write() as session:
            result = load_catalog(session, file.read_bytes(), str(file))
        with database.read() as session:
            hobby_keys = read_catalog(session).hobby_keys
    except CatalogError as exc:
        click.echo(f"invalid catalogue: {exc}", err=True)
        sys.exit(1)
    except SQLAlchemyError as exc:
        reason = getattr(exc, "orig", None) or exc
        click.echo(f"catalogue not loaded, the database refused it: {reason}", err=True)
        sys.exit(1)
    finally:
        database.dispose()
    state = "loaded" if result.changed else "unchanged"
    click.echo(json.dumps({"catalog": result.version, "state": state, "changes": result.counts}))
    _warn_if_model_mismatch(settings, hobby_keys)


def _warn_if_model_mismatch(settings: Settings, hobby_keys: frozenset[str]) -> None:
    """A catalogue without the active model's hobbies makes recommendations fail (503)
    until a matching model is activated: say so, loudly, at the moment it happens."""
    from model.registry import ModelRegistry
    from storage.factory import object_store

    registry = ModelRegistry(object_store(settings))
    try:
        pointer = registry.read_pointer()
        labels = registry.fetch(pointer.active).metadata.labels if pointer else ()
    except Exception as exc:  # a warning must never turn a good load into a failure
        click.echo(f"warning: could not check the active model against it: {exc}", err=True)
        return
    missing = [label for label in labels if label not in hobby_keys]
    if missing:
        click.echo(
            f"warning: the active model {pointer.active.version if pointer else ''} names "
            f"{len(missing)} hobbies this catalogue does not have; recommendations will fail "
            "(503) until a model trained for this catalogue is activated",
            err=True,
        )


main.add_command(model_cli)
for _command in REGISTRY_COMMANDS:
    model_cli.add_command(_command)
main.add_command(images_cli)
main.add_command(export_command)
main.add_command(objects_cli)
