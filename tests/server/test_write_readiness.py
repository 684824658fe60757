"""/health/ready tells the truth about writes, on a real `hollang serve`: the SQLite file
deleted or replaced under it, a disk that fails writes, a full disk, MySQL refusing writes.
Each time: no write is acknowledged that was not stored in the database at the configured
path, readiness says why, and both recover by themselves once writes work again."""

from __future__ import annotations

import os
import resource
import shutil
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from pathlib import Path

import httpx
import pymysql
import pytest
from sqlalchemy import create_engine, inspect
from sqlalchemy.engine import make_url

from db.migrate import upgrade
from tests.helpers import MYSQL_URL, REQUIRE_MYSQL, fresh_database_url, serve_process, submission


@pytest.fixture
def sqlite_server(tmp_path: Path) -> Iterator[tuple[httpx.Client, Path]]:
    env = {"HOLLANG_DATA_DIR": str(tmp_path), "HOLLANG_LOG_LEVEL": "WARNING"}
    with (
        serve_process(env, log_path=tmp_path / "serve.log") as url,
        httpx.Client(base_url=url, timeout=30) as http,
    ):
        yield http, tmp_path / "hollang.db"


def submit(http: httpx.Client) -> int | None:
    """The recommendation id if the submission was acknowledged, else None (after a 503)."""
    response = http.post("/test-responses", json=submission("쓰기"))
    if response.status_code == 200:
        return int(response.json()["data"]["recommendation"]["id"])
    assert response.status_code == 503, response.text
    return None


def wait_for(condition: Callable[[], bool], seconds: float = 20) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.1)


def readiness(http: httpx.Client) -> tuple[int, str]:
    response = http.get("/health/ready")
    return response.status_code, response.json()["message"]


def ids_in(path: Path) -> set[int]:
    with closing(sqlite3.connect(path)) as connection:
        return {row[0] for row in connection.execute("SELECT id FROM recommendation")}


def remove_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def backup(path: Path, target: Path) -> None:
    """Closed, not just committed (`with sqlite3.connect()` does not close): a connection
    left open to `target` would make this process's SQLite read the file renamed to the
    database's path through `target`'s own WAL, and miss what the server wrote."""
    with closing(sqlite3.connect(path)) as source, closing(sqlite3.connect(target)) as copy:
        source.backup(copy)
    with closing(sqlite3.connect(target)) as copy:
        copy.execute("PRAGMA journal_mode=WAL")


def test_a_deleted_sqlite_file_takes_no_write_and_readiness_says_so(
    sqlite_server: tuple[httpx.Client, Path], tmp_path: Path
) -> None:
    http, path = sqlite_server
    assert submit(http) is not None
    backup(path, tmp_path / "backup.db")
    remove_database(path)

    acknowledged = [rid for rid in (submit(http) for _ in range(20)) if rid is not None]
    assert acknowledged == []  # before: most were acknowledged into the deleted file
    status, message = readiness(http)
    assert status == 503
    assert "database" in message and ("unable to open" in message or "deleted" in message)
    assert not path.exists()  # no empty database was created in its place

    shutil.copy(tmp_path / "backup.db", path)  # the operator restores the file
    wait_for(lambda: readiness(http)[0] == 200)
    after = [submit(http) for _ in range(5)]
    assert None not in after
    assert set(after) <= ids_in(path)  # stored in the file at the path


def test_a_replaced_sqlite_file_gets_every_acknowledged_write(
    sqlite_server: tuple[httpx.Client, Path], tmp_path: Path
) -> None:
    http, path = sqlite_server
    before = submit(http)
    assert before is not None
    replacement = tmp_path / "replacement.db"
    backup(path, replacement)
    # The old file's WAL must not be found beside the new file (SQLite would apply it to
    # the new one): remove it, then rename the new file in.
    Path(f"{path}-wal").unlink(missing_ok=True)
    Path(f"{path}-shm").unlink(missing_ok=True)
    replacement.replace(path)  # a new inode at the same path; the server's is deleted

    acknowledged = [rid for rid in (submit(http) for _ in range(30)) if rid is not None]
    wait_for(lambda: readiness(http)[0] == 200)
    acknowledged += [rid for rid in (submit(http) for _ in range(5)) if rid is not None]
    assert len(acknowledged) >= 5
    assert set(acknowledged) <= ids_in(path)  # nothing acknowledged into the old file


def limit_file_size(pid: int, limit: int) -> None:
    """What a failing disk looks like to SQLite: every write past `limit` bytes fails (EFBIG;
    Python ignores SIGXFSZ). prlimit changes the running server's own limit."""
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_FSIZE)
    resource.prlimit(pid, resource.RLIMIT_FSIZE, (limit, hard))


