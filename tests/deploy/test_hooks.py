"""The CodeDeploy hooks, run in order against a temporary instance (plain-process mode).

One release is installed per module (BeforeInstall is idempotent per deployment id, so
later deployments reuse it); each test configures its own port and database, deploys,
and stops again. Every database case runs on SQLite and on MariaDB.
"""

from __future__ import annotations

import json
import shutil
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from sqlalchemy import create_engine, func, select

from db.models import TestResponse
from tests.deploy.codedeploy import AS_ROOT, RUNAS, HookResult, Instance, instance
from tests.helpers import BACKENDS, free_port, fresh_database_url, submission

pytestmark = pytest.mark.timeout(600)

IN_FLIGHT = 24  # concurrent requests caught mid-upload by ApplicationStop


@pytest.fixture(scope="module")
def machine() -> Iterator[Instance]:
    with instance() as machine:
        yield machine


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path, machine: Instance) -> Iterator[str]:
    """A fresh database URL the service user can open (SQLite: in the deploy home)."""
    if request.param == "sqlite":
        data = machine.home / f"data-{request.node.name.split('[')[0]}-{time.monotonic_ns()}"
        data.mkdir()
        if AS_ROOT:
            shutil.chown(data, RUNAS)
        yield f"sqlite:///{data / 'hollang.db'}"
        return
    yield from fresh_database_url(request.param, tmp_path)


def configure(machine: Instance, database_url: str, **overrides: str) -> None:
    settings = {
        "HOLLANG_DEPLOY_MODE": "process",
        "HOLLANG_DEPLOY_HOME": str(machine.home),
        "HOLLANG_HOST": "127.0.0.1",
        "HOLLANG_PORT": str(free_port()),
        "HOLLANG_WORKERS": "2",
        "HOLLANG_DATABASE_URL": database_url,
        "HOLLANG_DEPLOY_READY_TIMEOUT": "120",
        "HOLLANG_DEPLOY_STOP_TIMEOUT": "60",
    }
    machine.configure(**(settings | overrides))


def deploy_ok(machine: Instance) -> None:
    for result in machine.deploy():
        assert result.returncode == 0, f"{result.event} failed:\n{result.output}"


def refuses_connections(url: str) -> bool:
    try:
        httpx.get(f"{url}/health/live", timeout=2)
    except httpx.ConnectError:
        return True
    return False


def stored_test_responses(database_url: str) -> int:
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            return int(connection.scalar(select(func.count()).select_from(TestResponse)) or 0)
    finally:
        engine.dispose()


def service_uid(machine: Instance) -> int:
    pid = (machine.home / "run" / "hollang.pid").read_text().strip()
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line for line in status.splitlines() if line.startswith("Uid:")).split()[1])


def service_file_limits(machine: Instance) -> tuple[int, float]:
    """The running service's soft and hard open-file limits."""
    pid = (machine.home / "run" / "hollang.pid").read_text().strip()
    limits = Path(f"/proc/{pid}/limits").read_text()
    line = next(line for line in limits.splitlines() if line.startswith("Max open files"))
    soft, hard = line.split()[3:5]
    return int(soft), float("inf") if hard == "unlimited" else int(hard)


def test_deployment_brings_the_service_up_and_every_hook_is_idempotent(
    machine: Instance, database: str
) -> None:
    configure(machine, database)
    deploy_ok(machine)

    ready = httpx.get(f"{machine.url}/health/ready", timeout=5)
    assert ready.status_code == 200, ready.text
    created = httpx.post(f"{machine.url}/test-responses", json=submission(), timeout=10)
    assert created.status_code == 200, created.text
    recommendation = created.json()["data"]["recommendation"]["id"]
    shown = httpx.get(f"{machine.url}/recommendations/{recommendation}", timeout=10)
    assert len(shown.json()["data"]["recommendation"]["hobbies"]) == 3
    if AS_ROOT:
        assert service_uid(machine) != 0, "the service must run as the runas user, not root"
    # raised from the usual 1024 to HOLLANG_DEPLOY_NOFILE, as far as the hard limit allows
    soft, hard = service_file_limits(machine)
    assert soft == min(65536, hard)

    # A retried deployment step changes nothing: same release, same process.
    pid = (machine.home / "run" / "hollang.pid").read_text()
    again = [machine.hook(event) for event in ("BeforeInstall", "ApplicationStart")]
    assert [r.returncode for r in again] == [0, 0], [r.output for r in again]
    assert "already installed" in again[0].output
    assert "already running" in again[1].output
    assert (machine.home / "run" / "hollang.pid").read_text() == pid
    assert machine.hook("ValidateService").returncode == 0

    stopped = machine.hook("ApplicationStop")
    assert stopped.returncode == 0, stopped.output
    assert "stopped cleanly" in stopped.output
    assert refuses_connections(machine.url)
    again_stopped = machine.hook("ApplicationStop")
    assert again_stopped.returncode == 0, again_stopped.output
    assert "nothing to stop" in again_stopped.output
    assert stored_test_responses(database) == 1


