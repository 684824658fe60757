"""``hollang model publish | activate | rollback | list``: the shared model registry.

Each command works on the object store the servers use (S3 when `HOLLANG_S3_BUCKET` is set)
and validates a model exactly as the admin upload does (`model.sandbox`: a bounded child
process, against the hobby keys of the catalogue in `HOLLANG_DATABASE_URL`) before any
pointer moves. `publish` also reports how the model compares with the active one and
applies the same quality gates (`model.quality`). A pointer that cannot be parsed is
reported, and `activate` / `publish --activate` overwrite it. The
pointer moves with a conditional put: if another operator moved it since it was read, the
command fails and changes nothing, so nobody's activation is silently overwritten. Running
replicas pick the new pointer up on their next poll.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import click

if TYPE_CHECKING:
    from model.modelfile import ModelFile
    from model.registry import ActivePointer, CorruptPointer, ModelRegistry, RegistryEntry
    from model.sandbox import Validated
    from server.settings import Settings

EXIT_CONFLICT = 3


class PointerConflict(click.ClickException):
    """Another operator moved the pointer; distinct exit code so scripts can tell."""

    exit_code = EXIT_CONFLICT


@dataclass
class RegistryContext:
    settings: Settings
    registry: ModelRegistry

    @classmethod
    def from_environment(cls) -> RegistryContext:
        from model.registry import ModelRegistry
        from server.settings import Settings
        from storage.factory import object_store

        settings = Settings()
        return cls(settings, ModelRegistry(object_store(settings)))

    def validate(self, file: ModelFile, reference: ModelFile | None = None) -> Validated:
        """The admin upload's validation, in the sandbox, against the catalogue."""
        from sqlalchemy.exc import SQLAlchemyError

        from db.catalog import read_catalog
        from db.session import Database
        from model.sandbox import validate_blocking

        database = Database(self.settings.resolved_database_url, pool_size=1, max_overflow=0)
        try:
            with database.read() as session:
                hobby_keys = read_catalog(session).hobby_keys
        except SQLAlchemyError as exc:
            raise click.ClickException(
                f"cannot read the catalogue to check against: {exc}"
            ) from None
        finally:
            database.dispose()
        return validate_blocking(
            file.data,
            hobby_keys,
            self.settings.sandbox,
            reference=reference.data if reference is not None else None,
        )

    def pointer(self) -> ActivePointer | CorruptPointer | None:
        """The pointer to move from; a corrupt one is returned (to be overwritten), not
        raised."""
        from model.registry import CorruptPointer

        try:
            return self.registry.read_pointer()
        except CorruptPointer as corrupt:
            return corrupt

    def activate(
        self,
        entry: RegistryEntry,
        pointer: ActivePointer | CorruptPointer | None,
        expect: str | None,
    ) -> ActivePointer:
        from model.registry import ActivePointer
        from storage.objectstore import PreconditionFailed

        current = pointer.active.version if isinstance(pointer, ActivePointer) else None
        if expect is not None and expect != current:
            raise PointerConflict(f"the active model is {current}, not {expect}; pointer not moved")
        try:
            return self.registry.activate(entry, pointer)
        except PreconditionFailed:
            fresh = self.pointer()
            now = fresh.active.version if isinstance(fresh, ActivePointer) else None
            raise PointerConflict(
                f"another operator moved the active model pointer meanwhile (it now names "
                f"{now}); pointer not moved. Check `hollang model list` and run again."
            ) from None


@contextlib.contextmanager
def _registry_errors() -> Iterator[None]:
    """Registry, model-file and store failures are one-line errors, not tracebacks."""
    from model.modelfile import ModelFileError
    from model.registry import RegistryError
    from storage.objectstore import ObjectStoreError

    try:
        yield
    except ModelFileError as exc:
        raise click.ClickException(f"model refused: {exc}") from None
    except RegistryError as exc:
        raise click.ClickException(str(exc)) from None
    except ObjectStoreError as exc:
        raise click.ClickException(f"object store: {exc}") from None


