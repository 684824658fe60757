"""``hollang objects get``: copy one object from the configured store to a local file.

Exports and model versions live in the store (a local folder or S3); tools such as
``hollang model train --export FILE`` read local files. This is the bridge, so an operator
needs no AWS CLI and no knowledge of the bucket layout beyond the key the export printed.
"""

from __future__ import annotations

from pathlib import Path

import click

from cli.context import Context, atomic_file


@click.group("objects")
def objects_cli() -> None:
    """Objects in the configured store (HOLLANG_S3_BUCKET, else the data dir's folder)."""


@objects_cli.command("get")
@click.argument("key")
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Local file to write. Default: the key's file name, in the current folder.",
)
def objects_get(key: str, output: Path | None) -> None:
    """Stream KEY to a local file; the file appears only once it is complete."""
    from storage.objectstore import ObjectNotFound, ObjectStoreError

    output = output or Path(key.rsplit("/", 1)[-1])
    store = Context().store
    try:
        with atomic_file(output) as out:
            for chunk in store.open(key).chunks:
                out.write(chunk)
    except ObjectNotFound:
        raise click.ClickException(f"no object {key!r} in {store.describe()}") from None
    except (ObjectStoreError, ValueError) as exc:
        raise click.ClickException(f"cannot read {key!r}: {exc}") from None
    click.echo(f"{output} ({output.stat().st_size} bytes) from {store.describe()}")
