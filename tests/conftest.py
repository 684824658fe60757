"""Fixtures: every database-backed fixture runs on SQLite and on MariaDB (see helpers), and
every object-store fixture on a local folder and on a bucket of a moto S3 server that is
started once per session (see s3support)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.helpers import (
    BACKENDS,
    MYSQL_URL,
    REQUIRE_MYSQL,
    RunningService,
    free_port,
    fresh_database_url,
    make_settings,
    start_service,
)
from tests.s3support import AWS_ENV, STORES, StoreUnderTest, s3_store


@pytest.fixture(params=BACKENDS)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url(request.param, tmp_path)


@pytest.fixture(scope="module", params=BACKENDS)
def service(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[RunningService]:
    """A server per test module and backend, with the admin API enabled."""
    tmp = tmp_path_factory.mktemp("service")
    for url in fresh_database_url(request.param, tmp):
        settings = make_settings(
            tmp, url, admin_token="test-admin-token", cors_origins=["https://hollang.example"]
        )
        yield from start_service(settings)


@pytest.fixture(scope="session", autouse=True)
def aws_credentials() -> Iterator[None]:
    """Fake credentials for boto3 in this process (subprocesses get them via `env`)."""
    with pytest.MonkeyPatch.context() as patch:
        for name, value in AWS_ENV.items():
            patch.setenv(name, value)
        yield


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"http://127.0.0.1:{port}"
    server.stop()


@pytest.fixture(params=STORES)
def objects(request: pytest.FixtureRequest, tmp_path: Path) -> StoreUnderTest:
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if request.param == "local":
        return StoreUnderTest("local", data_dir)
    return s3_store(data_dir, request.getfixturevalue("moto_endpoint"))


# The slow end-to-end cases (real server processes, 100k rows) run twice, not four times:
# each store once and each database once, S3 paired with MariaDB as in production.
PAIRS = [
    pytest.param(("local", "sqlite"), id="local-sqlite"),
    pytest.param(("s3", "mysql"), id="s3-mysql", marks=pytest.mark.mysql),
]


@pytest.fixture(params=PAIRS)
def store_and_database(
    request: pytest.FixtureRequest, tmp_path: Path
) -> Iterator[tuple[StoreUnderTest, str]]:
    kind, backend = request.param
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    if kind == "local":
        objects = StoreUnderTest("local", data_dir)
    else:
        objects = s3_store(data_dir, request.getfixturevalue("moto_endpoint"))
    for url in fresh_database_url(backend, tmp_path):
        yield objects, url


# Without HOLLANG_TEST_MYSQL_URL the MariaDB half of the suite cannot run. Rather than a skip
# line per case (about 150), its cases are deselected at collection and counted in one line
# of the summary that says how to run them. HOLLANG_REQUIRE_MYSQL=1 keeps them, so each one
# fails as it did; so does naming the `mysql` marker in `-m`, to see them skip one by one.
_MYSQL_HALF = pytest.StashKey[int]()


# The longest modules go first: `make test` hands whole modules to its workers in
# collection order, so one started last would leave its worker running alone at the end.
RUN_FIRST = (
    "tests/deploy/test_rehearse.py",  # the blue/green rehearsal, about 2.5 minutes
    "tests/deploy/test_hooks.py",
    "tests/cli/test_feedback_loop.py",
    "tests/db/test_export.py",
    "tests/db/test_write_batcher.py",
    "tests/db/test_db_faults.py",
)


def _run_first(item: pytest.Item) -> int:
    path = item.path.relative_to(item.config.rootpath).as_posix()
    return RUN_FIRST.index(path) if path in RUN_FIRST else len(RUN_FIRST)


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    items.sort(key=_run_first)  # stable: the order within a module is kept
    if MYSQL_URL or REQUIRE_MYSQL or "mysql" in (config.option.markexpr or ""):
        return
    mysql_items = [item for item in items if item.get_closest_marker("mysql") is not None]
    if not mysql_items:
        return
    config.stash[_MYSQL_HALF] = len(mysql_items)
    workeroutput = getattr(config, "workeroutput", None)
    if workeroutput is not None:  # an xdist worker: the controller prints the summary
        workeroutput["mysql_deselected"] = len(mysql_items)
    config.hook.pytest_deselected(items=mysql_items)
    items[:] = [item for item in items if item.get_closest_marker("mysql") is None]


@pytest.hookimpl(optionalhook=True)
def pytest_testnodedown(node: object, error: object) -> None:
    """xdist's controller hears what each worker deselected (they all collect the same)."""
    deselected = getattr(node, "workeroutput", {}).get("mysql_deselected", 0)
    if deselected:
        config: pytest.Config = node.config  # type: ignore[attr-defined]
        config.stash[_MYSQL_HALF] = deselected


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    deselected = terminalreporter.config.stash.get(_MYSQL_HALF, 0)
    if deselected:
        terminalreporter.write_line(
            f"MariaDB half skipped: {deselected} cases deselected (HOLLANG_TEST_MYSQL_URL is not"
            " set); to run them: HOLLANG_TEST_MYSQL_URL=mysql+pymysql://root@127.0.0.1:3306/"
            "hollang_test make test (docs/development.md)"
        )
