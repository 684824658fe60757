"""The sandbox refuses every hostile file within its bound, and runs it where it cannot hurt.

Each hostile file (tests/model/hostile.py) goes through the real child process. The bounds
asserted are the configured ones ("within the timeout"), never tight timings.
"""

from __future__ import annotations

import asyncio
import os
import re
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import pytest

from model.modelfile import ModelFile, ModelFileError
from model.sandbox import SandboxLimits, validate, validate_blocking
from tests.model import hostile

LIMITS = SandboxLimits(timeout=8.0)
SLACK = 10.0  # interpreter start-up and imports of the child on a busy 2-core machine


def refused(data: bytes, limits: SandboxLimits = LIMITS) -> tuple[str, float]:
    started = time.monotonic()
    with pytest.raises(ModelFileError) as caught:
        validate_blocking(data, set(hostile.LABELS), limits)
    return str(caught.value), time.monotonic() - started


def test_a_sound_model_passes_with_every_batch_size_measured() -> None:
    validated = validate_blocking(
        hostile.BUNDLED.read_bytes(), set(hostile.LABELS), LIMITS, reference=None
    )
    assert len(validated.batch_seconds) == LIMITS.max_batch_size
    assert all(0 < seconds < LIMITS.max_batch_ms / 1000 for seconds in validated.batch_seconds)
    assert len(validated.top3) == 256 and all(len(set(row)) == 3 for row in validated.top3)
    assert validated.reference_top3 is None


def test_a_pass_is_remembered_for_the_same_question_only() -> None:
    """Asking again about the same bytes, catalogue and limits gets the verdict the first
    child gave (the same object: no child ran); another catalogue or limit asks anew."""
    data = hostile.BUNDLED.read_bytes()
    labels = set(hostile.LABELS)
    limits = SandboxLimits(timeout=8.5)  # a question no other test asks
    first = validate_blocking(data, labels, limits)
    assert validate_blocking(data, labels, limits) is first
    assert validate_blocking(data, None, limits) is not first
    assert validate_blocking(data, labels, SandboxLimits(timeout=8.5, memory_mb=600)) is not first
    assert validate_blocking(data, labels, limits, reference=data) is not first


HOSTILE = [
    pytest.param(hostile.external_data, "use external data", id="external-data"),
    pytest.param(
        hostile.external_data_in_a_subgraph, "use external data", id="external-data-subgraph"
    ),
    pytest.param(
        hostile.nan_at_other_sizes, "a batch of 2 returned non-finite logits", id="nan-sizes"
    ),
    pytest.param(
        hostile.extra_row_at_other_sizes,
        "a batch of 2 returned shape [3, 19], not [2, 19]",
        id="extra-row-sizes",
    ),
    pytest.param(
        hostile.slow_at_other_sizes,
        "over the 50 ms budget (HOLLANG_MODEL_MAX_BATCH_MS)",
        id="slow-sizes",
    ),
    pytest.param(hostile.allocates_1gib, "memory limit 512 MB", id="allocates-1gib"),
    pytest.param(
        hostile.endless_loop,
        "validation timed out after 8 s (HOLLANG_MODEL_VALIDATION_TIMEOUT); "
        "the validator was killed",
        id="loop-1e13",
    ),
]


@pytest.mark.parametrize(("make", "reason"), HOSTILE)
def test_each_hostile_file_is_refused_within_its_bound(make: Any, reason: str) -> None:
    message, elapsed = refused(make())
    assert reason in message
    assert elapsed < LIMITS.timeout + SLACK


def test_the_label_check_happens_in_the_child_too() -> None:
    validate_blocking(hostile.mlp("labels", 1), set(hostile.LABELS), LIMITS)
    with pytest.raises(ModelFileError, match="not hobbies of the active catalogue"):
        validate_blocking(hostile.mlp("labels", 1), {"only-this"}, LIMITS)


# ---- where the child runs ----


