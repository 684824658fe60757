"""`hollang catalog load`: migrate, upsert idempotently, keep identities, refuse bad files.

Every test runs the real console script against a fresh SQLite file and a fresh MariaDB
database, then reads the rows back with SQLAlchemy. Identity is what matters: a reload of
the same document writes nothing, and a hobby keeps its id across catalogue switches, so
stored recommendations keep pointing at the right rows.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from subprocess import CompletedProcess
from typing import Any

import pytest
from click.testing import CliRunner
from sqlalchemy import func, inspect, select

from cli.context import prepare_database
from cli.main import main
from db.catalog import DEFAULT_CATALOG, Catalog, read_catalog
from db.migrate import is_current
from db.models import (
    Answer,
    CatalogVersion,
    FitHobbyType,
    Hobby,
    HobbyType,
    Question,
    Recommendation,
)
from db.models import Test as TestRow
from db.session import Database
from tests.helpers import (
    SHARED,
    RunningService,
    make_settings,
    run_cli,
    start_service,
    submission,
)

ORIGINAL = SHARED / "catalog.json"
DEFAULT_DOC = json.loads(DEFAULT_CATALOG.read_text(encoding="utf-8"))
ORIGINAL_DOC = json.loads(ORIGINAL.read_text(encoding="utf-8"))
DEFAULT_NAMES = {h["originalName"] for h in DEFAULT_DOC["hobbies"]}
ORIGINAL_NAMES = {h["originalName"] for h in ORIGINAL_DOC["hobbies"]}
CATALOG_TABLES = (TestRow, Question, Answer, Hobby, HobbyType, FitHobbyType, CatalogVersion)


# ---- helpers ----


def load(url: str, data_dir: Path, file: Path) -> CompletedProcess[str]:
    """`hollang catalog load FILE`, run in-process (a console script costs a second and a
    half of CPU per call; the first test below runs the real one)."""
    env = {"HOLLANG_DATABASE_URL": url, "HOLLANG_DATA_DIR": str(data_dir)}
    result = CliRunner().invoke(main, ["catalog", "load", str(file)], env=env)
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        raise result.exception
    return CompletedProcess(["hollang"], result.exit_code, result.stdout, result.stderr)


def loaded(url: str, data_dir: Path, file: Path) -> dict[str, Any]:
    """Load `file`, expect success, return the one JSON line the command prints."""
    result = load(url, data_dir, file)
    assert result.returncode == 0, result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stdout.strip().splitlines()
    assert len(lines) == 1, result.stdout
    report: dict[str, Any] = json.loads(lines[0])
    return report


def refused(result: CompletedProcess[str]) -> str:
    """The one-line reason of a refused catalogue (stderr also holds migration logs)."""
    assert result.returncode == 1, (result.stdout, result.stderr)
    assert "Traceback" not in result.stderr
    assert result.stdout.strip() == ""
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    reasons = [line for line in lines if line.startswith("invalid catalogue: ")]
    assert len(reasons) == 1, result.stderr
    assert lines[-1] == reasons[0]
    return reasons[0]


@contextmanager
def database(url: str) -> Iterator[Database]:
    db = Database(url)
    try:
        yield db
    finally:
        db.dispose()


def snapshot(url: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of every catalogue table, every column (ids and timestamps included)."""
    with database(url) as db, db.read() as session:
        return {
            model.__tablename__: [
                dict(row._mapping)
                for row in session.execute(
                    select(model.__table__).order_by(model.__table__.c.id)  # type: ignore[attr-defined]
                )
            ]
            for model in CATALOG_TABLES
        }


def active(url: str) -> Catalog:
    with database(url) as db, db.read() as session:
        return read_catalog(session)


def hobby_rows(url: str) -> dict[str, tuple[int, bool]]:
    """originalName -> (id, active) for every hobby row."""
    with database(url) as db, db.read() as session:
        return {h.original_name: (h.id, h.active) for h in session.scalars(select(Hobby))}


def catalog_versions(url: str) -> list[CatalogVersion]:
    with database(url) as db, db.read() as session:
        return list(session.scalars(select(CatalogVersion).order_by(CatalogVersion.id)))


def write_doc(path: Path, doc: Any) -> Path:
    path.write_text(json.dumps(doc, ensure_ascii=False), encoding="utf-8")
    return path


