"""Load with exact accounting: many clients against `hollang serve --workers 2`, then an audit.

    python -m harness.load [--duration 60] [--clients 16] [--database-url URL] [--json F]

Starts `hollang serve --workers 2` (a separate process) on a fresh database: by default a
new MariaDB database `<base>_load_<hex>` on `--mysql-url`'s server, dropped afterwards;
`--database-url` uses the given empty database instead (SQLite or MySQL). Then `--clients`
closed-loop clients (each sends its next request as soon as the last one is answered, so
together they run at the highest rate the service sustains) take the test, read their
recommendation, answer surveys and read the ranking for `--duration` seconds. Half the
submissions carry an `Idempotency-Key`. `run_load(..., retry_grace=S)` (what the
database-fault test uses) gives every submission a key and retries one that got a 503 or
lost its connection, with the same key, until it is acknowledged or S seconds after the end.

Afterwards it stops the service (SIGTERM; it must exit 0) and audits the database:
exactly one test response (with 12 answers, one recommendation and 3 ranked hobbies) per
acknowledged POST, one user each, every hobby's recommend_count equal to the number of
stored recommendation rows naming it, one key row per acknowledged keyed POST, and no
survey row without its hobby. It prints a report (and `--json` writes it); the exit
status is 1 if any 5xx was answered or any check failed.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import httpx  # noqa: E402
from sqlalchemy import create_engine, func, select  # noqa: E402
from sqlalchemy.engine import make_url  # noqa: E402

from db.models import (  # noqa: E402
    TEST_RESPONSES,
    Hobby,
    IdempotencyKey,
    Recommendation,
    RecommendationHobby,
    Survey,
    TestResponse,
    TestResponseDetail,
    User,
)
from db.models import Counter as TotalCounter  # noqa: E402
from harness.scratch import (  # noqa: E402
    free_port,
    scratch_mysql_database,
    stop_process,
    wait_until_ready,
)

NAMES = ("홀랑", "취미", "load", "민수", "Ann", "지영", "테스트", "bob")
RETRYABLE = frozenset({502, 503, 504})


# ---- the service under test ----


@dataclass
class Service:
    url: str
    process: subprocess.Popen[bytes]
    log_path: Path


@contextmanager
def hollang_serve(
    database_url: str, data_dir: Path, workers: int, extra_env: dict[str, str] | None = None
) -> Iterator[Service]:
    """`hollang serve` in its own process; stopped with SIGTERM if still running."""
    port = free_port()
    log_path = data_dir / "serve.log"
    hollang = Path(sys.executable).with_name("hollang")
    env = {
        **os.environ,
        "HOLLANG_DATABASE_URL": database_url,
        "HOLLANG_DATA_DIR": str(data_dir),
        **(extra_env or {}),
    }
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [str(hollang), "serve", "--port", str(port), "--workers", str(workers)],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    service = Service(f"http://127.0.0.1:{port}", process, log_path)
    try:
        wait_ready(service)
        yield service
    finally:
        stop_process(process, timeout=60)


def wait_ready(service: Service, timeout: float = 90) -> None:
    # A few answers in a row, so both workers are most likely up.
    wait_until_ready(
        service.process,
        f"{service.url}/health/ready",
        log=service.log_path,
        timeout=timeout,
        in_a_row=4,
        interval=0.05,
    )


# ---- the load ----


@dataclass
class Tally:
    """What the clients saw; the audit compares the database with it."""

    statuses: Counter[str] = field(default_factory=Counter)  # "POST /test-responses 200"
    errors: Counter[str] = field(default_factory=Counter)  # transport errors by kind
    latencies: dict[str, list[float]] = field(default_factory=dict)
    acked: dict[int, str | None] = field(default_factory=dict)  # recommendation id -> key
    keys_acked: set[str] = field(default_factory=set)
    tokens: dict[int, str] = field(default_factory=dict)  # recommendation id -> its token
    retries: int = 0
    unfinished: int = 0  # --retry submissions never acknowledged before the grace ended

    def count(self, route: str, status: int, seconds: float) -> None:
        self.statuses[f"{route} {status}"] += 1
        self.latencies.setdefault(route, []).append(seconds)


def random_submission(rng: random.Random) -> dict[str, Any]:
    return {
        "user": {"name": rng.choice(NAMES)},
        "testResponseDetails": [
            {"questionNumber": q, "answerNumber": rng.randint(1, 2)} for q in range(1, 13)
        ],
    }


async def timed(
    client: httpx.AsyncClient, tally: Tally, route: str, method: str, path: str, **kw: Any
) -> httpx.Response | None:
    started = time.perf_counter()
    try:
        response = await client.request(method, path, **kw)
    except httpx.HTTPError as exc:
        tally.errors[f"{route} {type(exc).__name__}"] += 1
        return None
    tally.count(route, response.status_code, time.perf_counter() - started)
    return response


async def submit(
    client: httpx.AsyncClient,
    tally: Tally,
    rng: random.Random,
    keyed: bool,
    retry_until: float | None,
) -> int | None:
    """One logical submission; returns its recommendation id once acknowledged."""
    body = random_submission(rng)
    key = secrets.token_urlsafe(18) if keyed else None
    headers = {"Idempotency-Key": key} if key else {}
    while True:
        response = await timed(
            client, tally, "POST /test-responses", "POST", "/test-responses",
            json=body, headers=headers,
        )  # fmt: skip
        if response is not None and response.status_code == 200:
            created = response.json()["data"]["recommendation"]
            recommendation_id = int(created["id"])
            tally.acked[recommendation_id] = key
            tally.tokens[recommendation_id] = created["token"]
            if key:
                tally.keys_acked.add(key)
            return recommendation_id
        transient = response is None or response.status_code in RETRYABLE
        if retry_until is None or key is None or not transient:
            return None
        if time.monotonic() > retry_until:
            tally.unfinished += 1
            return None
        tally.retries += 1
        await asyncio.sleep(0.2)


async def client_loop(
    client: httpx.AsyncClient,
    tally: Tally,
    seed: int,
    deadline: float,
    retry_grace: float | None,
) -> None:
    rng = random.Random(seed)
    while time.monotonic() < deadline:
        keyed = retry_grace is not None or rng.random() < 0.5
        retry_until = deadline + retry_grace if retry_grace is not None else None
        recommendation_id = await submit(client, tally, rng, keyed, retry_until)
        roll = rng.random()
        if recommendation_id is not None and roll < 0.25:
            path = f"/recommendations/{recommendation_id}"
            response = await timed(client, tally, "GET /recommendations/{id}", "GET", path)
            if response is not None and response.status_code == 200 and roll < 0.12:
                hobbies = response.json()["data"]["recommendation"]["hobbies"]
                ratings = [{"id": h["id"], "satisfaction": rng.randint(1, 5)} for h in hobbies]
                await timed(
                    client, tally, "POST /recommendations/{id}/surveys", "POST",
                    f"{path}/surveys", json={"survey": {"hobbies": ratings}},
                    headers={"X-Recommendation-Token": tally.tokens[recommendation_id]},
                )  # fmt: skip
        elif roll < 0.35:
            await timed(
                client, tally, "GET /hobbies", "GET", "/hobbies",
                params={"sort": "recommendCount", "size": 20},
            )  # fmt: skip


async def run_load(
    url: str, clients: int, duration: float, retry_grace: float | None = None, seed: int = 7
) -> tuple[Tally, float]:
    tally = Tally()
    limits = httpx.Limits(max_connections=clients, max_keepalive_connections=clients)
    # The timeout only catches a hang: the service's own database timeouts (at most about
    # 25 s in all, with a hung database server) are shorter.
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=60) as client:
        started = time.monotonic()
        deadline = started + duration
        await asyncio.gather(
            *(client_loop(client, tally, seed + i, deadline, retry_grace) for i in range(clients))
        )
        return tally, time.monotonic() - started


# ---- the audit ----


def audit(database_url: str, tally: Tally) -> dict[str, Any]:
    """Compare the database with what the clients were told; returns the failed checks."""
    engine = create_engine(database_url)
    checks: dict[str, Any] = {}
    try:
        with engine.connect() as db:

            def scalar(query: Any) -> int:
                return int(db.scalar(query) or 0)

            stored_ids = set(db.scalars(select(Recommendation.id)))
            acked_ids = set(tally.acked)
            responses = scalar(select(func.count()).select_from(TestResponse))
            checks["test responses == acknowledged POSTs"] = (responses, len(acked_ids))
            checks["test-response counter == test responses"] = (
                scalar(select(TotalCounter.value).where(TotalCounter.name == TEST_RESPONSES)),
                responses,
            )
            checks["users == test responses"] = (
                scalar(select(func.count()).select_from(User)),
                responses,
            )
            checks["recommendations acknowledged but missing"] = (len(acked_ids - stored_ids), 0)
            checks["recommendations stored but never acknowledged"] = (
                len(stored_ids - acked_ids),
                0,
            )
            details_per_response = (
                select(TestResponse.id)
                .outerjoin(TestResponseDetail)
                .group_by(TestResponse.id)
                .having(func.count(TestResponseDetail.id) != 12)
            )
            checks["test responses without exactly 12 answers"] = (
                scalar(select(func.count()).select_from(details_per_response.subquery())),
                0,
            )
            checks["test responses without one recommendation"] = (
                scalar(select(func.count()).select_from(Recommendation)),
                responses,
            )
            hobbies_per_recommendation = (
                select(Recommendation.id)
                .outerjoin(RecommendationHobby)
                .group_by(Recommendation.id)
                .having(func.count(RecommendationHobby.id) != 3)
            )
            checks["recommendations without exactly 3 hobbies"] = (
                scalar(select(func.count()).select_from(hobbies_per_recommendation.subquery())),
                0,
            )
            named = dict(
                db.execute(
                    select(RecommendationHobby.hobby_id, func.count()).group_by(
                        RecommendationHobby.hobby_id
                    )
                ).all()
            )
            wrong_counts = [
                (hobby_id, count, named.get(hobby_id, 0))
                for hobby_id, count in db.execute(select(Hobby.id, Hobby.recommend_count))
                if count != named.get(hobby_id, 0)
            ]
            checks["hobbies whose recommend_count != rows naming them"] = (len(wrong_counts), 0)
            checks["idempotency keys == acknowledged keyed POSTs"] = (
                scalar(select(func.count()).select_from(IdempotencyKey)),
                len(tally.keys_acked),
            )
            keys_of_acked = {key for key in tally.acked.values() if key}
            checks["acknowledged keys stored"] = (
                scalar(
                    select(func.count())
                    .select_from(IdempotencyKey)
                    .where(IdempotencyKey.key.in_(keys_of_acked or {""}))
                ),
                len(keys_of_acked),
            )
            checks["surveys == surveyed hobby rows"] = (
                scalar(select(func.count()).select_from(Survey)),
                scalar(
                    select(func.count())
                    .select_from(RecommendationHobby)
                    .where(RecommendationHobby.survey_id.is_not(None))
                ),
            )
    finally:
        engine.dispose()
    return checks


def percentile(values: list[float], q: float) -> float:
    if len(values) < 2:
        return values[0] if values else 0.0
    return statistics.quantiles(values, n=100, method="inclusive")[int(q) - 1]


def report(
    tally: Tally, elapsed: float, checks: dict[str, Any], exit_status: int | None, args: Any
) -> dict[str, Any]:
    total = sum(tally.statuses.values())
    posts = tally.latencies.get("POST /test-responses", [])
    return {
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "backend": make_url(args.resolved_database_url).get_backend_name(),
        "workers": args.workers,
        "clients": args.clients,
        "seconds": round(elapsed, 1),
        "requests": total,
        "requests_per_second": round(total / elapsed, 1),
        "acknowledged_posts": len(tally.acked),
        "acknowledged_posts_per_second": round(len(tally.acked) / elapsed, 1),
        "post_latency_ms": {
            "p50": round(percentile(posts, 50) * 1000, 1),
            "p99": round(percentile(posts, 99) * 1000, 1),
        },
        "statuses": dict(sorted(tally.statuses.items())),
        "transport_errors": dict(tally.errors),
        "retries": tally.retries,
        "unfinished": tally.unfinished,
        "server_exit_status": exit_status,
        "checks": {name: {"got": got, "want": want} for name, (got, want) in checks.items()},
    }


def failures(result: dict[str, Any], allow_5xx: bool) -> list[str]:
    problems = [
        f"{name}: got {check['got']}, want {check['want']}"
        for name, check in result["checks"].items()
        if check["got"] != check["want"]
    ]
    five_xx = {k: v for k, v in result["statuses"].items() if k.rsplit(" ", 1)[1][0] == "5"}
    if five_xx and not allow_5xx:
        problems.append(f"5xx answers: {five_xx}")
    if result["unfinished"]:
        problems.append(f"{result['unfinished']} submissions never acknowledged")
    if result["server_exit_status"] != 0:
        problems.append(f"hollang serve exited with {result['server_exit_status']} on SIGTERM")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=float, default=60.0, help="seconds of load")
    parser.add_argument(
        "--clients", type=int, default=16, help="concurrent clients (16: the peak here)"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get(
            "HOLLANG_LOAD_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306/hollang"
        ),
        help="server (and base name) for the fresh database",
    )
    parser.add_argument("--database-url", help="use this empty database instead")
    parser.add_argument("--json", type=Path, help="also write the report here")
    parser.add_argument("--log", type=Path, help="keep the service's log here")
    args = parser.parse_args(argv)

    with (
        tempfile.TemporaryDirectory(prefix="hollang-load-") as tmp,
        database_for(args) as database_url,
    ):
        args.resolved_database_url = database_url
        with hollang_serve(database_url, Path(tmp), args.workers) as service:
            tally, elapsed = asyncio.run(run_load(service.url, args.clients, args.duration))
            service.process.send_signal(signal.SIGTERM)
            try:
                exit_status: int | None = service.process.wait(60)
            except subprocess.TimeoutExpired:
                exit_status = None
        if args.log:
            args.log.write_bytes(service.log_path.read_bytes())
        result = report(tally, elapsed, audit(database_url, tally), exit_status, args)
    print(json.dumps(result, indent=2, ensure_ascii=False))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, ensure_ascii=False) + "\n")
    problems = failures(result, allow_5xx=False)
    for problem in problems:
        print(f"FAILED: {problem}", file=sys.stderr)
    if not problems:
        print(
            f"OK: {result['acknowledged_posts']} acknowledged POSTs, "
            f"{result['requests_per_second']} requests/s, every check passed",
            file=sys.stderr,
        )
    return 1 if problems else 0


@contextmanager
def database_for(args: Any) -> Iterator[str]:
    """The given database, or a fresh MariaDB one that is dropped afterwards."""
    if args.database_url:
        yield args.database_url
    else:
        with scratch_mysql_database(args.mysql_url, "load_") as url:
            yield url


if __name__ == "__main__":
    sys.exit(main())
