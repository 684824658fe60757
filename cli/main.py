"""The `hollang` command: serve, migrate, load catalogues, and the model tools."""

from __future__ import annotations

import click

from cli.catalog import catalog_cli, db_cli
from cli.export import export_command
from cli.images import images_cli
from cli.model import model_cli
from cli.objects import objects_cli
from cli.serve import serve_command
from server.logs import configure_logging


@click.group()
def main() -> None:
    """Hollang: hobby recommendations from a 12-question personality test."""
    configure_logging()


for _command in (
    serve_command,
    db_cli,
    catalog_cli,
    model_cli,
    images_cli,
    export_command,
    objects_cli,
):
    main.add_command(_command)
