"""``hollang model ...``: model files and the shared model registry.

Offline tools (`inspect`, `import-torch`, `train`) need no settings, database or storage.
The registry commands (`publish`, `activate`, `rollback`, `shadow`, `list`) work on the object store
the servers use (S3 when `HOLLANG_S3_BUCKET` is set) and validate a model exactly as the
admin upload does (`model.sandbox`: a bounded child process, against the hobby keys of the
catalogue in `HOLLANG_DATABASE_URL`) before any pointer moves. `publish` also reports how
the model compares with the active one and applies the same quality gates
(`model.quality`). A pointer that cannot be parsed is reported, and `activate` /
`publish --activate` overwrite it. The pointer moves with a conditional put: if another
operator moved it since it was read, the command fails and changes nothing, so nobody's
activation is silently overwritten. Running replicas pick the new pointer up on their next
poll.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from cli.context import Context, write_file
from model.modelfile import ModelFile, ModelFileError
from model.scoring import AXES

if TYPE_CHECKING:
    from model.evaluation import Evaluation
    from model.registry import ActivePointer, CorruptPointer, RegistryEntry
    from model.sandbox import Validated

EXIT_CONFLICT = 3

model_cli = click.Group("model", help="Model files, and the registry every replica serves from.")


@model_cli.command("inspect")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.option(
    "--labels-from",
    "catalogue",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalogue JSON whose hobbies' originalName must cover every label.",
)
def inspect_command(file: Path, catalogue: Path | None) -> None:
    """Print FILE's metadata and check that it works; exit 1 if it does not."""
    from model.sandbox import check_model_file

    names = _catalogue_names(catalogue) if catalogue else None
    try:
        model_file = ModelFile.read(file)
        check = check_model_file(model_file.data, names)
    except ModelFileError as exc:
        click.echo(f"invalid model file: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(json.dumps({**model_file.describe(), "check": check}, ensure_ascii=False, indent=2))


@model_cli.command("import-torch")
@click.option(
    "--state-dict",
    "state_dict",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PyTorch state_dict (.pt) of an MLP like the original's (Linear layers only).",
)
@click.option(
    "--program",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="A torch.export program (.pt2) instead: its graph says the activations, and any "
    "operation that cannot be reproduced is refused.",
)
@click.option(
    "--activation",
    type=click.Choice(["relu", "tanh", "sigmoid"]),
    default=None,
    help="With --state-dict: the activation between layers (a state dict does not record "
    "it). Default: relu, the original's.",
)
@click.option(
    "--labels",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Output index -> hobby originalName: {"0": name, ...} or a JSON list.',
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
@click.option("--model-version", help="Default: torch-<12 hex of the .pt file's sha256>.")
def import_torch_command(
    state_dict: Path | None,
    program: Path | None,
    activation: str | None,
    labels: Path,
    output: Path,
    model_version: str | None,
) -> None:
    """Convert a PyTorch MLP into a model file, after checking on all 256 inputs that it
    gives torch's answers."""
    from model.convert import (
        TorchNotInstalledError,
        import_torch_program,
        import_torch_state_dict,
    )

    if (state_dict is None) == (program is None):
        raise click.UsageError("give exactly one of --state-dict and --program")
    if program is not None and activation is not None:
        raise click.UsageError("--activation applies to --state-dict (a program says its own)")
    source = state_dict or program
    try:
        if state_dict is not None:
            data = import_torch_state_dict(state_dict, labels, model_version, activation or "relu")
        else:
            assert program is not None
            data = import_torch_program(program, labels, model_version)
    except TorchNotInstalledError as exc:
        raise click.ClickException(str(exc)) from None
    except ModelFileError as exc:
        raise click.ClickException(f"cannot import {source}: {exc}") from None
    write_file(output, data)
    _echo_written(output, ModelFile.from_bytes(data))


@model_cli.command("stamp")
@click.argument("source", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--labels",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help='Output column -> hobby originalName: a JSON list, or {"0": name, ...}.',
)
@click.option("--version", "model_version", required=True, help="The model version to record.")
@click.option("--description", default="", help="Free text stored with the model.")
@click.option(
    "--labels-from",
    "catalogue",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Catalogue JSON whose hobbies' originalName must cover every label.",
)
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def stamp_command(
    source: Path,
    labels: Path,
    model_version: str,
    description: str,
    catalogue: Path | None,
    output: Path,
) -> None:
    """Add Hollang's metadata to SOURCE, an ONNX file exported elsewhere (e.g. by
    torch.onnx.export), check it as the server would, and write OUTPUT.

    The graph must already take `scores` float32 [batch, 4] and give `logits` float32
    [batch, labels] (docs/ml-workflow.md)."""
    from model.convert import read_labels
    from model.modelfile import ModelMetadata, stamp
    from model.sandbox import check_model_file

    names = _catalogue_names(catalogue) if catalogue else None
    try:
        metadata = ModelMetadata(
            model_version=model_version.strip(),
            labels=tuple(read_labels(labels)),
            description=description,
        )
        data = stamp(source.read_bytes(), metadata)
        check = check_model_file(data, names)
    except ModelFileError as exc:
        raise click.ClickException(f"cannot stamp {source}: {exc}") from None
    write_file(output, data)
    _echo_written(output, ModelFile.from_bytes(data))
    click.echo(f"  check: {json.dumps(check)}")


@model_cli.command("train")
@click.option(
    "--base",
    help="Refine this model with the feedback: 'active' (the registry's active model) or a "
    "model file. Without it, train from the affinity table (--table).",
)
@click.option(
    "--table",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Affinity table JSON. Default: the packaged model/training/default.json.",
)
@click.option(
    "--export",
    "exports",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Gzipped JSON Lines data export whose ratings refine the model (repeatable).",
)
@click.option(
    "--strength",
    type=click.FloatRange(min=0),
    default=None,
    help="With --base: how far ratings move a hobby, in standard deviations of the base's "
    "logits at that input (model/refine.py). Default: 1.",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, max_open=True),
    default=None,
    help="With --base: share of responses held out (by a hash of testResponseId) for the "
    "report instead of trained on. Default: 0.2.",
)
@click.option(
    "--model-version",
    default=None,
    help="Default: hollang-default-1, or with "
    "--base: <base version>-fb-<8 hex of the base, the ratings and the recipe>.",
)
@click.option("--seed", type=int, default=None, help="Random seed for the initial weights.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Adam steps.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def train_command(
    base: str | None,
    table: Path | None,
    exports: tuple[Path, ...],
    strength: float | None,
    holdout: float | None,
    model_version: str | None,
    seed: int | None,
    epochs: int | None,
    output: Path,
) -> None:
    """Train a model and write it: refine a served model with the feedback in the exports
    (--base; recipe: model/refine.py), or Hollang's own default model from an affinity table
    (recipe: model/train.py)."""
    from model import train as training

    if base is not None:
        if table is not None:
            raise click.UsageError("--base and --table are alternatives; give one")
        _refine(base, exports, strength, holdout, model_version, seed, epochs, output)
        return
    if strength is not None or holdout is not None:
        raise click.UsageError("--strength and --holdout apply to --base training only")
    try:
        data, report = training.train(
            table or training.DEFAULT_TABLE,
            exports,
            model_version=model_version or training.DEFAULT_MODEL_VERSION,
            seed=training.DEFAULT_SEED if seed is None else seed,
            epochs=epochs or training.EPOCHS,
        )
    except (training.TrainingDataError, ModelFileError) as exc:
        raise click.ClickException(str(exc)) from None
    if exports and report.ratings_used == 0 and report.unknown_keys:
        raise click.ClickException(
            f"no rating in the exports names a hobby of the table ({len(report.unknown_keys)} "
            f"unknown, e.g. {', '.join(repr(k) for k in list(report.unknown_keys)[:3])}); "
            "refine the served model instead: --base active"
        )
    write_file(output, data)
    click.echo(f"wrote {output}")
    click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))


