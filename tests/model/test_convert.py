"""The original PyTorch model imports exactly: every top 3 of the original service, unchanged.

Needs torch (the ``torch`` extra). Skipped without it, unless HOLLANG_REQUIRE_TORCH is set
(CI sets it where torch is installed, so a broken torch install fails instead of skipping).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from cli.model import model_cli
from model.convert import TORCH_HINT, import_torch_state_dict, read_labels
from model.modelfile import ModelFile, ModelFileError
from model.scoring import all_score_inputs

SHARED = Path(__file__).resolve().parents[2] / ".." / "shared" / "hollang"
STATE_DICT = SHARED / "model.pt"
NUM2CONTENT = SHARED / "num2content.json"


@pytest.fixture(scope="module")
def torch() -> ModuleType:
    if os.environ.get("HOLLANG_REQUIRE_TORCH"):
        import torch

        return torch
    return pytest.importorskip("torch")


@pytest.fixture(scope="module")
def converted(torch: ModuleType) -> bytes:
    return import_torch_state_dict(STATE_DICT, NUM2CONTENT)


def run(data: bytes) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"scores": all_score_inputs()})[0]


@pytest.mark.torch
def test_original_model_reproduces_every_golden_top3(converted: bytes) -> None:
    golden = json.loads((SHARED / "golden_top3.json").read_text(encoding="utf-8"))["rows"]
    logits = run(converted)
    assert [row["scores"] for row in golden] == all_score_inputs().astype(int).tolist()
    top3 = np.argsort(-logits, axis=1, kind="stable")[:, :3]
    assert top3.tolist() == [row["top3"] for row in golden]
    # float32 sums run in another order than the golden run's kernel: ~10 ulp on logits of 100
    np.testing.assert_allclose(
        logits, np.array([row["logits"] for row in golden]), rtol=1e-5, atol=1e-4
    )


@pytest.mark.torch
def test_labels_and_default_version(converted: bytes) -> None:
    meta = ModelFile.from_bytes(converted).metadata
    names = json.loads(NUM2CONTENT.read_text(encoding="utf-8"))
    assert list(meta.labels) == [names[str(i)] for i in range(len(names))]
    digest = hashlib.sha256(STATE_DICT.read_bytes()).hexdigest()
    assert re.fullmatch(r"torch-[0-9a-f]{12}", meta.model_version)
    assert meta.model_version == "torch-" + digest[:12]


@pytest.mark.torch
def test_weights_are_kept_bit_exact(torch: ModuleType, converted: bytes) -> None:
    import onnx
    from onnx import numpy_helper

    stored = {
        t.name: numpy_helper.to_array(t) for t in onnx.load_from_string(converted).graph.initializer
    }
    original = torch.load(STATE_DICT, weights_only=True)
    for index, prefix in enumerate(["layer1.0", "layer2.0", "fc"]):
        for kind in ("weight", "bias"):
            expected = original[f"{prefix}.{kind}"].numpy()
            assert np.array_equal(stored[f"layer{index}.{kind}"], expected)


@pytest.mark.torch
def test_explicit_version_and_list_labels(torch: ModuleType, tmp_path: Path) -> None:
    names = json.loads(NUM2CONTENT.read_text(encoding="utf-8"))
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps([names[str(i)] for i in range(len(names))]), encoding="utf-8")
    data = import_torch_state_dict(STATE_DICT, labels, model_version="original-2023")
    assert ModelFile.from_bytes(data).metadata.model_version == "original-2023"


def save(torch: ModuleType, path: Path, shapes: dict[str, tuple[int, ...]]) -> Path:
    torch.save(OrderedDict((key, torch.zeros(shape)) for key, shape in shapes.items()), path)
    return path


def labels_file(path: Path, count: int) -> Path:
    path.write_text(json.dumps({str(i): f"hobby {i}" for i in range(count)}), encoding="utf-8")
    return path


@pytest.mark.torch
@pytest.mark.parametrize(
    ("shapes", "reason"),
    [
        ({"a.weight": (8, 3), "a.bias": (8,), "b.weight": (3, 8), "b.bias": (3,)}, "takes 3"),
        ({"a.weight": (8, 4), "a.bias": (8,), "b.weight": (3, 7), "b.bias": (3,)}, "gives 8"),
        ({"a.weight": (8, 4), "a.bias": (8,), "b.weight": (4, 8), "b.bias": (4,)}, "3 labels"),
        ({"a.weight": (8, 4), "a.bias": (7,), "b.weight": (3, 8), "b.bias": (3,)}, "7 values"),
        ({"a.weight": (8, 4), "b.weight": (3, 8), "b.bias": (3,)}, "'a' has no bias"),
        ({"a.weight": (8, 4, 1), "a.bias": (8,)}, "must be 2-D"),
        ({"a.weight": (3, 4), "a.bias": (3,), "bn.running_mean": (3,)}, "unsupported"),
        ({}, "no Linear layers"),
    ],
)
def test_bad_state_dicts(
    torch: ModuleType, tmp_path: Path, shapes: dict[str, tuple[int, ...]], reason: str
) -> None:
    path = save(torch, tmp_path / "bad.pt", shapes)
    with pytest.raises(ModelFileError, match=re.escape(reason)):
        import_torch_state_dict(path, labels_file(tmp_path / "labels.json", 3))


@pytest.mark.torch
def test_not_a_state_dict(torch: ModuleType, tmp_path: Path) -> None:
    labels = labels_file(tmp_path / "labels.json", 3)
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(ModelFileError, match="cannot load"):
        import_torch_state_dict(tmp_path / "junk.pt", labels)
    torch.save(torch.zeros(3), tmp_path / "tensor.pt")
    with pytest.raises(ModelFileError, match="not a state dict"):
        import_torch_state_dict(tmp_path / "tensor.pt", labels)


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"0": "a", "2": "b", "3": "c"}, "exactly '0'..'2'"),
        ({"0": "a", "01": "b", "2": "c"}, "exactly '0'..'2'"),
        (["a", "b", "a"], "unique"),
        (["a", "", "c"], "non-empty"),
        ("a b c", "object or array"),
    ],
)
def test_bad_labels_files(tmp_path: Path, content: object, reason: str) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(content), encoding="utf-8")
    with pytest.raises(ModelFileError, match=re.escape(reason)):
        read_labels(path)


def test_num2content_labels_come_in_index_order(tmp_path: Path) -> None:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps({str(i): f"h{i}" for i in reversed(range(12))}), encoding="utf-8")
    assert read_labels(path) == [f"h{i}" for i in range(12)]


@pytest.mark.torch
def test_cli_import_torch_then_inspect(torch: ModuleType, tmp_path: Path) -> None:
    out = tmp_path / "original.onnx"
    runner = CliRunner()
    result = runner.invoke(
        model_cli,
        [
            "import-torch",
            "--state-dict",
            str(STATE_DICT),
            "--labels",
            str(NUM2CONTENT),
            "-o",
            str(out),
            "--model-version",
            "original-1",
        ],
    )
    assert result.exit_code == 0, result.output
    written = ModelFile.read(out)
    assert "original-1" in result.output and written.sha256 in result.output
    assert str(out) in result.output

    result = runner.invoke(
        model_cli, ["inspect", str(out), "--labels-from", str(SHARED / "catalog.json")]
    )
    assert result.exit_code == 0, result.output
    described = json.loads(result.stdout)
    assert described["modelVersion"] == "original-1"
    assert described["check"]["ok"] is True and described["check"]["catalogueChecked"] is True


@pytest.mark.torch
def test_cli_import_torch_reports_a_bad_state_dict(torch: ModuleType, tmp_path: Path) -> None:
    path = save(torch, tmp_path / "bad.pt", {"a.weight": (3, 5), "a.bias": (3,)})
    result = CliRunner().invoke(
        model_cli,
        [
            "import-torch",
            "--state-dict",
            str(path),
            "--labels",
            str(NUM2CONTENT),
            "-o",
            str(tmp_path / "out.onnx"),
        ],
    )
    assert result.exit_code == 1
    assert "takes 5 inputs" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out.onnx").exists()


def test_cli_import_torch_without_torch(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # makes `import torch` raise ImportError
    result = CliRunner().invoke(
        model_cli,
        [
            "import-torch",
            "--state-dict",
            str(STATE_DICT),
            "--labels",
            str(NUM2CONTENT),
            "-o",
            str(tmp_path / "out.onnx"),
        ],
    )
    assert result.exit_code == 1
    assert TORCH_HINT in result.stderr
    assert "pip install 'hollang[torch]'" in TORCH_HINT


def test_importing_the_model_package_does_not_import_torch() -> None:
    code = (
        "import sys, cli.model, model.convert, model.train, model.modelfile\n"
        "assert 'torch' not in sys.modules, 'torch imported'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
