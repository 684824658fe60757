"""The model registry CLI (publish, activate, rollback, list) on a local folder and on S3.

The database is only read for the catalogue's hobby keys here, so these run on SQLite; the
replica tests (test_replicas.py) run the registry against MariaDB too. The CLI runs
in-process through click's runner: the same code as the console script, without paying a
second of interpreter start-up per call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from cli.context import prepare_database
from model.modelfile import ModelFileError
from model.registry import ModelRegistry
from storage.objectstore import PreconditionFailed
from tests.helpers import hollang
from tests.s3support import LABELS, StoreUnderTest, model_bytes

NOT_A_HOBBY = "달 표면에서 스카이다이빙하기"


@pytest.fixture
def registry_env(objects: StoreUnderTest, tmp_path: Path) -> dict[str, str]:
    url = f"sqlite:///{tmp_path / 'hollang.db'}"
    prepare_database(objects.settings(url))
    return {**objects.env, "HOLLANG_DATABASE_URL": url}


def write_model(tmp_path: Path, version: str, seed: int, **kwargs: Any) -> str:
    path = tmp_path / f"{version}.onnx"
    path.write_bytes(model_bytes(version, seed, **kwargs))
    return str(path)


def test_publish_activate_rollback_list(
    objects: StoreUnderTest, registry_env: dict[str, str], tmp_path: Path
) -> None:
    one = write_model(tmp_path, "cli-1", seed=1)
    two = write_model(tmp_path, "cli-2", seed=2)
    published = hollang(registry_env, "model", "publish", one)["published"]
    assert published["version"] == "cli-1"
    assert published["key"] == f"models/sha256/{published['sha256']}.onnx"
    assert objects.store.exists(published["key"])

    assert hollang(registry_env, "model", "activate", "cli-1")["active"]["version"] == "cli-1"
    both = hollang(registry_env, "model", "publish", two, "--activate")
    assert both["active"]["version"] == "cli-2"

    listing = hollang(registry_env, "model", "list")
    assert listing["active"]["version"] == "cli-2"
    assert [entry["version"] for entry in listing["history"]] == ["cli-1"]
    assert sorted(entry["version"] for entry in listing["published"]) == ["cli-1", "cli-2"]

    rolled = hollang(registry_env, "model", "rollback")
    assert (rolled["active"]["version"], rolled["rolledBackFrom"]) == ("cli-1", "cli-2")
    pointer = ModelRegistry(objects.store).read_pointer()
    assert pointer is not None and pointer.active.version == "cli-1"

    error = hollang(registry_env, "model", "activate", "no-such-version", code=1)
    assert "no published model has version 'no-such-version'" in error


def test_publish_validates_against_the_catalogue(
    objects: StoreUnderTest, registry_env: dict[str, str], tmp_path: Path
) -> None:
    labels = (*LABELS[:-1], NOT_A_HOBBY)
    stranger = write_model(tmp_path, "stranger", seed=3, labels=labels)
    error = hollang(registry_env, "model", "publish", stranger, code=1)
    assert "model refused" in error and "not hobbies of the active catalogue" in error
    assert list(objects.store.list("models/")) == []
    garbage = tmp_path / "garbage.onnx"
    garbage.write_bytes(b"not onnx")
    assert "model refused" in hollang(registry_env, "model", "publish", str(garbage), code=1)


def test_a_lost_race_for_the_pointer_is_refused(
    objects: StoreUnderTest, registry_env: dict[str, str], tmp_path: Path
) -> None:
    hollang(registry_env, "model", "publish", write_model(tmp_path, "race-1", 11), "--activate")
    hollang(registry_env, "model", "publish", write_model(tmp_path, "race-2", 12))
    hollang(registry_env, "model", "publish", write_model(tmp_path, "race-3", 13))
    registry = ModelRegistry(objects.store)
    # Two operators read the same pointer; the first activation wins ...
    seen_by_a = registry.read_pointer()
    seen_by_b = registry.read_pointer()
    registry.activate(registry.find("race-2"), seen_by_a)
    # ... and the second, based on what it read before, cannot overwrite it.
    with pytest.raises(PreconditionFailed):
        registry.activate(registry.find("race-3"), seen_by_b)
    pointer = registry.read_pointer()
    assert pointer is not None and pointer.active.version == "race-2"
    assert [entry.version for entry in pointer.history] == ["race-1"]

    # From the CLI: an operator who looked at race-1 gets a clear conflict (exit 3).
    error = hollang(registry_env, "model", "activate", "race-3", "--expect", "race-1", code=3)
    assert "the active model is race-2, not race-1; pointer not moved" in error
    moved = hollang(registry_env, "model", "activate", "race-3", "--expect", "race-2")
    assert moved["active"]["version"] == "race-3"


def test_a_corrupted_model_object_is_refused(
    objects: StoreUnderTest, registry_env: dict[str, str], tmp_path: Path
) -> None:
    hollang(registry_env, "model", "publish", write_model(tmp_path, "good-1", 21), "--activate")
    published = hollang(registry_env, "model", "publish", write_model(tmp_path, "bad-2", 22))
    store = objects.store
    key = published["published"]["key"]
    # Same length, one flipped byte: still "a file", but not the bytes that were published.
    data = bytearray(store.get(key).data)
    data[len(data) // 2] ^= 0xFF
    store.put(key, bytes(data))

    registry = ModelRegistry(store)
    with pytest.raises(ModelFileError, match="corrupted"):
        registry.fetch(registry.find("bad-2"))
    error = hollang(registry_env, "model", "activate", "bad-2", code=1)
    assert "corrupted (sha256 mismatch)" in error
    pointer = registry.read_pointer()
    assert pointer is not None and pointer.active.version == "good-1"


def test_publish_reports_quality_and_applies_the_gates(
    objects: StoreUnderTest, registry_env: dict[str, str], tmp_path: Path
) -> None:
    from tests.model import hostile

    hollang(registry_env, "model", "publish", write_model(tmp_path, "gate-1", 31), "--activate")
    two = hollang(registry_env, "model", "publish", write_model(tmp_path, "gate-2", 32))
    quality = two["quality"]
    assert quality["comparedWith"] == "gate-1" and quality["inputs"] == 256
    assert 0 <= quality["top3Agreement"] <= 1 and 0 <= quality["top1Agreement"] <= 1
    assert sum(quality["top3Counts"].values()) == 768
    assert quality["top3Counts"].keys() == quality["activeTop3Counts"].keys()

    below = hollang(
        registry_env,
        "model",
        "publish",
        write_model(tmp_path, "gate-3", 33),
        "--require-agreement",
        "0.99",
        code=1,
    )
    assert "model refused: it agrees with the active model gate-1 on" in below

    constant = tmp_path / "constant.onnx"
    constant.write_bytes(hostile.constant("gate-constant"))
    refused = hollang(registry_env, "model", "publish", str(constant), code=1)
    assert "model refused: degenerate model" in refused
    assert not [k for k in objects.store.list("models/versions/") if "gate-constant" in k]
    allowed = hollang(registry_env, "model", "publish", str(constant), "--allow-degenerate")
    assert allowed["quality"]["degenerate"] is True

    reordered = tmp_path / "reordered.onnx"
    active_bytes = Path(write_model(tmp_path, "gate-1", 31)).read_bytes()
    reordered.write_bytes(hostile.reordered_labels(active_bytes, "gate-reordered"))
    error = hollang(registry_env, "model", "publish", str(reordered), code=1)
    assert "labels in the wrong order" in error

    outside = tmp_path / "outside.onnx"
    outside.write_bytes(hostile.external_data("hollang.db"))
    error = hollang(registry_env, "model", "publish", str(outside), code=1)
    assert "model refused" in error and "use external data" in error
    pointer = ModelRegistry(objects.store).read_pointer()
    assert pointer is not None and pointer.active.version == "gate-1"