def _refine(
    base: str,
    exports: tuple[Path, ...],
    strength: float | None,
    holdout: float | None,
    model_version: str | None,
    seed: int | None,
    epochs: int | None,
    output: Path,
) -> None:
    from model import refine
    from model.feedback import DEFAULT_HOLDOUT, read_feedback
    from model.train import DEFAULT_SEED, TrainingDataError

    if not exports:
        raise click.UsageError("--base needs at least one --export with the feedback")
    with _registry_errors():
        model_file, logits = _load_model(base)
        try:
            feedback = read_feedback(exports, DEFAULT_HOLDOUT if holdout is None else holdout)
            data, report = refine.refine(
                model_file,
                logits,
                feedback,
                strength=refine.DEFAULT_STRENGTH if strength is None else strength,
                model_version=model_version,
                seed=DEFAULT_SEED if seed is None else seed,
                epochs=epochs,
            )
        except TrainingDataError as exc:
            raise click.ClickException(str(exc)) from None
    write_file(output, data)
    click.echo(f"wrote {output}", err=True)
    _echo({"output": str(output), **report.describe()})


def _load_model(which: str | ModelFile, context: Context | None = None) -> tuple[ModelFile, Any]:
    """'active' (the registry's active model, validated when it was activated and checked
    against its sha256 now), a model file, which runs in the sandbox first, or a
    `ModelFile` the caller already validated; with its logits over every input."""
    from model.evaluation import model_logits
    from model.registry import RegistryError
    from model.sandbox import check_model_file

    if isinstance(which, ModelFile):
        model_file = which
    elif which == "active":
        registry = (context or Context()).registry
        pointer = registry.read_pointer()
        if pointer is None:
            raise RegistryError("there is no active model in the registry")
        model_file = registry.fetch(pointer.active)
    else:
        model_file = ModelFile.read(which)
        check_model_file(model_file.data)
    return model_file, model_logits(model_file)