def _echo(payload: dict[str, object]) -> None:
    click.echo(json.dumps(payload, ensure_ascii=False, indent=2))


EXPECT_HELP = "Refuse unless this version is the active one now (what you looked at)."


@click.command("publish")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--activate", "and_activate", is_flag=True, help="Also make it the active model.")
@click.option("--expect", help=EXPECT_HELP)
@click.option(
    "--allow-degenerate",
    is_flag=True,
    help="Accept a model that gives the same three hobbies for every input.",
)
@click.option(
    "--require-agreement",
    type=click.FloatRange(0, 1),
    help="Refuse unless the model gives the active model's top 3 for at least this share "
    "of all inputs (0..1).",
)
def publish_command(
    file: Path,
    and_activate: bool,
    expect: str | None,
    allow_degenerate: bool,
    require_agreement: float | None,
) -> None:
    """Validate FILE and store it under its content address and version.

    Prints how it compares with the active model over all 256 inputs (`quality`)."""
    from model import quality
    from model.modelfile import ModelFile, ModelFileError
    from model.registry import ActivePointer

    context = RegistryContext.from_environment()
    with _registry_errors():
        model_file = ModelFile.read(file)
        pointer = context.pointer()
        active: ModelFile | None = None
        if isinstance(pointer, ActivePointer):
            try:
                active = context.registry.fetch(pointer.active)
            except ModelFileError:
                active = None  # nothing trustworthy to compare with
        validated = context.validate(model_file, reference=active)
        report = quality.compare(
            model_file.metadata.labels,
            validated.top3,
            (active.metadata.model_version, active.metadata.labels, validated.reference_top3)
            if active is not None and validated.reference_top3 is not None
            else None,
        )
        quality.enforce(
            report, allow_degenerate=allow_degenerate, require_agreement=require_agreement
        )
        entry = context.registry.publish(model_file)
        payload: dict[str, object] = {"published": entry.describe(), "quality": report.describe()}
        if and_activate:
            moved = context.activate(entry, pointer, expect)
            payload["active"] = moved.active.describe()
    _echo(payload)


@click.command("activate")
@click.argument("version")
@click.option("--expect", help=EXPECT_HELP)
def activate_command(version: str, expect: str | None) -> None:
    """Make a published VERSION the active model of every replica."""
    context = RegistryContext.from_environment()
    with _registry_errors():
        entry = context.registry.find(version)
        context.validate(context.registry.fetch(entry))  # fetch verifies the sha256
        pointer = context.activate(entry, context.pointer(), expect)
    _echo({"active": pointer.active.describe()})


@click.command("rollback")
@click.option("--expect", help=EXPECT_HELP)
def rollback_command(expect: str | None) -> None:
    """Re-activate the most recent previously active version."""
    from model.registry import RegistryError

    context = RegistryContext.from_environment()
    with _registry_errors():
        pointer = context.registry.read_pointer()
        if pointer is None:
            raise RegistryError("there is no active model pointer to roll back")
        target = context.registry.previous(pointer)
        context.validate(context.registry.fetch(target))
        moved = context.activate(target, pointer, expect)
    _echo({"active": moved.active.describe(), "rolledBackFrom": pointer.active.version})


@click.command("list")
def list_command() -> None:
    """Published versions, the active one, and the activation history."""
    from model.registry import ActivePointer

    context = RegistryContext.from_environment()
    with _registry_errors():
        pointer = context.pointer()
        published = [entry.describe() for entry in context.registry.versions()]
    readable = pointer if isinstance(pointer, ActivePointer) else None
    _echo(
        {
            "store": context.registry.store.describe(),
            "active": readable.active.describe() if readable else None,
            "history": [entry.describe() for entry in readable.history] if readable else [],
            "pointerError": None if pointer is None or readable else str(pointer),
            "published": published,
        }
    )


REGISTRY_COMMANDS = (publish_command, activate_command, rollback_command, list_command)
