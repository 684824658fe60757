"""import-torch reproduces the network torch runs, or refuses: the activation comes from
the exported program's graph (or is named), and parity is checked on all 256 inputs."""

from __future__ import annotations

import json
import os
from collections import OrderedDict
from pathlib import Path
from types import ModuleType

import numpy as np
import onnxruntime as ort
import pytest
from click.testing import CliRunner

from cli.model import model_cli
from model.convert import check_parity, import_torch_program, import_torch_state_dict
from model.modelfile import ModelFile, ModelFileError
from model.scoring import all_score_inputs

LABELS = ["a", "b", "c", "d", "e"]


@pytest.fixture(scope="module")
def torch() -> ModuleType:
    if os.environ.get("HOLLANG_REQUIRE_TORCH"):
        import torch

        return torch
    return pytest.importorskip("torch")


@pytest.fixture
def labels(tmp_path: Path) -> Path:
    path = tmp_path / "labels.json"
    path.write_text(json.dumps(LABELS), encoding="utf-8")
    return path


def network(torch: ModuleType, activation: object) -> object:
    torch.manual_seed(7)
    return torch.nn.Sequential(
        torch.nn.Linear(4, 16), activation, torch.nn.Linear(16, 8), activation,
        torch.nn.Linear(8, len(LABELS)),
    )  # fmt: skip


def torch_logits(torch: ModuleType, net: object) -> np.ndarray:
    with torch.no_grad():
        return net(torch.from_numpy(all_score_inputs())).numpy()  # type: ignore[operator,no-any-return]


def onnx_logits(data: bytes) -> np.ndarray:
    session = ort.InferenceSession(data, providers=["CPUExecutionProvider"])
    return session.run(None, {"scores": all_score_inputs()})[0]


def top3(logits: np.ndarray) -> list[list[int]]:
    return np.argsort(-logits, axis=1, kind="stable")[:, :3].tolist()


def export(torch: ModuleType, net: object, path: Path) -> Path:
    torch.export.save(torch.export.export(net, (torch.zeros(2, 4),)), path)
    return path


@pytest.mark.torch
@pytest.mark.parametrize("name", ["Tanh", "Sigmoid", "ReLU"])
def test_an_exported_program_brings_its_activation(
    torch: ModuleType, tmp_path: Path, labels: Path, name: str
) -> None:
    net = network(torch, getattr(torch.nn, name)())
    data = import_torch_program(export(torch, net, tmp_path / "net.pt2"), labels)
    expected = torch_logits(torch, net)
    assert top3(onnx_logits(data)) == top3(expected)
    np.testing.assert_allclose(onnx_logits(data), expected, rtol=1e-5, atol=1e-5)
    assert f"with {name.replace('ReLU', 'Relu')} between layers" in (
        ModelFile.from_bytes(data).metadata.description
    )


@pytest.mark.torch
def test_a_tanh_state_dict_imports_faithfully_when_named(
    torch: ModuleType, tmp_path: Path, labels: Path
) -> None:
    net = network(torch, torch.nn.Tanh())
    state = tmp_path / "tanh.pt"
    torch.save(net.state_dict(), state)  # type: ignore[attr-defined]
    data = import_torch_state_dict(state, labels, activation="tanh")
    assert top3(onnx_logits(data)) == top3(torch_logits(torch, net))


@pytest.mark.torch
def test_operations_it_cannot_reproduce_are_refused_by_name(
    torch: ModuleType, tmp_path: Path, labels: Path
) -> None:
    program = export(torch, network(torch, torch.nn.GELU()), tmp_path / "gelu.pt2")
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(
        model_cli,
        ["import-torch", "--program", str(program), "--labels", str(labels), "-o", str(out)],
    )
    assert result.exit_code == 1
    assert "cannot reproduce the operation aten.gelu.default" in result.stderr
    assert "Traceback" not in result.output
    assert not out.exists()


@pytest.mark.torch
def test_a_conversion_that_loses_the_answers_is_not_written(
    torch: ModuleType, tmp_path: Path, labels: Path
) -> None:
    # float64 logits around 1e8 one apart: float32 (spacing 8 there) cannot keep their order
    state = OrderedDict(
        [
            ("fc.weight", torch.zeros((len(LABELS), 4), dtype=torch.float64)),
            ("fc.bias", torch.tensor([1e8 + i for i in range(len(LABELS))], dtype=torch.float64)),
        ]
    )
    path = tmp_path / "wide.pt"
    torch.save(state, path)
    out = tmp_path / "out.onnx"
    result = CliRunner().invoke(
        model_cli,
        ["import-torch", "--state-dict", str(path), "--labels", str(labels), "-o", str(out)],
    )
    assert result.exit_code == 1
    assert "does not reproduce torch" in result.stderr
    assert "the top 3 differs on 256 of 256 inputs" in result.stderr
    assert not out.exists()


@pytest.mark.torch
def test_parity_compares_with_the_reference(
    torch: ModuleType, labels: Path, tmp_path: Path
) -> None:
    net = network(torch, torch.nn.Tanh())
    data = import_torch_program(export(torch, net, tmp_path / "net.pt2"), labels)
    reference = torch_logits(torch, net).astype(np.float64)
    check_parity(data, reference)
    relu_reading = torch_logits(torch, network(torch, torch.nn.ReLU())).astype(np.float64)
    with pytest.raises(ModelFileError, match="does not reproduce torch"):
        check_parity(data, relu_reading)


@pytest.mark.torch
def test_cli_flags_are_alternatives(torch: ModuleType, tmp_path: Path, labels: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(model_cli, ["import-torch", "--labels", str(labels), "-o", "x"])
    assert result.exit_code == 2 and "exactly one of --state-dict and --program" in result.stderr
    program = export(torch, network(torch, torch.nn.Tanh()), tmp_path / "net.pt2")
    result = runner.invoke(
        model_cli,
        ["import-torch", "--program", str(program), "--activation", "relu", "--labels",
         str(labels), "-o", "x"],
    )  # fmt: skip
    assert result.exit_code == 2 and "--activation applies to --state-dict" in result.stderr
