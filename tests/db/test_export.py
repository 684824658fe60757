"""`hollang export`: what it writes is what `hollang model train` reads, on both stores and
both databases; and 100,000 responses export in bounded memory."""

from __future__ import annotations

import contextlib
import gzip
import json
import os
import pty
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import insert, literal, select, update

from cli.context import prepare_database
from cli.main import main
from db.models import (
    Hobby,
    HobbyType,
    Recommendation,
    RecommendationHobby,
    Survey,
    Test,
    TestResponse,
    User,
)
from db.session import Database
from model.scoring import mbti_from_scores
from tests.helpers import (
    BACKENDS,
    fresh_database_url,
    make_settings,
    owner,
    start_service,
    submission,
)
from tests.s3support import StoreUnderTest, s3_store

ROWS = 100_000
SMALL = 1_000
START = datetime(2024, 1, 1)


def cli(env: dict[str, str], *args: str) -> Any:
    result = CliRunner().invoke(main, list(args), env=env)
    assert result.exit_code == 0, result.output + repr(result.exception)
    return result


def read_export(objects: StoreUnderTest, key: str, into: Path) -> list[dict[str, Any]]:
    with into.open("wb") as out:
        for chunk in objects.store.open(key).chunks:
            out.write(chunk)
    with gzip.open(into, "rt", encoding="utf-8") as lines:
        return [json.loads(line) for line in lines]


def test_export_feeds_training(
    store_and_database: tuple[StoreUnderTest, str], tmp_path: Path
) -> None:
    objects, database_url = store_and_database
    settings = objects.settings(database_url)
    for service in start_service(settings):
        with service.client() as client:
            ids, tokens = [], []
            for number in range(6):
                scores = (number % 4, 3 - number % 4, number % 2, 2)
                response = client.post("/test-responses", json=submission(scores=scores))
                assert response.status_code == 200, response.text
                ids.append(response.json()["data"]["recommendation"]["id"])
                tokens.append(owner(response.json()["data"]))
            rated = {}
            for satisfaction, (recommendation_id, token) in enumerate(
                zip(ids[:4], tokens, strict=False), start=2
            ):
                full = client.get(f"/recommendations/{recommendation_id}").json()["data"]
                first = full["recommendation"]["hobbies"][0]
                survey = {
                    "survey": {"hobbies": [{"id": first["id"], "satisfaction": satisfaction}]}
                }
                answered = client.post(
                    f"/recommendations/{recommendation_id}/surveys", json=survey, headers=token
                )
                assert answered.status_code == 200, answered.text
                rated[recommendation_id] = satisfaction
            version = service.app_services.engine.model.version

    env = {**objects.env, "HOLLANG_DATABASE_URL": database_url}
    key = "exports/e2e.jsonl.gz"
    exported = cli(env, "export", "--since", "2000-01-01", "--key", key)
    assert "exporting" not in exported.stderr  # no progress bar when no one watches
    summary = json.loads(exported.stdout)
    assert (summary["key"], summary["rows"]) == (key, 6)
    records = read_export(objects, key, tmp_path / "export.jsonl.gz")
    assert len(records) == 6
    for record in records:
        assert set(record) == {
            "testResponseId", "createdAt", "scores", "mbtiType", "modelVersion", "hobbies"
        }  # fmt: skip
        assert record["modelVersion"] == version
        assert record["mbtiType"] == mbti_from_scores(record["scores"])
        assert [h["ranking"] for h in record["hobbies"]] == [1, 2, 3]
    satisfactions = sorted(
        h["satisfaction"] for r in records for h in r["hobbies"] if h["satisfaction"]
    )
    assert satisfactions == sorted(rated.values())
    # A window in the future holds nothing.
    empty = json.loads(
        cli(env, "export", "--since", "2999-01-01", "--key", "exports/none.jsonl.gz").stdout
    )
    assert empty["rows"] == 0

    # The operator's path from the store to training: `hollang objects get`, then train.
    fetched = tmp_path / "fetched" / "jan.jsonl.gz"
    fetched.parent.mkdir()
    cli(env, "objects", "get", key, "-o", str(fetched))
    assert fetched.read_bytes() == (tmp_path / "export.jsonl.gz").read_bytes()
    assert [p.name for p in fetched.parent.iterdir()] == ["jan.jsonl.gz"]  # no partial file
    missing = CliRunner().invoke(main, ["objects", "get", "exports/nope.jsonl.gz"], env=env)
    assert missing.exit_code == 1 and "no object 'exports/nope.jsonl.gz'" in missing.output

    out = tmp_path / "trained.onnx"
    result = cli(env, "model", "train", "--export", str(fetched),
                 "--epochs", "30", "--model-version", "from-export", "-o", str(out))  # fmt: skip
    report = json.loads(result.stdout.split("\n", 1)[1])
    assert (report["rowsRead"], report["ratingsUsed"], report["unknownKeys"]) == (6, 4, {})


def test_progress_bar_on_a_terminal(tmp_path: Path) -> None:
    """stderr on a pseudo-terminal: the bar is drawn there, and stdout stays clean JSON."""
    url = f"sqlite:///{tmp_path / 'hollang.db'}"
    prepare_database(make_settings(tmp_path, url))
    env = {**os.environ, "HOLLANG_DATA_DIR": str(tmp_path), "HOLLANG_DATABASE_URL": url}
    hollang = str(Path(sys.executable).with_name("hollang"))
    controller, terminal = pty.openpty()
    process = subprocess.Popen(
        [hollang, "export", "--since", "2000-01-01", "--key", "exports/tty.jsonl.gz"],
        stdout=subprocess.PIPE, stderr=terminal, env=env,
    )  # fmt: skip
    os.close(terminal)
    assert process.stdout is not None
    stdout = process.stdout.read()
    assert process.wait(timeout=60) == 0
    screen = b""
    with contextlib.suppress(OSError):  # EIO once the terminal's other end is closed
        while data := os.read(controller, 4096):
            screen += data
    os.close(controller)
    assert json.loads(stdout)["rows"] == 0
    assert b"exporting" in screen and b"100%" in screen