@contextmanager
def running(settings: Any) -> Iterator[RunningService]:
    yield from start_service(settings)


# ---- loading ----


def test_load_migrates_an_empty_database_first(database_url: str, tmp_path: Path) -> None:
    """Through the real console script, in a process of its own."""
    with database(database_url) as db:
        assert inspect(db.engine).get_table_names() == []
    result = run_cli(
        "catalog",
        "load",
        str(DEFAULT_CATALOG),
        env={"HOLLANG_DATABASE_URL": database_url, "HOLLANG_DATA_DIR": str(tmp_path)},
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["state"] == "loaded"
    with database(database_url) as db:
        tables = set(inspect(db.engine).get_table_names())
        assert tables >= {model.__tablename__ for model in CATALOG_TABLES} | {"alembic_version"}
        assert is_current(db.engine)
        with db.read() as session:
            counts = {
                model.__tablename__: session.scalar(select(func.count()).select_from(model))
                for model in CATALOG_TABLES
            }
    assert counts == {
        "test": 1,
        "question": 12,
        "answer": 24,
        "hobby": 19,
        "hobby_type": 16,
        "fit_hobby_type": 48,
        "catalog_version": 1,
    }
    catalog = active(database_url)
    assert set(catalog.hobby_by_key) == DEFAULT_NAMES
    assert catalog.version == report["catalog"]
    assert catalog_versions(database_url)[-1].content_sha256.startswith(report["catalog"])


def test_loading_the_same_file_twice_changes_nothing(database_url: str, tmp_path: Path) -> None:
    first = loaded(database_url, tmp_path, DEFAULT_CATALOG)
    assert first["state"] == "loaded"
    before = snapshot(database_url)
    time.sleep(1.1)  # so a rewritten row would show a newer updated_at (1 s resolution)
    second = loaded(database_url, tmp_path, DEFAULT_CATALOG)
    assert second["state"] == "unchanged"
    assert second["changes"] == {}
    assert second["catalog"] == first["catalog"]
    after = snapshot(database_url)
    assert {k: len(v) for k, v in after.items()} == {k: len(v) for k, v in before.items()}
    assert len(after["catalog_version"]) == 1
    for table, rows in before.items():
        assert after[table] == rows, table


def test_the_original_catalogue_replaces_the_default_and_identities_survive_reloads(
    database_url: str, tmp_path: Path
) -> None:
    default_report = loaded(database_url, tmp_path, DEFAULT_CATALOG)
    default_ids = hobby_rows(database_url)
    assert set(default_ids) == DEFAULT_NAMES
    with database(database_url) as db, db.read() as session:
        type_ids = {t.mbti_type: t.id for t in session.scalars(select(HobbyType))}

    original_report = loaded(database_url, tmp_path, ORIGINAL)
    assert original_report["state"] == "loaded"
    assert original_report["catalog"] != default_report["catalog"]
    versions = catalog_versions(database_url)
    assert len(versions) == 2
    assert versions[-1].content_sha256.startswith(original_report["catalog"])
    assert versions[-1].source.endswith("catalog.json")
    catalog = active(database_url)
    assert catalog.version == original_report["catalog"]
    assert set(catalog.hobby_by_key) == ORIGINAL_NAMES
    assert {
        key: (h.short_name, h.summary, h.description, h.image_key, h.content_url)
        for key, h in catalog.hobby_by_key.items()
    } == {
        h["originalName"]: (
            h["shortName"],
            h["summary"],
            h["description"],
            h["imageKey"],
            h["contentUrl"],
        )
        for h in ORIGINAL_DOC["hobbies"]
    }
    rows = hobby_rows(database_url)
    for name, (hobby_id, _) in default_ids.items():
        assert rows[name] == (hobby_id, False), name  # retired, same id
    assert all(rows[name][1] for name in ORIGINAL_NAMES)
    # hobby types are matched by MBTI type: same rows, the original's texts
    assert {t.mbti_type: t.id for t in catalog.type_by_mbti.values()} == type_ids
    original_types = {t["mbtiType"]: t for t in ORIGINAL_DOC["hobbyTypes"]}
    for entry in catalog.type_by_mbti.values():
        doc = original_types[entry.mbti_type]
        assert entry.name == doc["name"]
        ranked = sorted(doc["fitHobbyTypes"], key=lambda fit: fit["ranking"])
        assert entry.fit_mbti_types == tuple(fit["mbtiType"] for fit in ranked)
    questions = {q.number: q for q in catalog.active_test.questions}
    for doc in ORIGINAL_DOC["test"]["questions"]:
        assert questions[doc["number"]].content == doc["content"]

    again = loaded(database_url, tmp_path, DEFAULT_CATALOG)
    assert again["state"] == "loaded"
    assert again["catalog"] == default_report["catalog"]
    assert len(catalog_versions(database_url)) == 3
    catalog = active(database_url)
    assert set(catalog.hobby_by_key) == DEFAULT_NAMES
    assert {key: h.id for key, h in catalog.hobby_by_key.items()} == {
        name: hobby_id for name, (hobby_id, _) in default_ids.items()
    }
    rows = hobby_rows(database_url)
    assert all(not rows[name][1] for name in ORIGINAL_NAMES)
    assert {t.mbti_type: t.id for t in catalog.type_by_mbti.values()} == type_ids


def drop_question_12(doc: dict[str, Any]) -> None:
    doc["test"]["questions"] = [q for q in doc["test"]["questions"] if q["number"] != 12]


def drop_an_mbti_type(doc: dict[str, Any]) -> None:
    doc["hobbyTypes"] = [t for t in doc["hobbyTypes"] if t["mbtiType"] != "ENFP"]


def duplicate_original_name(doc: dict[str, Any]) -> None:
    doc["hobbies"][1]["originalName"] = doc["hobbies"][0]["originalName"]


def dot_image_key(doc: dict[str, Any]) -> None:
    doc["hobbies"][0]["imageKey"] = ".hidden"  # an image the store could never hold


def changed(change: Any) -> str:
    doc = json.loads(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    change(doc)
    return json.dumps(doc, ensure_ascii=False)


def change_doc(change: Any) -> dict[str, Any]:
    doc: dict[str, Any] = json.loads(changed(change))
    return doc


INVALID = [
    pytest.param('{"test": {"version": 1, ', id="bad JSON"),
    pytest.param("[]", id="not an object"),
    pytest.param(changed(drop_question_12), id="11 questions"),
    pytest.param(changed(drop_an_mbti_type), id="a missing MBTI type"),
    pytest.param(changed(duplicate_original_name), id="duplicate originalName"),
    pytest.param(changed(dot_image_key), id="imageKey with a leading dot"),
]


@pytest.mark.parametrize("content", INVALID)
def test_invalid_catalogue_is_refused_and_changes_nothing(
    database_url: str, tmp_path: Path, content: str
) -> None:
    loaded(database_url, tmp_path, DEFAULT_CATALOG)
    before = snapshot(database_url)
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    reason = refused(load(database_url, tmp_path, bad))
    assert len(reason) > len("invalid catalogue: ")
    assert snapshot(database_url) == before
    assert set(active(database_url).hobby_by_key) == DEFAULT_NAMES


@pytest.mark.parametrize("content", [INVALID[0], INVALID[3]])
def test_invalid_catalogue_into_an_empty_database_loads_nothing(
    database_url: str, tmp_path: Path, content: str
) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(content, encoding="utf-8")
    refused(load(database_url, tmp_path, bad))
    assert {table: rows for table, rows in snapshot(database_url).items() if rows} == {}


def test_invalid_catalogue_reasons_name_the_problem(database_url: str, tmp_path: Path) -> None:
    reasons = {}
    for name, change in [
        ("questions", drop_question_12),
        ("types", drop_an_mbti_type),
        ("hobbies", duplicate_original_name),
    ]:
        reasons[name] = refused(
            load(database_url, tmp_path, write_doc(tmp_path / f"{name}.json", change_doc(change)))
        )
    assert "question" in reasons["questions"]
    assert "MBTI" in reasons["types"]
    assert "originalName" in reasons["hobbies"]


def test_renaming_a_hobby_by_letter_case_loads_on_every_backend(
    database_url: str, tmp_path: Path
) -> None:
    loaded(database_url, tmp_path, DEFAULT_CATALOG)
    doc = json.loads(DEFAULT_CATALOG.read_text(encoding="utf-8"))
    (hobby,) = [h for h in doc["hobbies"] if h["originalName"].startswith("K-POP")]
    hobby["originalName"] = hobby["originalName"].replace("K-POP", "K-pop")
    report = loaded(database_url, tmp_path, write_doc(tmp_path / "renamed.json", doc))
    assert report["state"] == "loaded"
    keys = set(active(database_url).hobby_by_key)
    assert hobby["originalName"] in keys
    assert len(keys) == 19


# ---- prepare_database (what `hollang serve` runs first) ----


def test_prepare_database_seeds_the_default_only_into_an_empty_database(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_url)
    prepare_database(settings)
    assert set(active(database_url).hobby_by_key) == DEFAULT_NAMES
    assert len(catalog_versions(database_url)) == 1

    loaded(database_url, tmp_path, ORIGINAL)
    before = snapshot(database_url)
    prepare_database(settings)
    assert snapshot(database_url) == before
    catalog = active(database_url)
    assert set(catalog.hobby_by_key) == ORIGINAL_NAMES
    rows = hobby_rows(database_url)
    assert not any(rows[name][1] for name in DEFAULT_NAMES)


def test_prepare_database_leaves_a_database_loaded_by_the_cli_alone(
    database_url: str, tmp_path: Path
) -> None:
    loaded(database_url, tmp_path, ORIGINAL)
    prepare_database(make_settings(tmp_path, database_url))
    assert set(hobby_rows(database_url)) == ORIGINAL_NAMES  # the default was never inserted
    assert len(catalog_versions(database_url)) == 1


# ---- a running service ----


def test_running_service_picks_up_a_newly_loaded_catalogue(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_url)  # catalogue poll every 0.5 s
    with running(settings) as service, service.client() as client:
        created = client.post("/test-responses", json=submission("전환"))
        assert created.status_code == 200, created.text
        recommendation_id = created.json()["data"]["recommendation"]["id"]
        before = client.get(f"/recommendations/{recommendation_id}").json()["data"]
        old_hobbies = before["recommendation"]["hobbies"]
        assert {h["originalName"] for h in old_hobbies} <= DEFAULT_NAMES
        questions = client.get("/tests").json()["data"]["test"]["questions"]
        assert questions[0]["content"] == DEFAULT_DOC["test"]["questions"][0]["content"]

        report = loaded(database_url, tmp_path, ORIGINAL)
        wanted = ORIGINAL_DOC["test"]["questions"][0]["content"]
        deadline = time.monotonic() + 10
        while True:
            questions = client.get("/tests").json()["data"]["test"]["questions"]
            if questions[0]["content"] == wanted or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert questions[0]["content"] == wanted
        assert client.get("/info").json()["data"]["catalog"]["version"] == report["catalog"]

        # the recommendation stored before the switch still shows its own (retired) hobbies
        after = client.get(f"/recommendations/{recommendation_id}")
        assert after.status_code == 200, after.text
        shown = after.json()["data"]["recommendation"]
        assert [(h["id"], h["originalName"], h["ranking"]) for h in shown["hobbies"]] == [
            (h["id"], h["originalName"], h["ranking"]) for h in old_hobbies
        ]
        assert shown["user"] == before["recommendation"]["user"]
        shared = client.get(f"/recommendations/{recommendation_id}/shares")
        assert shared.status_code == 200, shared.text
        assert [h["id"] for h in shared.json()["data"]["recommendation"]["hobbies"]] == [
            h["id"] for h in old_hobbies
        ]
        with service.db.read() as session:
            stored = session.get(Recommendation, recommendation_id)
        assert stored is not None


def test_hobby_ranking_keeps_answering_right_after_a_catalogue_load(
    database_url: str, tmp_path: Path
) -> None:
    settings = make_settings(tmp_path, database_url).model_copy(
        update={"catalog_poll_interval": 3600.0}  # the service has not noticed the load yet
    )
    with running(settings) as service, service.client() as client:
        assert client.get("/hobbies").status_code == 200
        loaded(database_url, tmp_path, ORIGINAL)
        response = client.get("/hobbies", params={"size": 100})
        assert response.status_code == 200, response.text
        assert len(response.json()["data"]["hobbies"]) == 19
