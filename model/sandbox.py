"""Validate an untrusted model file in a child process with memory, CPU and time limits.

The one entry point for every model that comes from outside: the admin upload, `hollang
model publish | activate | rollback | inspect`, and each replica's poll of the pointer. A
model file is a program: creating an ONNX Runtime session already constant-folds the graph,
and running it can allocate without bound (a 2 KB file asking for 1 GiB) or loop for hours
(a `Loop` of 1e13 iterations, which no thread of ours could interrupt). So the file never
runs in a serving worker before it has passed here:

- the child (`python -m model.sandbox`) sets `RLIMIT_AS` (`memory_mb`) and `RLIMIT_CPU`
  (the wall timeout plus a little: a backstop if the parent is gone) before it reads the
  file, asks the kernel to kill it if its parent dies, and runs in an empty temporary
  directory with a minimal environment (no database URL, no credentials);
- it refuses external data statically (`ModelFile.from_bytes`) before any session exists,
  then does what `model.engine.load_model` does (`open_session`, `check_batches`): every
  batch size, finite, one row per input, rows equal to the batch-of-one answer, each batch
  within the latency budget;
- the parent awaits it with asyncio, so the event loop keeps answering (`/health/live`),
  and kills it at the wall timeout or when the awaiting task is cancelled (SIGTERM of the
  service, a client that went away).

The answer comes back as one JSON object on a pipe the child keeps for itself; its own
stdout and stderr go to a capped log, so nothing the model prints can forge a verdict.

A pass is remembered by this process (`_PASSED`, keyed by the sha256 of everything the
child was given and the limits it ran under): asking again about the same bytes with the
same catalogue and limits answers at once instead of spending 0.5 s of CPU on a new child.
That makes a rollback, or activating the shadow a worker already scores, immediate. A
refusal is never remembered: it may be the machine's fault (a timeout under load).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import os
import resource
import signal
import sys
import tempfile
from collections import OrderedDict
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from model.modelfile import ModelFileError

_PACKAGE_ROOT = Path(__file__).resolve().parent.parent
_KEPT_ENVIRONMENT = ("PATH", "LANG", "LC_ALL", "OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_MAX_VERDICT_BYTES = 1 << 20
_CPU_SLACK_SECONDS = 5


@dataclass(frozen=True)
class SandboxLimits:
    """How much one validation may use, and the batch sizes it must prove."""

    memory_mb: int = 512
    timeout: float = 30.0  # seconds of wall time, then the child is killed
    max_batch_size: int = 64
    max_batch_ms: float = 50.0


@dataclass(frozen=True)
class Validated:
    """A model that passed: its measured cost per batch size, and each input's top 3
    (output indexes) for the quality report; the same for the reference model if given."""

    batch_seconds: tuple[float, ...]
    top3: tuple[tuple[int, ...], ...]
    reference_top3: tuple[tuple[int, ...], ...] | None


_PASSED: OrderedDict[str, Validated] = OrderedDict()
_PASSED_KEPT = 16  # verdicts; each is a few KB


async def validate(
    data: bytes,
    known_labels: Collection[str] | None,
    limits: SandboxLimits,
    *,
    reference: bytes | None = None,
) -> Validated:
    """Validate `data` in a bounded child; raise `ModelFileError` saying why it failed.

    `reference` (the active model, already trusted) is run by the same child over every
    input so the caller can compare the two without running anything itself."""
    header = {
        "labels": sorted(known_labels) if known_labels is not None else None,
        "maxBatchSize": limits.max_batch_size,
        "maxBatchMs": limits.max_batch_ms,
        "modelBytes": len(data),
        "referenceBytes": len(reference or b""),
    }
    payload = json.dumps(header).encode() + b"\n" + data + (reference or b"")
    key = f"{hashlib.sha256(payload).hexdigest()}:{limits.memory_mb}:{limits.timeout:g}"
    if (passed := _PASSED.get(key)) is not None:
        _PASSED.move_to_end(key)
        return passed
    validated = await _validate_in_child(payload, limits)
    _PASSED[key] = validated
    if len(_PASSED) > _PASSED_KEPT:
        _PASSED.popitem(last=False)
    return validated


async def _validate_in_child(payload: bytes, limits: SandboxLimits) -> Validated:
    """One bounded child process answers for `payload` (the header line, then the bytes)."""
    with tempfile.TemporaryDirectory(prefix="hollang-validate-") as scratch:
        workdir, home = Path(scratch, "work"), Path(scratch, "home")
        workdir.mkdir()
        home.mkdir()
        read_end, write_end = os.pipe()
        try:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-P",  # nothing from the scratch directory on sys.path
                "-B",  # no .pyc writes
                "-m",
                "model.sandbox",
                str(limits.memory_mb),
                str(int(limits.timeout) + _CPU_SLACK_SECONDS),
                str(write_end),
                cwd=workdir,  # empty: no relative path can name anything
                env=_child_environment(str(home)),
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.DEVNULL,
                stderr=asyncio.subprocess.PIPE,
                pass_fds=(write_end,),
                start_new_session=True,  # a SIGTERM for the service is not for the child
            )
        finally:
            os.close(write_end)
        try:
            verdict, stderr = await asyncio.wait_for(
                _exchange(process, payload, read_end), timeout=limits.timeout
            )
        except TimeoutError:
            raise ModelFileError(
                f"validation timed out after {limits.timeout:g} s "
                "(HOLLANG_MODEL_VALIDATION_TIMEOUT); the validator was killed"
            ) from None
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            with contextlib.suppress(ProcessLookupError, ChildProcessError):
                await process.wait()
            os.close(read_end)
    return _read_verdict(verdict, process.returncode, stderr, limits)


def validate_blocking(
    data: bytes,
    known_labels: Collection[str] | None,
    limits: SandboxLimits,
    *,
    reference: bytes | None = None,
) -> Validated:
    """`validate` for command-line tools, which have no event loop of their own."""
    return asyncio.run(validate(data, known_labels, limits, reference=reference))


async def _exchange(
    process: asyncio.subprocess.Process, payload: bytes, read_end: int
) -> tuple[bytes, bytes]:
    """Send the request, collect the verdict pipe and the (capped) stderr, await the exit."""
    assert process.stdin is not None and process.stderr is not None
    loop = asyncio.get_running_loop()
    verdict_reader = asyncio.StreamReader(limit=_MAX_VERDICT_BYTES)
    transport, _ = await loop.connect_read_pipe(
        lambda: asyncio.StreamReaderProtocol(verdict_reader), os.fdopen(os.dup(read_end), "rb")
    )
    try:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            process.stdin.write(payload)
            await process.stdin.drain()
            process.stdin.close()
        stderr_task = asyncio.ensure_future(_read_capped(process.stderr, 64 * 1024))
        verdict = await _read_capped(verdict_reader, _MAX_VERDICT_BYTES)
        await process.wait()
        stderr = await stderr_task
    finally:
        transport.close()
    return verdict, stderr


async def _read_capped(stream: asyncio.StreamReader, cap: int) -> bytes:
    """Everything until EOF, keeping at most the last `cap` bytes (so a chatty child never
    blocks on a full pipe, and never fills our memory)."""
    kept = b""
    while chunk := await stream.read(65536):
        kept = (kept + chunk)[-cap:]
    return kept


def _read_verdict(
    verdict: bytes, returncode: int | None, stderr: bytes, limits: SandboxLimits
) -> Validated:
    try:
        answer: dict[str, Any] = json.loads(verdict) if verdict else {}
    except ValueError:
        answer = {}
    if answer.get("ok") is True and returncode == 0:
        reference = answer.get("referenceTop3")
        return Validated(
            batch_seconds=tuple(float(value) for value in answer["batchSeconds"]),
            top3=tuple(tuple(row) for row in answer["top3"]),
            reference_top3=tuple(tuple(row) for row in reference) if reference else None,
        )
    if isinstance(answer.get("reason"), str):
        raise ModelFileError(answer["reason"])
    if returncode is not None and returncode < 0:
        name = signal.Signals(-returncode).name
        hint = {
            "SIGXCPU": "it used more CPU time than the validation allows",
            "SIGKILL": "it was killed",
            "SIGABRT": "it aborted, e.g. when an allocation failed",
            "SIGSEGV": "it crashed, e.g. when an allocation failed",
        }.get(name, "it died")
        raise ModelFileError(
            f"validation failed: the validator was stopped by {name} ({hint}; memory limit "
            f"{limits.memory_mb} MB, HOLLANG_MODEL_VALIDATION_MEMORY_MB)"
        )
    last = stderr.decode(errors="replace").strip().splitlines()[-1:] or ["no output"]
    raise ModelFileError(f"validation failed (exit {returncode}): {last[0][:300]}")


def _child_environment(home: str) -> dict[str, str]:
    """Nothing of the service's own environment (database URL, credentials) but what
    Python and BLAS need; HOME in the scratch directory, so caches land there too
    (ONNX Runtime keeps one under ~/.cache)."""
    env = {name: os.environ[name] for name in _KEPT_ENVIRONMENT if name in os.environ}
    env.update(
        HOME=home,
        XDG_CACHE_HOME=os.path.join(home, ".cache"),
        PYTHONPATH=str(_PACKAGE_ROOT),
        OMP_NUM_THREADS="1",
        OPENBLAS_NUM_THREADS="1",
        MALLOC_ARENA_MAX="2",
    )
    return env


# ---- the child ----


def _child(memory_mb: int, cpu_seconds: int, verdict_fd: int) -> None:
    memory = memory_mb * 1024 * 1024
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
    resource.setrlimit(resource.RLIMIT_CPU, (cpu_seconds, cpu_seconds + 1))
    _die_with_parent()
    out = os.fdopen(verdict_fd, "w", encoding="utf-8")
    try:
        answer = _check(sys.stdin.buffer, memory_mb)
    except MemoryError:
        answer = {
            "ok": False,
            "reason": f"validation ran out of memory (limit {memory_mb} MB, "
            "HOLLANG_MODEL_VALIDATION_MEMORY_MB)",
        }
    out.write(json.dumps(answer))
    out.close()


def _check(stdin: Any, memory_mb: int) -> dict[str, Any]:
    """`model.engine.load_model`'s validation, keeping the answers for the quality report."""
    from model.engine import check_batches, open_session
    from model.modelfile import ModelFile

    header = json.loads(stdin.readline())
    data = stdin.read(header["modelBytes"])
    reference = stdin.read(header["referenceBytes"]) if header["referenceBytes"] else None
    try:
        model = open_session(ModelFile.from_bytes(data), header["labels"])  # static first
        check = check_batches(
            model.run, len(model.labels), header["maxBatchSize"], header["maxBatchMs"] / 1000
        )
    except ModelFileError as exc:
        reason = str(exc)
        if "alloc" in reason.lower():
            reason += f" (memory limit {memory_mb} MB, HOLLANG_MODEL_VALIDATION_MEMORY_MB)"
        return {"ok": False, "reason": reason}
    answer: dict[str, Any] = {
        "ok": True,
        "batchSeconds": list(check.batch_seconds),
        "top3": check.top(3).tolist(),
    }
    if reference is not None:
        try:
            trusted = open_session(ModelFile.from_bytes(reference))
            each_alone = check_batches(trusted.run, len(trusted.labels), 1)
            answer["referenceTop3"] = each_alone.top(3).tolist()
        except ModelFileError:
            answer["referenceTop3"] = None  # nothing to compare with; not the new model's fault
    return answer


