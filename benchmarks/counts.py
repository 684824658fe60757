"""GET /test-responses/count and GET /hobbies with a million stored submissions.

    python benchmarks/counts.py [--rows 1048576] [--requests 300] [--mysql-url URL]

Before this change the count endpoint ran `SELECT COUNT(*) FROM test_response`, which on
InnoDB scans a whole index: it grows with the table. Now it reads one row of `counter`,
which the writers bump in their own transactions. This script measures both at 0 rows and
at `--rows` submissions on a fresh MariaDB database (a scratch database next to
HOLLANG_BENCH_MYSQL_URL's, dropped after):

- through a real `hollang serve` (one worker): GET /test-responses/count (the counter)
  and GET /hobbies (the landing page's ranking), sequential requests, p50/p99;
- in-process on the same database, each query alone: the old COUNT(*) and the counter.

The rows are loaded by the database itself (`INSERT ... SELECT`, doubling the users, then
one test response and one recommendation per user, in chunks), which is far faster than
sending them: a million users, test responses and recommendations take about a minute
here. The answers and hobby links of each submission are not loaded (`--full` loads them:
twelve and three rows per submission, several minutes more): neither endpoint reads them.
The counter is bumped by the same transactions, so it stays exact.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import Connection, func, select, text  # noqa: E402

from cli.context import prepare_database  # noqa: E402
from db.models import TEST_RESPONSES, Counter, HobbyType, Test, TestResponse  # noqa: E402
from db.session import Database  # noqa: E402
from harness.scratch import (  # noqa: E402
    free_port,
    scratch_mysql_database,
    stop_process,
    wait_until_ready,
)
from server.settings import Settings  # noqa: E402

CHUNK = 131_072


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered), ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


def timed(call: Callable[[], object], count: int) -> tuple[float, float]:
    """p50 and p99 of `count` sequential calls, in milliseconds (after a short warm-up)."""
    for _ in range(max(5, count // 20)):
        call()
    samples = []
    for _ in range(count):
        started = time.perf_counter()
        call()
        samples.append((time.perf_counter() - started) * 1000)
    return percentiles(samples)


def bulk_load(db: Database, rows: int, full: bool) -> float:
    """Store `rows` submissions server-side; returns the seconds it took."""
    started = time.perf_counter()
    with db.engine.begin() as connection:
        test_id = connection.scalar(select(func.max(Test.id)))
        type_id = connection.scalar(select(func.min(HobbyType.id)))
        first_user = int(connection.scalar(text("SELECT COALESCE(MAX(id), 0) FROM user")) or 0)
        connection.execute(text("INSERT INTO user (name) VALUES ('대량')"))
    have = 1
    while have < rows:  # doubling: each round copies up to as many users as there are
        with db.engine.begin() as connection:
            step = min(have, rows - have)
            connection.execute(
                text("INSERT INTO user (name) SELECT name FROM user WHERE id > :first LIMIT :n"),
                {"first": first_user, "n": step},
            )
        have += step
    with db.engine.begin() as connection:
        last_user = int(connection.scalar(text("SELECT MAX(id) FROM user")) or 0)
    for low in range(first_user + 1, last_user + 1, CHUNK):
        with db.engine.begin() as connection:
            bounds = {"low": low, "high": low + CHUNK - 1, "test": test_id, "type": type_id}
            added = connection.execute(
                text(
                    "INSERT INTO test_response (user_id, test_id) SELECT id, :test FROM user "
                    "WHERE id BETWEEN :low AND :high"
                ),
                bounds,
            ).rowcount
            connection.execute(
                text(
                    "INSERT INTO recommendation (test_response_id, user_id, hobby_type_id, "
                    "score_e, score_n, score_f, score_j, model_version) "
                    "SELECT id, user_id, :type, 1, 2, 3, 0, 'bulk' FROM test_response "
                    "WHERE user_id BETWEEN :low AND :high"
                ),
                bounds,
            )
            if full:
                load_children(connection, bounds)
            connection.execute(
                text("UPDATE counter SET value = value + :n WHERE name = :name"),
                {"n": added, "name": TEST_RESPONSES},
            )
    return time.perf_counter() - started


def load_children(connection: Connection, bounds: dict[str, int]) -> None:
    """Twelve answers and three ranked hobbies per submission, and the hobbies' counts."""
    connection.execute(
        text(
            "INSERT INTO test_response_detail (test_response_id, answer_id) "
            "SELECT r.id, a.id FROM test_response r JOIN question q ON q.test_id = r.test_id "
            "JOIN answer a ON a.question_id = q.id AND a.number = 1 "
            "WHERE r.user_id BETWEEN :low AND :high"
        ),
        bounds,
    )
    for ranking in (1, 2, 3):
        connection.execute(
            text(
                "INSERT INTO recommendation_hobby (recommendation_id, hobby_id, ranking) "
                "SELECT id, :hobby, :ranking FROM recommendation "
                "WHERE user_id BETWEEN :low AND :high"
            ),
            {**bounds, "hobby": ranking, "ranking": ranking},
        )
        connection.execute(
            text(
                "UPDATE hobby SET recommend_count = recommend_count + "
                "(SELECT COUNT(*) FROM recommendation WHERE user_id BETWEEN :low AND :high) "
                "WHERE id = :hobby"
            ),
            {**bounds, "hobby": ranking},
        )


