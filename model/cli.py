"""``hollang model ...``: offline tools for model files (inspect, import-torch, train).

A click group of its own so the root ``hollang`` CLI only attaches it, and so it runs without
the server's settings, database or storage.
"""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Collection
from pathlib import Path

import click

from model.modelfile import ModelFile, ModelFileError
from model.scoring import AXES, all_score_inputs

model_cli = click.Group("model", help="Inspect, import and train recommendation model files.")


def check_model(
    model_file: ModelFile, catalogue_names: Collection[str] | None = None
) -> dict[str, object]:
    """Validate the file as the server does (`model.sandbox`: a bounded child process runs
    every batch size over every possible input); raise `ModelFileError` if it is unusable.

    Given a catalogue, every label must also name one of its hobbies."""
    from model.sandbox import SandboxLimits, validate_blocking

    if catalogue_names is not None:
        missing = [label for label in model_file.metadata.labels if label not in catalogue_names]
        if missing:
            raise ModelFileError(
                f"{len(missing)} label(s) are not catalogue hobbies: {', '.join(missing[:5])}"
            )
    validated = validate_blocking(model_file.data, None, SandboxLimits())
    return {
        "ok": True,
        "inputs": len(all_score_inputs()),
        "batchSizes": len(validated.batch_seconds),
        "slowestBatchMs": round(max(validated.batch_seconds) * 1000, 3),
        "catalogueChecked": catalogue_names is not None,
    }


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
    names = _catalogue_names(catalogue) if catalogue else None
    try:
        model_file = ModelFile.read(file)
        check = check_model(model_file, names)
    except ModelFileError as exc:
        click.echo(f"invalid model file: {exc}", err=True)
        raise SystemExit(1) from None
    click.echo(json.dumps({**model_file.describe(), "check": check}, ensure_ascii=False, indent=2))


@model_cli.command("import-torch")
@click.option(
    "--state-dict",
    "state_dict",
    required=True,
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="PyTorch state_dict (.pt) of an MLP like the original's.",
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
    state_dict: Path, labels: Path, output: Path, model_version: str | None
) -> None:
    """Convert an original-style PyTorch state dict into a model file."""
    from model.convert import TorchNotInstalledError, import_torch_state_dict

    try:
        data = import_torch_state_dict(state_dict, labels, model_version)
    except TorchNotInstalledError as exc:
        raise click.ClickException(str(exc)) from None
    except ModelFileError as exc:
        raise click.ClickException(f"cannot import {state_dict}: {exc}") from None
    _write(output, data)
    _echo_written(output, ModelFile.from_bytes(data))


@model_cli.command("train")
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
    help="Gzipped JSON Lines data export whose ratings refine the table (repeatable).",
)
@click.option("--model-version", default=None, help="Default: hollang-default-1.")
@click.option("--seed", type=int, default=None, help="Random seed for the initial weights.")
@click.option("--epochs", type=click.IntRange(min=1), default=None, help="Adam steps.")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path))
def train_command(
    table: Path | None,
    exports: tuple[Path, ...],
    model_version: str | None,
    seed: int | None,
    epochs: int | None,
    output: Path,
) -> None:
    """Train Hollang's own model with numpy (recipe: model/train.py) and write it."""
    from model import train as training

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
    _write(output, data)
    click.echo(f"wrote {output}")
    click.echo(json.dumps(report.as_dict(), ensure_ascii=False, indent=2))


def _catalogue_names(path: Path) -> set[str]:
    try:
        hobbies = json.loads(path.read_text(encoding="utf-8"))["hobbies"]
        return {hobby["originalName"] for hobby in hobbies}
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise click.ClickException(f"cannot read hobbies from catalogue {path}: {exc}") from None


def _write(path: Path, data: bytes) -> None:
    """Write via a temporary file and rename, so no reader ever sees half a model file."""
    path = path.resolve()
    temporary = None
    try:
        handle, temporary = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
        os.fchmod(handle, 0o644)  # mkstemp's 0600 would hide the file from a server user
        with os.fdopen(handle, "wb") as out:
            out.write(data)
        os.replace(temporary, path)
    except OSError as exc:
        if temporary is not None:
            Path(temporary).unlink(missing_ok=True)
        raise click.ClickException(f"cannot write {path}: {exc.strerror or exc}") from None


def _echo_written(path: Path, model_file: ModelFile) -> None:
    meta = model_file.metadata
    click.echo(f"wrote {path}")
    click.echo(f"  model_version: {meta.model_version}")
    click.echo(f"  sha256: {model_file.sha256}")
    click.echo(f"  labels: {len(meta.labels)}, input: {meta.input_kind} ({', '.join(AXES)})")
