"""A private MariaDB server for fault tests: its own data directory, port and socket.

Fault tests stop and restart the database under a running service; they must never touch
the shared server on :3306 that every other test uses. The data directory is created
once with `mariadb-install-db` and survives kills, so a restart is InnoDB crash recovery,
as in production. Authentication is off (`--skip-grant-tables`): it listens on 127.0.0.1
only and lives for one test module.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pymysql

from tests.helpers import free_port

MARIADBD = "/usr/sbin/mariadbd"


def available() -> bool:
    return Path(MARIADBD).exists() and shutil.which("mariadb-install-db") is not None


class PrivateMariaDB:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.datadir = root / "data"
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        installed = subprocess.run(
            [
                "mariadb-install-db",
                "--no-defaults",
                f"--datadir={self.datadir}",
                "--user=root",
                "--auth-root-authentication-method=normal",
                "--skip-test-db",
            ],
            capture_output=True,
            timeout=120,
            check=False,
        )
        if installed.returncode != 0:
            raise RuntimeError(f"mariadb-install-db failed: {installed.stderr.decode()[-2000:]}")

    def url(self, database: str) -> str:
        return f"mysql+pymysql://root@127.0.0.1:{self.port}/{database}"

    def start(self, timeout: float = 60) -> None:
        log = open(self.root / "mariadbd.log", "ab")  # noqa: SIM115 - owned by the process
        self.process = subprocess.Popen(
            [
                MARIADBD,
                "--no-defaults",
                f"--datadir={self.datadir}",
                f"--port={self.port}",
                "--bind-address=127.0.0.1",
                f"--socket={self.root / 'mariadbd.sock'}",
                f"--pid-file={self.root / 'mariadbd.pid'}",
                "--user=root",
                "--skip-grant-tables",
                "--skip-log-bin",
                "--innodb-buffer-pool-size=64M",
                "--max-connections=500",
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not self.answers():
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mariadbd did not start; see {self.root / 'mariadbd.log'}")
            time.sleep(0.1)

    def answers(self) -> bool:
        try:
            pymysql.connect(
                host="127.0.0.1", port=self.port, user="root", connect_timeout=1
            ).close()
        except pymysql.MySQLError:
            return False
        return True

    def execute(self, sql: str) -> None:
        connection = pymysql.connect(host="127.0.0.1", port=self.port, user="root")
        try:
            with connection.cursor() as cursor:
                cursor.execute(sql)
            connection.commit()
        finally:
            connection.close()

    def freeze(self) -> None:
        """SIGSTOP: the server hangs with its connections open, as a stuck host does."""
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGSTOP)

    def thaw(self) -> None:
        assert self.process is not None
        os.kill(self.process.pid, signal.SIGCONT)

    def stop(self, how: signal.Signals = signal.SIGKILL) -> None:
        """Kill (crash) or terminate (clean shutdown) the server and wait until it is gone."""
        if self.process is None:
            return
        os.kill(self.process.pid, how)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.process.pid, signal.SIGCONT)  # a frozen server must run to stop
        try:
            self.process.wait(60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process = None