def measure(url: str, db: Database, requests: int) -> dict[str, tuple[float, float]]:
    with httpx.Client(base_url=url, timeout=30) as client:

        def count() -> None:
            assert client.get("/test-responses/count").status_code == 200

        def hobbies() -> None:
            response = client.get("/hobbies", params={"sort": "recommendCount", "size": 20})
            assert response.status_code == 200

        results = {
            "GET /test-responses/count (counter)": timed(count, requests),
            "GET /hobbies?sort=recommendCount": timed(hobbies, requests),
        }
    with db.engine.connect() as connection:
        results["SELECT COUNT(*) FROM test_response (before)"] = timed(
            lambda: connection.scalar(select(func.count()).select_from(TestResponse)),
            max(20, requests // 10),
        )
        results["SELECT value FROM counter (after)"] = timed(
            lambda: connection.scalar(select(Counter.value).where(Counter.name == TEST_RESPONSES)),
            requests,
        )
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=1_048_576)
    parser.add_argument("--requests", type=int, default=300)
    parser.add_argument("--full", action="store_true", help="also load answers and hobby links")
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("HOLLANG_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
    )
    args = parser.parse_args()
    with (
        scratch_mysql_database(args.mysql_url, "counts_") as database_url,
        tempfile.TemporaryDirectory(prefix="hollang-counts-") as tmp,
    ):
        prepare_database(Settings(database_url=database_url, data_dir=Path(tmp)))
        db = Database(database_url)
        port = free_port()
        log = Path(tmp) / "serve.log"
        env = {**os.environ, "HOLLANG_DATABASE_URL": database_url, "HOLLANG_DATA_DIR": tmp}
        env["HOLLANG_LOG_LEVEL"] = "WARNING"
        with open(log, "wb") as out:
            process = subprocess.Popen(
                [str(Path(sys.executable).with_name("hollang")), "serve", "--port", str(port)],
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(process, f"{url}/health/ready", log=log)
            empty = measure(url, db, args.requests)
            seconds = bulk_load(db, args.rows, args.full)
            with db.engine.connect() as connection:
                stored = connection.scalar(select(func.count()).select_from(TestResponse))
                counted = connection.scalar(
                    select(Counter.value).where(Counter.name == TEST_RESPONSES)
                )
            loaded = measure(url, db, args.requests)
        finally:
            stop_process(process)
            db.dispose()
    print(f"loaded {stored:,} test responses in {seconds:.0f} s; counter says {counted:,}")
    print(f"| latency, ms (p50 / p99) | 0 rows | {stored:,} rows |")
    print("|---|---:|---:|")
    for name, (p50, p99) in empty.items():
        after50, after99 = loaded[name]
        print(f"| {name} | {p50:.2f} / {p99:.2f} | {after50:.2f} / {after99:.2f} |")
    return 0 if stored == counted else 1


if __name__ == "__main__":
    sys.exit(main())