@model_cli.command("evaluate")
@click.argument("candidate", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option(
    "--against",
    default="active",
    show_default=True,
    help="The model to beat: 'active' (the registry's active model) or a model file.",
)
@click.option(
    "--export",
    "exports",
    multiple=True,
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Gzipped JSON Lines data export with the feedback (repeatable).",
)
@click.option(
    "--holdout",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=None,
    help="Share of responses held out, as `train --base` split them. Default: 0.2.",
)
@click.option(
    "--require-better",
    is_flag=True,
    help="Exit 1 unless the candidate is better on the held-out feedback.",
)
def evaluate_command(
    candidate: Path,
    against: str,
    exports: tuple[Path, ...],
    holdout: float | None,
    require_better: bool,
) -> None:
    """Compare CANDIDATE with another model on held-out feedback (model/evaluation.py)."""
    with _registry_errors():
        evaluation = _evaluate(str(candidate), against, exports, holdout)
    better, reason = evaluation.verdict
    _echo(evaluation.describe())
    if require_better and not better:
        raise click.ClickException(f"the candidate is not better: {reason}")


def _evaluate(
    candidate: str | ModelFile,
    against: str,
    exports: tuple[Path, ...],
    holdout: float | None,
    context: Context | None = None,
) -> Evaluation:
    from model.evaluation import evaluate
    from model.feedback import DEFAULT_HOLDOUT, read_feedback
    from model.train import TrainingDataError

    ours = _load_model(candidate, context)
    theirs = _load_model(against, context)
    try:
        feedback = read_feedback(exports, DEFAULT_HOLDOUT if holdout is None else holdout)
        return evaluate(ours, theirs, feedback)
    except TrainingDataError as exc:
        raise click.ClickException(str(exc)) from None


def _catalogue_names(path: Path) -> set[str]:
    try:
        hobbies = json.loads(path.read_text(encoding="utf-8"))["hobbies"]
        return {hobby["originalName"] for hobby in hobbies}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"cannot read hobbies from catalogue {path}: {exc}") from None


def _echo_written(path: Path, model_file: ModelFile) -> None:
    meta = model_file.metadata
    click.echo(f"wrote {path}")
    click.echo(f"  model_version: {meta.model_version}")
    click.echo(f"  sha256: {model_file.sha256}")
    click.echo(f"  labels: {len(meta.labels)}, input: {meta.input_kind} ({', '.join(AXES)})")


class PointerConflict(click.ClickException):
    """Another operator moved the pointer; distinct exit code so scripts can tell."""

    exit_code = EXIT_CONFLICT


class RegistryContext(Context):
    """The environment's settings and registry, and the moves every registry command makes."""

    def validate(self, file: ModelFile, reference: ModelFile | None = None) -> Validated:
        """The admin upload's validation, in the sandbox, against the catalogue."""
        from model.sandbox import validate_blocking

        return validate_blocking(
            file.data,
            self.hobby_keys(),
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
        *,
        history: tuple[RegistryEntry, ...] | None = None,
    ) -> ActivePointer:
        from model.registry import ActivePointer
        from storage.objectstore import PreconditionFailed

        current = pointer.active.version if isinstance(pointer, ActivePointer) else None
        if expect is not None and expect != current:
            raise PointerConflict(f"the active model is {current}, not {expect}; pointer not moved")
        try:
            return self.registry.activate(entry, pointer, history=history)
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


