"""``hollang export``: test responses as gzipped JSON Lines in the object store.

The export is written to a temporary file as it streams out of the database (constant
memory), then uploaded with the store's file upload (multipart on S3 for large files), so a
million rows never sit in memory and a half-written export is never visible in the store.
"""

from __future__ import annotations

import gzip
import sys
import tempfile
from collections.abc import Iterable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
import orjson

from cli.context import Context

EXPORT_PREFIX = "exports/test-responses"
CONTENT_TYPE = "application/gzip"


class Timestamp(click.ParamType):  # type: ignore[type-arg]
    """ISO 8601 date or date-time; an offset is converted to UTC (the database's clock)."""

    name = "timestamp"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, datetime):
            return value
        try:
            parsed = datetime.fromisoformat(str(value))
        except ValueError:
            self.fail(f"{value!r} is not an ISO 8601 date or date-time", param, ctx)
        if parsed.tzinfo is not None:
            parsed = parsed.astimezone(UTC).replace(tzinfo=None)
        return parsed


def default_key(since: datetime, until: datetime | None) -> str:
    end = until or datetime.now(UTC).replace(tzinfo=None)
    return f"{EXPORT_PREFIX}/{since:%Y%m%dT%H%M%S}--{end:%Y%m%dT%H%M%S}.jsonl.gz"


@click.command("export")
@click.option("--since", required=True, type=Timestamp(), help="First creation time (UTC).")
@click.option("--until", type=Timestamp(), help="End of the window, exclusive. Default: now.")
@click.option("--key", help=f"Object key. Default: {EXPORT_PREFIX}/<since>--<until>.jsonl.gz")
def export_command(since: datetime, until: datetime | None, key: str | None) -> None:
    """Export test responses with scores, hobbies, model version and satisfaction."""
    from sqlalchemy.exc import SQLAlchemyError

    from db.export import count_responses, export_records
    from storage.objectstore import ObjectStoreError

    context = Context()
    key = key or default_key(since, until)
    store = context.store
    try:
        with (
            context.database() as database,
            tempfile.TemporaryDirectory(prefix="hollang-export-") as folder,
        ):
            path = Path(folder) / "export.jsonl.gz"
            with database.read() as session:
                total = count_responses(session, since, until) if _terminal() else None
                records = export_records(session, since, until)
                rows = _write(path, _with_progress(records, total))
            size = path.stat().st_size
            store.put_file(key, path, content_type=CONTENT_TYPE)
    except SQLAlchemyError as exc:
        raise click.ClickException(f"export failed, database error: {exc}") from None
    except (ObjectStoreError, ValueError) as exc:
        raise click.ClickException(f"export not stored: {exc}") from None
    summary = {"key": key, "store": store.describe(), "rows": rows, "bytes": size}
    click.echo(orjson.dumps(summary).decode())


def _write(path: Path, records: Iterable[dict[str, Any]]) -> int:
    rows = 0
    with gzip.open(path, "wb", compresslevel=6) as out:
        for record in records:
            out.write(orjson.dumps(record, option=orjson.OPT_APPEND_NEWLINE))
            rows += 1
    return rows


def _terminal() -> bool:
    return sys.stderr.isatty()


def _with_progress(
    records: Iterator[dict[str, Any]], total: int | None
) -> Iterator[dict[str, Any]]:
    """A progress bar on stderr, only when a person is watching a terminal."""
    if total is None:
        yield from records
        return
    with click.progressbar(records, length=total, label="exporting", file=sys.stderr) as bar:
        yield from bar
