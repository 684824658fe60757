"""A client of the module's server (the `service` fixture of tests/conftest.py)."""

from collections.abc import Iterator

import httpx
import pytest

from tests.helpers import RunningService


@pytest.fixture(scope="module")
def client(service: RunningService) -> Iterator[httpx.Client]:
    with service.client() as http:
        yield http