def test_failing_disk_writes_make_it_unready_until_they_work(
    sqlite_server: tuple[httpx.Client, Path],
) -> None:
    http, _path = sqlite_server
    pid = http.get("/info").json()["data"]["pid"]
    assert submit(http) is not None
    assert readiness(http)[0] == 200
    limit_file_size(pid, 1)
    try:
        results = [submit(http) for _ in range(5)]
        assert results == [None] * 5
        status, message = readiness(http)
        assert status == 503
        assert "refusing writes" in message and "SQLITE_" in message, message
        assert http.get("/recommendations/1").status_code == 200  # reads still work
    finally:
        limit_file_size(pid, resource.RLIM_INFINITY)
    wait_for(lambda: readiness(http)[0] == 200)
    assert submit(http) is not None


def test_a_full_disk_makes_it_unready_until_space_is_freed(tmp_path: Path) -> None:
    mount = tmp_path / "disk"
    mount.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)],
        capture_output=True,
        check=False,
    )
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        env = {"HOLLANG_DATA_DIR": str(mount), "HOLLANG_LOG_LEVEL": "WARNING"}
        with (
            serve_process(env, log_path=tmp_path / "serve.log") as url,
            httpx.Client(base_url=url, timeout=30) as http,
        ):
            assert submit(http) is not None
            ballast = mount / "ballast"
            fill = os.open(ballast, os.O_WRONLY | os.O_CREAT)
            try:
                while os.write(fill, b"\0" * 4096):
                    pass
            except OSError:  # ENOSPC: the disk is full
                pass
            finally:
                os.close(fill)
            results = [submit(http) for _ in range(100)]  # the WAL's free pages run out
            assert None in results
            status, message = readiness(http)
            assert status == 503 and "refusing writes" in message, message
            ballast.unlink()
            wait_for(lambda: readiness(http)[0] == 200)
            assert submit(http) is not None
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


WRITES = "INSERT, UPDATE, DELETE"


@pytest.fixture
def mysql_app_user(tmp_path: Path) -> Iterator[tuple[str, Callable[[str], None], list[str]]]:
    """A migrated scratch database and a user of its own that may write its tables (table
    grants: MariaDB applies a changed table grant to open connections at once, a changed
    database grant only at their next USE); a way to run SQL as root; the tables."""
    if not MYSQL_URL:
        if REQUIRE_MYSQL:
            pytest.fail("HOLLANG_TEST_MYSQL_URL is not set, but HOLLANG_REQUIRE_MYSQL=1")
        pytest.skip("HOLLANG_TEST_MYSQL_URL is not set")
    for url in fresh_database_url("mysql", tmp_path):
        upgrade(url)
        parsed = make_url(url)
        admin = pymysql.connect(
            host=parsed.host, port=parsed.port or 3306, user=parsed.username, autocommit=True
        )
        user = f"w{parsed.database}"[:32]

        def root(sql: str, admin: pymysql.Connection = admin) -> None:  # type: ignore[type-arg]
            with admin.cursor() as cursor:
                cursor.execute(sql)

        engine = create_engine(url)
        tables = sorted(inspect(engine).get_table_names())
        engine.dispose()
        root(f"CREATE USER '{user}'@'%' IDENTIFIED BY 'pw'")
        root(f"GRANT SELECT ON `{parsed.database}`.* TO '{user}'@'%'")
        for table in tables:
            root(f"GRANT {WRITES} ON `{parsed.database}`.`{table}` TO '{user}'@'%'")
        try:
            yield parsed.set(username=user, password="pw").render_as_string(False), root, tables
        finally:
            root(f"DROP USER '{user}'@'%'")
            admin.close()


@pytest.mark.mysql
def test_mysql_refusing_writes_makes_it_unready_until_it_takes_them(
    tmp_path: Path, mysql_app_user: tuple[str, Callable[[str], None], list[str]]
) -> None:
    url, root, tables = mysql_app_user
    parsed = make_url(url)
    env = {
        "HOLLANG_DATA_DIR": str(tmp_path),
        "HOLLANG_DATABASE_URL": url,
        "HOLLANG_LOG_LEVEL": "WARNING",
    }

    def grants(verb: str) -> None:
        for table in tables:
            target = f"`{parsed.database}`.`{table}`"
            who = f"'{parsed.username}'@'%'"
            root(f"{verb} {WRITES} ON {target} {'TO' if verb == 'GRANT' else 'FROM'} {who}")

    with (
        serve_process(env, log_path=tmp_path / "serve.log") as base,
        httpx.Client(base_url=base, timeout=30) as http,
    ):
        assert submit(http) is not None
        grants("REVOKE")
        try:
            assert [submit(http) for _ in range(3)] == [None] * 3
            status, message = readiness(http)
            assert status == 503 and "refusing writes" in message and "MySQL 1142" in message
        finally:
            grants("GRANT")
        wait_for(lambda: readiness(http)[0] == 200)
        assert submit(http) is not None
