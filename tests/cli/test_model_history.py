"""`hollang model rollback` walks the activation history, `--to` names its target, and
`hollang model shadow VERSION | --off` names the candidate every replica scores: all on real
registry objects, in a local folder and in a bucket of moto's S3 server."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from cli.context import prepare_database
from cli.main import main
from model.modelfile import ModelFile
from model.registry import POINTER_KEY, ModelRegistry
from tests.helpers import hollang
from tests.s3support import LABELS, StoreUnderTest, model_bytes

NOT_A_HOBBY = "달 표면에서 스카이다이빙하기"


@pytest.fixture
def env(objects: StoreUnderTest, tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'hollang.db'}"
    prepare_database(objects.settings(url))
    return {**objects.env, "HOLLANG_DATABASE_URL": url}


def publish(env: dict[str, str], tmp_path: Path, version: str, seed: int, *more: str) -> Any:
    path = tmp_path / f"{version}.onnx"
    path.write_bytes(model_bytes(version, seed))
    return hollang(env, "model", "publish", str(path), *more)


def versions(entries: list[dict[str, str]]) -> list[str]:
    return [entry["version"] for entry in entries]


def stored_pointer(objects: StoreUnderTest) -> dict[str, Any]:
    document: dict[str, Any] = json.loads(objects.store.get(POINTER_KEY).data)
    return document


def test_rollback_again_goes_one_further_back(
    objects: StoreUnderTest, env: dict[str, str], tmp_path: Path
) -> None:
    for seed, version in enumerate(("walk-1", "walk-2", "walk-3", "walk-4"), start=1):
        publish(env, tmp_path, version, seed, "--activate")
    assert versions(hollang(env, "model", "list")["history"]) == ["walk-3", "walk-2", "walk-1"]

    first = hollang(env, "model", "rollback")
    assert (first["active"]["version"], first["rolledBackFrom"]) == ("walk-3", "walk-4")
    assert versions(first["history"]) == ["walk-2", "walk-1"]
    second = hollang(env, "model", "rollback")
    assert (second["active"]["version"], second["rolledBackFrom"]) == ("walk-2", "walk-3")
    assert versions(stored_pointer(objects)["history"]) == ["walk-1"]
    hollang(env, "model", "rollback")
    error = hollang(env, "model", "rollback", code=1)
    assert "there is no previous model version to roll back to" in error
    assert stored_pointer(objects)["active"]["version"] == "walk-1"

    # An activation after rollbacks pushes as usual.
    assert hollang(env, "model", "activate", "walk-4")["active"]["version"] == "walk-4"
    assert versions(hollang(env, "model", "list")["history"]) == ["walk-1"]


def test_rollback_to_a_named_version_of_the_history(
    objects: StoreUnderTest, env: dict[str, str], tmp_path: Path
) -> None:
    for seed, version in enumerate(("to-1", "to-2", "to-3", "to-4"), start=11):
        publish(env, tmp_path, version, seed, "--activate")
    moved = hollang(env, "model", "rollback", "--to", "to-2")
    assert (moved["active"]["version"], moved["rolledBackFrom"]) == ("to-2", "to-4")
    assert versions(moved["history"]) == ["to-1"]
    assert ModelRegistry(objects.store).read_pointer().active.version == "to-2"  # type: ignore[union-attr]

    # to-4 was published but is no longer in the history: that is an activation.
    error = hollang(env, "model", "rollback", "--to", "to-4", code=1)
    assert "'to-4' is not in the activation history" in error
    assert "hollang model activate VERSION" in error
    error = hollang(env, "model", "rollback", "--to", "to-2", code=1)
    assert "'to-2' is already the active one" in error
    # --expect guards a rollback as it guards an activation.
    error = hollang(env, "model", "rollback", "--expect", "to-4", code=3)
    assert "the active model is to-2, not to-4" in error
    assert stored_pointer(objects)["active"]["version"] == "to-2"


def test_shadow_on_off_and_kept_across_activations(
    objects: StoreUnderTest, env: dict[str, str], tmp_path: Path
) -> None:
    publish(env, tmp_path, "shadow-base", 21, "--activate")
    publish(env, tmp_path, "shadow-cand", 22)
    publish(env, tmp_path, "shadow-other", 23)

    named = hollang(env, "model", "shadow", "shadow-cand")
    assert (named["active"]["version"], named["shadow"]["version"]) == (
        "shadow-base",
        "shadow-cand",
    )
    assert stored_pointer(objects)["shadow"]["version"] == "shadow-cand"
    assert hollang(env, "model", "list")["shadow"]["version"] == "shadow-cand"

    # Activating another model keeps the candidate under comparison ...
    hollang(env, "model", "activate", "shadow-other")
    assert stored_pointer(objects)["shadow"]["version"] == "shadow-cand"
    # ... and so does a rollback; activating the candidate itself ends its shadowing.
    hollang(env, "model", "rollback")
    assert stored_pointer(objects)["shadow"]["version"] == "shadow-cand"
    hollang(env, "model", "activate", "shadow-cand")
    assert "shadow" not in stored_pointer(objects)
    assert hollang(env, "model", "list")["shadow"] is None

    error = hollang(env, "model", "shadow", "shadow-cand", code=1)
    assert "'shadow-cand' is the active model, not a candidate" in error
    hollang(env, "model", "shadow", "shadow-base")
    off = hollang(env, "model", "shadow", "--off")
    assert off["shadow"] is None and "shadow" not in stored_pointer(objects)
    assert stored_pointer(objects)["active"]["version"] == "shadow-cand"


def test_shadow_refuses_what_it_cannot_score(
    objects: StoreUnderTest, env: dict[str, str], tmp_path: Path
) -> None:
    error = hollang(env, "model", "shadow", "--off", code=1)
    assert "no readable active model pointer" in error
    publish(env, tmp_path, "refuse-base", 31, "--activate")
    assert "no published model has version 'nope'" in hollang(
        env, "model", "shadow", "nope", code=1
    )
    # Published behind the CLI's back (no validation): the shadow command validates.
    registry = ModelRegistry(objects.store)
    stranger = model_bytes("stranger", 32, labels=(*LABELS[:-1], NOT_A_HOBBY))
    registry.publish(ModelFile.from_bytes(stranger))
    error = hollang(env, "model", "shadow", "stranger", code=1)
    assert "model refused" in error and "not hobbies of the active catalogue" in error
    assert "shadow" not in stored_pointer(objects)
    usage = CliRunner().invoke(main, ["model", "shadow"], env=env)
    assert usage.exit_code == 2 and "give either a VERSION or --off" in usage.output
    usage = CliRunner().invoke(main, ["model", "shadow", "x", "--off"], env=env)
    assert usage.exit_code == 2