@model_cli.command("publish")
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
@click.option(
    "--require-better",
    is_flag=True,
    help="Refuse unless the model beats the active one on the held-out feedback of --export "
    "(as `hollang model evaluate --require-better`).",
)
@click.option(
    "--export",
    "exports",
    multiple=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="With --require-better: the feedback export(s) to judge on (repeatable).",
)
def publish_command(
    file: Path,
    and_activate: bool,
    expect: str | None,
    allow_degenerate: bool,
    require_agreement: float | None,
    require_better: bool,
    exports: tuple[Path, ...],
) -> None:
    """Validate FILE and store it under its content address and version.

    Prints how it compares with the active model over all 256 inputs (`quality`), and with
    --require-better how it does on held-out feedback (`evaluation`)."""
    if require_better and not exports:
        raise click.UsageError("--require-better needs the feedback: --export FILE")
    if exports and not require_better:
        raise click.UsageError("--export applies to --require-better only")
    from model import quality
    from model.modelfile import ModelFile, ModelFileError
    from model.registry import ActivePointer, RegistryError

    context = RegistryContext()
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
        evaluation = None
        if require_better:
            if active is None:
                raise RegistryError("--require-better: there is no active model to beat")
            evaluation = _evaluate(model_file, "active", exports, None, context)
            better, reason = evaluation.verdict
            if not better:
                raise ModelFileError(
                    f"not better than the active model {active.metadata.model_version}: {reason}"
                )
        entry = context.registry.publish(model_file)
        payload: dict[str, object] = {"published": entry.describe(), "quality": report.describe()}
        if evaluation is not None:
            payload["evaluation"] = evaluation.describe()
        if and_activate:
            moved = context.activate(entry, pointer, expect)
            payload["active"] = moved.active.describe()
    _echo(payload)


@model_cli.command("activate")
@click.argument("version")
@click.option("--expect", help=EXPECT_HELP)
def activate_command(version: str, expect: str | None) -> None:
    """Make a published VERSION the active model of every replica."""
    context = RegistryContext()
    with _registry_errors():
        entry = context.registry.find(version)
        context.validate(context.registry.fetch(entry))  # fetch verifies the sha256
        pointer = context.activate(entry, context.pointer(), expect)
    _echo({"active": pointer.active.describe()})


@model_cli.command("rollback")
@click.option("--to", "to", help="Roll back to this version of the activation history.")
@click.option("--expect", help=EXPECT_HELP)
def rollback_command(to: str | None, expect: str | None) -> None:
    """Re-activate the previously active version; again goes one further back.

    The history is a stack: the versions above the target leave it (`list` shows what is
    left), so repeated rollbacks walk back instead of toggling between the last two."""
    from model.registry import RegistryError

    context = RegistryContext()
    with _registry_errors():
        pointer = context.registry.read_pointer()
        if pointer is None:
            raise RegistryError("there is no active model pointer to roll back")
        target, remaining = context.registry.rollback_target(pointer, to)
        context.validate(context.registry.fetch(target))
        moved = context.activate(target, pointer, expect, history=remaining)
    _echo(
        {
            "active": moved.active.describe(),
            "rolledBackFrom": pointer.active.version,
            "history": [entry.describe() for entry in moved.history],
        }
    )


@model_cli.command("shadow")
@click.argument("version", required=False)
@click.option("--off", is_flag=True, help="Stop scoring any shadow model.")
def shadow_command(version: str | None, off: bool) -> None:
    """Make every replica score live requests with a published VERSION too, never serving
    it; `--off` stops. GET /admin/model and /metrics show how it agrees with the active
    model and what it costs."""
    from model.registry import ActivePointer, RegistryError
    from storage.objectstore import PreconditionFailed

    if off == (version is not None):
        raise click.UsageError("give either a VERSION or --off")
    context = RegistryContext()
    with _registry_errors():
        entry = None
        if version is not None:
            entry = context.registry.find(version)
            context.validate(context.registry.fetch(entry))
        pointer = context.pointer()
        if not isinstance(pointer, ActivePointer):
            raise RegistryError("there is no readable active model pointer to add a shadow to")
        if entry is not None and entry.sha256 == pointer.active.sha256:
            raise RegistryError(f"model {entry.version!r} is the active model, not a candidate")
        try:
            moved = context.registry.set_shadow(entry, pointer)
        except PreconditionFailed:
            raise PointerConflict(
                "another operator moved the active model pointer meanwhile; shadow not set. "
                "Run again."
            ) from None
    _echo(
        {
            "active": moved.active.describe(),
            "shadow": moved.shadow.describe() if moved.shadow else None,
        }
    )


@model_cli.command("list")
def list_command() -> None:
    """Published versions, the active one, and the activation history."""
    from model.registry import ActivePointer

    context = RegistryContext()
    with _registry_errors():
        pointer = context.pointer()
        published = [entry.describe() for entry in context.registry.versions()]
    readable = pointer if isinstance(pointer, ActivePointer) else None
    _echo(
        {
            "store": context.registry.store.describe(),
            "active": readable.active.describe() if readable else None,
            "history": [entry.describe() for entry in readable.history] if readable else [],
            "shadow": readable.shadow.describe() if readable and readable.shadow else None,
            "pointerError": None if pointer is None or readable else str(pointer),
            "published": published,
        }
    )