def test_the_child_is_bounded_empty_handed_and_killed_at_the_timeout(tmp_path: Path) -> None:
    """While an endless model validates: the child has the memory and CPU limits, works in
    an empty directory, holds no descriptor on the database, sees no database URL or
    credentials; and it is gone once the timeout refused the model."""
    database = tmp_path / "hollang.db"
    sqlite3.connect(database).close()
    limits = SandboxLimits(timeout=6.0, memory_mb=300)

    async def scenario() -> tuple[dict[str, Any], str]:
        task = asyncio.ensure_future(validate(hostile.endless_loop(), None, limits))
        seen: dict[str, Any] = {}
        deadline = time.monotonic() + limits.timeout
        limited = str(limits.memory_mb * 1024 * 1024)
        # Seen once it has set its limits (the interpreter starts without them).
        while limited not in seen.get("limits", "") and time.monotonic() < deadline:
            await asyncio.sleep(0.2)
            for pid in hostile.validator_pids(os.getpid()):
                proc = Path(f"/proc/{pid}")
                try:
                    seen = {
                        "pid": pid,
                        "limits": (proc / "limits").read_text(),
                        "cwd": os.readlink(proc / "cwd"),
                        "fds": [os.readlink(fd) for fd in (proc / "fd").iterdir()],
                        "environ": (proc / "environ").read_bytes(),
                    }
                    seen["cwd_entries"] = os.listdir(seen["cwd"])
                except OSError:
                    seen = {}
        with pytest.raises(ModelFileError) as caught:
            await task
        return seen, str(caught.value)

    os.environ["HOLLANG_DATABASE_URL"] = f"sqlite:///{database}"
    try:
        seen, message = asyncio.run(scenario())
    finally:
        del os.environ["HOLLANG_DATABASE_URL"]
    assert seen, "the sandbox child was never seen"
    address_space = next(line for line in seen["limits"].splitlines() if "address space" in line)
    assert str(300 * 1024 * 1024) in address_space
    cpu = next(line for line in seen["limits"].splitlines() if "Max cpu time" in line)
    assert cpu.split()[3] == str(int(limits.timeout) + 5)
    assert seen["cwd"] != os.getcwd() and seen["cwd"].startswith(tempfile.gettempdir())
    assert seen["cwd_entries"] == []
    assert str(database) not in seen["fds"]
    # Only pipes, /dev/null and its own scratch directory (ONNX Runtime's cache goes to HOME)
    outside = [
        fd
        for fd in seen["fds"]
        if fd.startswith("/")
        and fd != "/dev/null"
        and not fd.startswith(str(Path(seen["cwd"]).parent))
    ]
    assert outside == []
    assert b"HOLLANG_DATABASE_URL" not in seen["environ"]
    assert b"AWS_" not in seen["environ"]
    assert "timed out after 6 s" in message
    assert seen["pid"] not in hostile.validator_pids(os.getpid())  # killed and reaped


def test_external_data_naming_the_database_is_refused_before_any_session(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exploit: a relative `location` of `hollang.db` next to the service. Refused by
    the static parse (the worker's `ModelFile.from_bytes` and the child alike), and the
    database file is not read: its access time stays put. The control shows the access
    time would move, and ONNX Runtime would indeed read the file, without the check."""
    database = tmp_path / "hollang.db"
    connection = sqlite3.connect(database)
    connection.execute("CREATE TABLE secrets (value TEXT)")
    connection.execute("INSERT INTO secrets VALUES ('the first 4,864 bytes')")
    connection.commit()
    connection.close()
    monkeypatch.chdir(tmp_path)  # the service's working directory is the data dir
    data = hostile.external_data("hollang.db")

    def age_access_time() -> float:
        old = time.time() - 3 * 86400
        os.utime(database, (old, database.stat().st_mtime))
        return database.stat().st_atime

    before = age_access_time()
    with pytest.raises(ModelFileError, match=re.escape("initializer 'w' -> 'hollang.db'")):
        ModelFile.from_bytes(data)
    message, _ = refused(data)
    assert "use external data" in message
    assert database.stat().st_atime == before

    control = subprocess.run(
        [
            sys.executable,
            "-c",
            "import sys, onnxruntime as ort; ort.InferenceSession(sys.stdin.buffer.read())",
        ],
        input=hostile.external_data(str(database.name)),
        cwd=tmp_path,
        capture_output=True,
        check=False,
        timeout=60,
    )
    assert control.returncode == 0, control.stderr.decode()[-500:]
    assert database.stat().st_atime > before  # ONNX Runtime read the database
