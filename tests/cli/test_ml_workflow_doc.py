"""docs/ml-workflow.md's worked example works: its code blocks, run in order, as written."""

from __future__ import annotations

import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOC = ROOT / "docs" / "ml-workflow.md"


def worked_example() -> list[tuple[str, str]]:
    """(language, code) of each fenced block of the worked-example section, in order."""
    text = DOC.read_text(encoding="utf-8")
    section = text.split("## Worked example", 1)[1].split("\n## ", 1)[0]
    return re.findall(r"```(python|sh)\n(.*?)```", section, flags=re.DOTALL)


def test_the_section_has_the_steps() -> None:
    languages = [language for language, _ in worked_example()]
    assert languages == ["python", "sh", "python"]


@pytest.mark.torch
def test_the_worked_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("torch")
    monkeypatch.chdir(tmp_path)
    namespace: dict[str, object] = {}
    hollang = str(Path(sys.executable).with_name("hollang"))
    for language, code in worked_example():
        if language == "python":
            exec(compile(code, str(DOC), "exec"), namespace)  # the doc's own code, as written
            continue
        for line in filter(None, (line.strip() for line in code.splitlines())):
            words = shlex.split(line)
            assert words[0] == "hollang"
            done = subprocess.run(
                [hollang, *words[1:]], capture_output=True, text=True, timeout=120, check=False
            )
            assert done.returncode == 0, f"{line}\n{done.stdout}\n{done.stderr}"
    assert (tmp_path / "tiny-stamped.onnx").exists()
