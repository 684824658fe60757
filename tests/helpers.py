"""Test helpers: real databases (SQLite and MariaDB), real running servers, request bodies.

Every database-backed fixture is parametrized over both backends. MariaDB/MySQL runs when
`HOLLANG_TEST_MYSQL_URL` names a server and base database (each fixture instance creates
and drops its own `<base>_<random>` database); without it those cases are skipped, unless
`HOLLANG_REQUIRE_MYSQL=1` (set by `.ci/run`), which turns the skip into a failure.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from click.testing import CliRunner
from sqlalchemy import func, select

from cli.context import prepare_database
from cli.main import main
from db.models import (
    Hobby,
    Recommendation,
    RecommendationHobby,
    Survey,
    TestResponse,
    TestResponseDetail,
    User,
)
from db.session import Database
from harness.scratch import free_port, scratch_mysql_database, stop_process, wait_until_ready
from server.app import create_app
from server.protocol import GuardedHttpToolsProtocol
from server.settings import Settings

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "hollang"
MYSQL_URL = os.environ.get("HOLLANG_TEST_MYSQL_URL", "")
REQUIRE_MYSQL = os.environ.get("HOLLANG_REQUIRE_MYSQL") == "1"
BACKENDS = ["sqlite", pytest.param("mysql", marks=pytest.mark.mysql)]


def fresh_database_url(backend: str, tmp_dir: Path) -> Iterator[str]:
    """A new, empty database of `backend`; dropped afterwards."""
    if backend == "sqlite":
        yield f"sqlite:///{tmp_dir / 'hollang.db'}"
        return
    if not MYSQL_URL:
        message = "HOLLANG_TEST_MYSQL_URL is not set"
        if REQUIRE_MYSQL:
            pytest.fail(f"{message}, but HOLLANG_REQUIRE_MYSQL=1: MySQL tests must run")
        pytest.skip(message)
    with scratch_mysql_database(MYSQL_URL) as url:
        yield url


@dataclass
class RunningService:
    """A real uvicorn server on a real port, in this process, and its database."""

    url: str
    settings: Settings
    db: Database
    server: uvicorn.Server

    def client(self, **kwargs: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)  # type: ignore[arg-type]

    def async_client(self, **kwargs: object) -> httpx.AsyncClient:
        limits = httpx.Limits(max_connections=200, max_keepalive_connections=200)
        return httpx.AsyncClient(base_url=self.url, timeout=30, limits=limits, **kwargs)  # type: ignore[arg-type]

    @property
    def app_services(self):  # type: ignore[no-untyped-def]
        return self.server.config.loaded_app.app.state.services  # type: ignore[union-attr]


def start_service(settings: Settings) -> Iterator[RunningService]:
    prepare_database(settings)
    port = free_port()
    config = uvicorn.Config(
        create_app(settings),
        host="127.0.0.1",
        port=port,
        log_level="warning",
        lifespan="on",
        http=GuardedHttpToolsProtocol,  # what `hollang serve` runs (default bounds)
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.02)
    db = Database(settings.resolved_database_url)
    try:
        yield RunningService(f"http://127.0.0.1:{port}", settings, db, server)
    finally:
        server.should_exit = True
        thread.join(timeout=30)
        db.dispose()


def make_settings(data_dir: Path, database_url: str, **overrides: object) -> Settings:
    fast_polls: dict[str, object] = {"model_poll_interval": 0.2, "catalog_poll_interval": 0.5}
    return Settings(
        data_dir=data_dir,
        database_url=database_url,
        **{**fast_polls, **overrides},  # type: ignore[arg-type]
    )


def answers_for(scores: tuple[int, int, int, int] | list[int]) -> list[dict[str, int]]:
    """Twelve details whose scoring gives `scores` ([E, N, F, J], each 0..3)."""
    details = []
    for group, score in enumerate(scores):
        for offset in range(3):
            number = group * 3 + offset + 1
            details.append({"questionNumber": number, "answerNumber": 2 if offset < score else 1})
    return details


def submission(name: str = "홀랑", scores: tuple[int, int, int, int] = (2, 1, 3, 0)) -> dict:  # type: ignore[type-arg]
    return {"user": {"name": name}, "testResponseDetails": answers_for(scores)}


TOKEN_HEADER = "X-Recommendation-Token"


def owner(created: dict) -> dict[str, str]:  # type: ignore[type-arg]
    """The header that owns the survey of a recommendation, from POST /test-responses `data`."""
    return {TOKEN_HEADER: created["recommendation"]["token"]}


def hollang(env: dict[str, str], *args: str, code: int = 0) -> Any:
    """The real `hollang` command, run in-process (a subprocess per call costs a second):
    its JSON output when it exits 0, else its stderr; `code` is the exit status expected."""
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == code, result.output + repr(result.exception)
    return json.loads(result.stdout) if code == 0 else result.stderr


def run_cli(
    *args: str, env: dict[str, str] | None = None, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    """Run the real `hollang` console script."""
    hollang = Path(sys.executable).with_name("hollang")
    return subprocess.run(
        [str(hollang), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, **(env or {})},
        check=False,
    )


@contextmanager
def serve_process(
    env: dict[str, str], workers: int = 1, log_path: Path | None = None
) -> Iterator[str]:
    """Run `hollang serve` as a real separate process; yields its base URL once ready."""
    port = free_port()
    hollang = Path(sys.executable).with_name("hollang")
    log = open(log_path or os.devnull, "w")  # noqa: SIM115 - closed in finally
    process = subprocess.Popen(
        [
            str(hollang),
            "serve",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            str(workers),
        ],
        env={**os.environ, **env},
        stdout=log,
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/health/ready", log=log_path)
        yield url
    finally:
        stop_process(process)
        log.close()


def stored_counts(service: RunningService) -> dict[str, int]:
    """Row counts of every table a request could write, and the sum of recommend counts."""
    tables = (User, TestResponse, TestResponseDetail, Recommendation, RecommendationHobby, Survey)
    queries = {table.__tablename__: select(func.count()).select_from(table) for table in tables}
    queries["surveyed_links"] = (
        select(func.count())
        .select_from(RecommendationHobby)
        .where(RecommendationHobby.survey_id.is_not(None))
    )
    queries["recommend_count_sum"] = select(func.coalesce(func.sum(Hobby.recommend_count), 0))
    with service.db.read() as session:
        return {name: int(session.scalar(query) or 0) for name, query in queries.items()}
