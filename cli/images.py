"""``hollang images upload DIR``: hobby, hobby-type and question images into the object store.

DIR mirrors the URL layout: ``DIR/hobby/<imageKey>.png``, ``DIR/hobby_type/<MBTI>.png``
(``.gif`` for the animated one), ``DIR/question/question<n>.JPG``. Every file is checked
(name, size, real format) before anything is uploaded, so a bad file never leaves a
half-updated set behind.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import click

from cli.context import Context

images_cli = click.Group("images", help="Images served as hobby, hobby-type and question art.")


@images_cli.command("upload")
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
def upload_command(folder: Path) -> None:
    """Check every image under FOLDER, then store them under their stable keys."""
    from server.images import ImageError, check_image, images_in, store_image
    from storage.objectstore import ObjectStoreError

    context = Context()
    limit = context.settings.max_image_bytes
    checked: list[tuple[Path, str, bytes]] = []
    problems: list[str] = []
    for path, key in images_in(folder):
        if isinstance(key, ImageError):
            problems.append(str(key))
            continue
        if path.stat().st_size > limit:
            problems.append(f"{path} is larger than {limit} bytes")
            continue
        data = path.read_bytes()
        try:
            check_image(key, data, limit)
        except ImageError as exc:
            problems.append(f"{path}: {exc}")
            continue
        checked.append((path, key, data))
    if problems:
        for problem in problems:
            click.echo(f"refused: {problem}", err=True)
        raise click.ClickException(f"{len(problems)} file(s) refused; nothing was uploaded")
    if not checked:
        raise click.ClickException(f"no images under {folder}")
    store = context.store
    stored: dict[str, str] = {}
    with click.progressbar(checked, label="uploading", file=sys.stderr) as bar:
        for _, key, data in bar:
            try:
                stored[key] = store_image(store, key, data, limit)
            except ObjectStoreError as exc:
                raise click.ClickException(
                    f"stopped after {len(stored)} of {len(checked)} images: {exc}"
                ) from None
    click.echo(json.dumps({"store": store.describe(), "stored": stored}, indent=2))
