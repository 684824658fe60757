"""A moto S3 server for the session, and the store fixture every storage test runs on twice:
once on a local folder and once on a fresh bucket of that server."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from moto.server import ThreadedMotoServer

from tests.helpers import free_port, fresh_database_url
from tests.storage.s3support import AWS_ENV, STORES, StoreUnderTest, s3_store


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