def _die_with_parent() -> None:
    """Linux: SIGKILL this process when the worker that started it dies."""
    with contextlib.suppress(OSError, AttributeError):
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        pr_set_pdeathsig = 1
        libc.prctl(pr_set_pdeathsig, signal.SIGKILL)
        if os.getppid() == 1:  # the parent was already gone
            os._exit(1)


if __name__ == "__main__":
    _child(int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]))


def check_model_file(
    data: bytes, catalogue_names: Collection[str] | None = None, limits: SandboxLimits | None = None
) -> dict[str, object]:
    """The one check of the model contract for tools: the serving worker's validation
    (`model.engine.load_model`, run here in the sandbox over every batch size and input),
    plus, given a catalogue, that every label names one of its hobbies.

    Returns a summary for people; raises `ModelFileError` saying why the file is unusable."""
    from model.engine import check_labels
    from model.modelfile import ModelFile
    from model.scoring import all_score_inputs

    if catalogue_names is not None:
        check_labels(
            ModelFile.from_bytes(data).metadata.labels, catalogue_names, "catalogue hobbies"
        )
    validated = validate_blocking(data, None, limits or SandboxLimits())
    return {
        "ok": True,
        "inputs": len(all_score_inputs()),
        "batchSizes": len(validated.batch_seconds),
        "slowestBatchMs": round(max(validated.batch_seconds) * 1000, 3),
        "catalogueChecked": catalogue_names is not None,
    }
