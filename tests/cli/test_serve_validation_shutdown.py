"""SIGTERM ends a real `hollang serve` within its graceful timeout even while a model that
never finishes is being validated, and takes the validator with it.

Before validation ran in a child, a `Loop` of 1e13 iterations ran in the worker's own
thread, which nothing can interrupt: the process needed SIGKILL 75 s after SIGTERM."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

from harness.scratch import free_port, wait_until_ready
from tests.model import hostile

GRACEFUL = 30.0  # `hollang serve`'s timeout_graceful_shutdown
SLACK = 15.0


def test_sigterm_during_a_validation_ends_the_service_and_the_validator(tmp_path: Path) -> None:
    port = free_port()
    env = {
        **os.environ,
        "HOLLANG_DATA_DIR": str(tmp_path),
        "HOLLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'hollang.db'}",
        "HOLLANG_ADMIN_TOKEN": "t",
        "HOLLANG_MODEL_VALIDATION_TIMEOUT": "300",  # it would not end by itself in time
        "HOLLANG_LOG_FORMAT": "text",
    }
    hollang = Path(sys.executable).with_name("hollang")
    log_path = tmp_path / "serve.log"
    with open(log_path, "w") as log:
        process = subprocess.Popen(
            [str(hollang), "serve", "--host", "127.0.0.1", "--port", str(port)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/health/ready", log=log_path)

        def upload() -> None:
            with contextlib.suppress(httpx.HTTPError):  # it may close with the service
                httpx.post(
                    f"{url}/admin/model",
                    content=hostile.endless_loop(),
                    headers={"Authorization": "Bearer t"},
                    timeout=GRACEFUL + SLACK,
                )

        uploading = threading.Thread(target=upload, daemon=True)
        uploading.start()
        deadline = time.monotonic() + 20
        while not (validators := hostile.validator_pids(process.pid)):
            assert time.monotonic() < deadline, "the validator never started"
            time.sleep(0.1)
        time.sleep(1.0)
        assert httpx.get(f"{url}/health/live", timeout=1).status_code == 200

        signalled = time.monotonic()
        process.send_signal(signal.SIGTERM)
        code = process.wait(timeout=GRACEFUL + SLACK)
        took = time.monotonic() - signalled
        assert code == 0, log_path.read_text()[-2000:]
        assert took < GRACEFUL + SLACK
        deadline = time.monotonic() + 5
        while any(Path(f"/proc/{pid}").exists() for pid in validators):
            # a zombie is reaped by init once its parent is gone; only a live one counts
            states = [
                Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
                for pid in validators
                if Path(f"/proc/{pid}").exists()
            ]
            if all(state == "Z" for state in states):
                break
            assert time.monotonic() < deadline, f"the validator outlived the service: {states}"
            time.sleep(0.1)
        uploading.join(timeout=SLACK)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
