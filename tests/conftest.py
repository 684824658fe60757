"""Fixtures: every database-backed fixture runs on SQLite and on MariaDB (see helpers)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.helpers import (
    BACKENDS,
    RunningService,
    fresh_database_url,
    make_settings,
    start_service,
)


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