# ---- bounded memory ----


def bulk_insert(database_url: str, tmp_path: Path) -> None:
    """ROWS responses with 3 hobbies each, SMALL of them in the first day. Only the responses
    go through Python (one multi-row insert per batch); recommendations and their hobbies
    are derived from them by INSERT ... SELECT in the database. One user and no answer
    details: the export reads neither."""
    prepare_database(make_settings(tmp_path, database_url))
    db = Database(database_url)
    try:
        with db.write() as session:
            test_id = session.scalar(select(Test.id))
            hobby_ids = list(session.scalars(select(Hobby.id).order_by(Hobby.id)))
            assert hobby_ids == list(range(hobby_ids[0], hobby_ids[0] + len(hobby_ids)))
            type_id = session.scalar(select(HobbyType.id))
            user_id = session.execute(insert(User).values(name="bulk")).inserted_primary_key[0]
            session.execute(insert(Survey).values(id=1, satisfaction=4))
        for start in range(1, ROWS + 1, 20_000):
            with db.write() as session:
                session.execute(
                    insert(TestResponse),
                    [
                        {"id": i, "user_id": user_id, "test_id": test_id,
                         "created_at": START + timedelta(seconds=i + (0 if i <= SMALL else 86_400))}
                        for i in range(start, min(start + 20_000, ROWS + 1))
                    ],
                )  # fmt: skip
        response = TestResponse.id
        with db.write() as session:
            scores = [(response + axis) % 4 for axis in range(4)]
            columns = ["id", "test_response_id", "user_id", "hobby_type_id", "score_e",
                       "score_n", "score_f", "score_j", "model_version"]  # fmt: skip
            values = [response, response, literal(user_id), literal(type_id), *scores]
            session.execute(
                insert(Recommendation).from_select(
                    columns, select(*values, literal("bulk-1")).select_from(TestResponse)
                )
            )
            for rank in range(3):
                hobby = literal(hobby_ids[0]) + (Recommendation.id + rank) % len(hobby_ids)
                session.execute(
                    insert(RecommendationHobby).from_select(
                        ["recommendation_id", "hobby_id", "ranking"],
                        select(Recommendation.id, hobby, literal(rank + 1)),
                    )
                )
            session.execute(
                update(RecommendationHobby)
                .where(RecommendationHobby.recommendation_id == 1, RecommendationHobby.ranking == 1)
                .values(survey_id=1)
            )
    finally:
        db.dispose()


@pytest.fixture(scope="module", params=BACKENDS)
def bulk_database(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[str]:
    tmp = tmp_path_factory.mktemp("bulk")
    for url in fresh_database_url(request.param, tmp):
        bulk_insert(url, tmp)
        yield url


PEAK_RSS = textwrap.dedent(
    """
    import resource, subprocess, sys
    done = subprocess.run(sys.argv[1:], capture_output=True, text=True)
    sys.stderr.write(done.stderr)
    print(done.stdout.strip())
    print(done.returncode, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)
    """
)


def export_peak_kib(env: dict[str, str], *args: str) -> tuple[dict[str, Any], int]:
    """Run the real console script as the only child of a small parent; its peak RSS."""
    hollang = str(Path(sys.executable).with_name("hollang"))
    done = subprocess.run(
        [sys.executable, "-c", PEAK_RSS, hollang, "export", *args],
        capture_output=True, text=True, env=env, timeout=300, check=False,
    )  # fmt: skip
    *output, status = done.stdout.strip().splitlines()
    code, peak = status.split()
    assert code == "0", done.stderr
    return json.loads(output[-1]), int(peak)


def test_export_of_100k_rows_stays_in_bounded_memory(
    bulk_database: str, request: pytest.FixtureRequest, tmp_path: Path
) -> None:
    """SQLite into the local folder; MariaDB into S3 (as in production)."""
    if bulk_database.startswith("sqlite"):
        objects = StoreUnderTest("local", tmp_path)
    else:
        objects = s3_store(tmp_path, request.getfixturevalue("moto_endpoint"))
    env = {**os.environ, **objects.env, "HOLLANG_DATABASE_URL": bulk_database}
    small, small_peak = export_peak_kib(
        env, "--since", "2024-01-01", "--until", "2024-01-02", "--key", "exports/small.jsonl.gz"
    )
    full, full_peak = export_peak_kib(
        env, "--since", "2024-01-01", "--key", "exports/full.jsonl.gz"
    )
    assert (small["rows"], full["rows"]) == (SMALL, ROWS)
    print(f"peak RSS: {SMALL} rows {small_peak} KiB, {ROWS} rows {full_peak} KiB")
    # 100x the rows; holding them (dicts or ORM rows) would cost well over 100 MiB more.
    assert full_peak - small_peak < 32 * 1024
    stream = objects.store.open("exports/full.jsonl.gz")
    assert stream.size == full["bytes"]
    count = 0
    with gzip.open(_spool(stream.chunks, tmp_path / "full.jsonl.gz"), "rt") as lines:
        for count, line in enumerate(lines, start=1):  # noqa: B007
            pass
        assert json.loads(line)["testResponseId"] == ROWS
    assert count == ROWS


def _spool(chunks: Iterator[bytes], path: Path) -> Path:
    with path.open("wb") as out:
        for chunk in chunks:
            out.write(chunk)
    return path