def test_application_stop_drains_requests_in_flight(machine: Instance, database: str) -> None:
    """Requests whose bodies are still arriving when ApplicationStop sends SIGTERM all
    complete with 200 and are stored; only then does the service exit."""
    configure(machine, database)
    deploy_ok(machine)
    body = json.dumps(submission(name="드레인")).encode()
    all_started = threading.Barrier(IN_FLIGHT + 1)
    draining = threading.Event()

    def slow_body() -> Iterator[bytes]:
        yield body[:20]  # headers and a first chunk: the request is now in flight
        all_started.wait(timeout=60)
        draining.wait(timeout=60)
        yield body[20:]

    def post(_: int) -> int:
        with httpx.Client(timeout=60) as client:
            return client.post(
                f"{machine.url}/test-responses",
                content=slow_body(),
                headers={"Content-Type": "application/json"},
            ).status_code

    log_lines_before = len(machine.log.read_text().splitlines())
    with ThreadPoolExecutor(IN_FLIGHT) as pool:
        statuses = pool.map(post, range(IN_FLIGHT))
        all_started.wait(timeout=60)
        stop: list[HookResult] = []
        stopper = threading.Thread(target=lambda: stop.append(machine.hook("ApplicationStop")))
        stopper.start()
        # Proceed once a worker has taken SIGTERM and is waiting on our connections.
        deadline = time.monotonic() + 60
        while "Waiting for connections to close" not in "\n".join(
            machine.log.read_text().splitlines()[log_lines_before:]
        ):
            assert time.monotonic() < deadline, machine.log.read_text()[-3000:]
            assert stopper.is_alive(), "ApplicationStop returned before the requests finished"
            time.sleep(0.05)
        draining.set()
        results = list(statuses)
        stopper.join(timeout=120)

    assert results == [200] * IN_FLIGHT
    (stopped,) = stop
    assert stopped.returncode == 0, stopped.output
    assert "stopped cleanly" in stopped.output
    assert refuses_connections(machine.url)
    assert stored_test_responses(database) == IN_FLIGHT


def test_validate_service_fails_when_the_service_cannot_become_ready(
    machine: Instance,
) -> None:
    """A release that cannot reach its database never gets ready: ValidateService gives up
    after its bound with a non-zero status and shows why."""
    configure(
        machine,
        f"mysql+pymysql://hollang:wrong@127.0.0.1:{free_port()}/hollang",
        HOLLANG_DEPLOY_READY_TIMEOUT="3",
    )
    results = {r.event: r for r in machine.deploy()}
    assert results["ApplicationStart"].returncode == 0
    failed = results["ValidateService"]
    assert failed.returncode != 0
    assert "NOT READY after 3s" in failed.output
    assert "FAILED: the service is not ready" in failed.output
    assert machine.hook("ApplicationStop").returncode == 0


def test_validate_service_fails_when_nothing_listens(machine: Instance) -> None:
    configure(machine, "sqlite://", HOLLANG_DEPLOY_READY_TIMEOUT="1")
    failed = machine.hook("ValidateService")
    assert failed.returncode != 0
    assert "Connection refused" in failed.output


@pytest.mark.skipif(not AS_ROOT, reason="only meaningful when the tests run as root")
def test_hooks_refuse_to_run_as_root(machine: Instance) -> None:
    configure(machine, "sqlite://")
    result = machine.hook("ApplicationStop", as_root=True)
    assert result.returncode != 0
    assert "running as root" in result.output
