"""Throwaway resources shared by the tests and the benchmark scripts: a free port, a
MariaDB/MySQL database made for one run and dropped after it, and the start/stop chores of
a server subprocess (wait until it answers, stop it even if it will not stop).

Names are `<base>_<label><hex>`, so `.ci/run` can drop what a killed run left behind by the
base name's prefix.
"""

from __future__ import annotations

import secrets
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager

import httpx
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


def wait_until_ready(
    process: subprocess.Popen[bytes],
    url: str,
    *,
    log: object,
    timeout: float = 90,
    in_a_row: int = 1,
    interval: float = 0.1,
) -> None:
    """Poll `url` until it answers 200 `in_a_row` times; fail early if the process exits.

    Several answers in a row make it likely every worker of a multi-worker server is up."""
    deadline = time.monotonic() + timeout
    ready = 0
    while ready < in_a_row:
        if process.poll() is not None:
            raise RuntimeError(f"{process.args!r} exited with {process.returncode}; see {log}")
        if time.monotonic() > deadline:
            raise RuntimeError(f"{url} did not answer 200 within {timeout} s; see {log}")
        try:
            ok = httpx.get(url, timeout=2).status_code == 200
        except httpx.HTTPError:
            ok = False
        ready = ready + 1 if ok else 0
        if ready < in_a_row:
            time.sleep(interval)


def stop_process(process: subprocess.Popen[bytes], timeout: float = 30) -> None:
    """SIGTERM (a graceful stop), then SIGKILL if it has not exited within `timeout`."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=timeout)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
