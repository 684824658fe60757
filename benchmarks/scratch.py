"""Throwaway resources shared by the tests and the benchmark scripts: a free port, and a
MariaDB/MySQL database made for one run and dropped after it.

Names are `<base>_<label><hex>`, so `.ci/run` can drop what a killed run left behind by the
base name's prefix.
"""

from __future__ import annotations

import secrets
import socket
from collections.abc import Iterator
from contextlib import contextmanager

from sqlalchemy import create_engine, text
from sqlalchemy.engine import make_url


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def scratch_mysql_database(server_url: str, label: str = "") -> Iterator[str]:
    """Create a fresh utf8mb4 database next to `server_url`'s; yield its URL; drop it."""
    base = make_url(server_url)
    name = f"{base.database or 'hollang'}_{label}{secrets.token_hex(4)}"
    admin = create_engine(base.set(database=""), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4"))
    try:
        yield base.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as connection:
            connection.execute(text(f"DROP DATABASE IF EXISTS `{name}`"))
        admin.dispose()
