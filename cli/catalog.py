"""``hollang db upgrade`` and ``hollang catalog load``: the schema and the catalogue."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.context import Context

db_cli = click.Group("db", help="Database schema.")
catalog_cli = click.Group("catalog", help="The test, hobbies and hobby types.")


@db_cli.command("upgrade")
def db_upgrade() -> None:
    """Migrate the database (HOLLANG_DATABASE_URL) to the newest schema."""
    with Context().database(migrate=True):
        pass
    click.echo("database is at the newest schema")


@catalog_cli.command("load")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
def catalog_load(file: Path) -> None:
    """Load or update a catalogue from FILE (migrates first); it becomes the active one."""
    from sqlalchemy.exc import SQLAlchemyError

    from db.catalog import CatalogError, load_catalog, read_catalog

    context = Context()
    try:
        with context.database(migrate=True) as database:
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
    state = "loaded" if result.changed else "unchanged"
    click.echo(json.dumps({"catalog": result.version, "state": state, "changes": result.counts}))
    _warn_if_model_mismatch(context, hobby_keys)


def _warn_if_model_mismatch(context: Context, hobby_keys: frozenset[str]) -> None:
    """A catalogue without the active model's hobbies makes recommendations fail (503)
    until a matching model is activated: say so, loudly, at the moment it happens."""
    try:
        pointer = context.registry.read_pointer()
        labels = context.registry.fetch(pointer.active).metadata.labels if pointer else ()
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
