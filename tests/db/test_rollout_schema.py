"""The schema rule that keeps blue and green both serving during a rollout, and replicas
that start together (docs/deployment-rehearsal.md, "Schema changes during a rollout").

Expand, then contract: a migration that ships with a release may only add (tables,
indexes, columns that are nullable or have a server default), because the previous
release keeps writing to the same database until it is drained. Removing or tightening
anything is a contract step: a migration that says `contract = True`, shipped only once
no running release needs what it removes.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory
from sqlalchemy import create_engine, func, inspect, select, text

from cli.context import prepare_database
from db.migrate import MIGRATIONS, is_current
from db.models import CatalogVersion
from harness.scratch import stop_process, wait_until_ready
from server.settings import Settings
from tests.helpers import ROOT, free_port, fresh_database_url, submission

REHEARSAL_MIGRATIONS = ROOT / "deploy" / "rehearse" / "migrations"

Schema = dict[str, dict[str, Any]]


def snapshot(url: str) -> Schema:
    """Tables -> columns (type, nullable, default), indexes and unique constraints."""
    engine = create_engine(url)
    try:
        found = inspect(engine)
        schema: Schema = {}
        for table in found.get_table_names():
            if table == "alembic_version":
                continue
            schema[table] = {
                "columns": {
                    c["name"]: (str(c["type"]), c["nullable"], c.get("default"))
                    for c in found.get_columns(table)
                },
                "indexes": {
                    i["name"]: (tuple(i["column_names"]), bool(i["unique"]))
                    for i in found.get_indexes(table)
                },
                "uniques": {
                    u["name"]: tuple(u["column_names"]) for u in found.get_unique_constraints(table)
                },
            }
        return schema
    finally:
        engine.dispose()


def not_additive(before: Schema, after: Schema) -> list[str]:
    """What an upgrade from `before` to `after` does that the previous release may trip on."""
    problems = [f"table {t} removed" for t in before.keys() - after.keys()]
    for table in before.keys() & after.keys():
        old, new = before[table], after[table]
        for name, spec in old["columns"].items():
            if name not in new["columns"]:
                problems.append(f"column {table}.{name} removed")
            elif new["columns"][name] != spec:
                problems.append(f"column {table}.{name} changed: {spec} -> {new['columns'][name]}")
        for name in new["columns"].keys() - old["columns"].keys():
            _, nullable, default = new["columns"][name]
            if not nullable and default is None:
                problems.append(f"column {table}.{name} added NOT NULL without a default")
        for kind in ("indexes", "uniques"):
            for name in old[kind].keys() - new[kind].keys():
                problems.append(f"{kind[:-1]} {table}.{name} removed")
        for name, (_, unique) in new["indexes"].items():
            if unique and name not in old["indexes"]:
                problems.append(f"unique index {table}.{name} added to an existing table")
        for name in new["uniques"].keys() - old["uniques"].keys():
            problems.append(f"unique constraint {table}.{name} added to an existing table")
    return problems


def scripts(extra: Path | None, tmp_path: Path) -> Config:
    """An Alembic config for db/migrations, plus one extra version file if given."""
    location = MIGRATIONS
    if extra is not None:
        location = tmp_path / "migrations"
        shutil.copytree(MIGRATIONS, location, ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copy(extra, location / "versions" / extra.name)
    config = Config()
    config.set_main_option("script_location", str(location))
    return config


def walk(config: Config, url: str) -> dict[str, list[str]]:
    """Upgrade one revision at a time from nothing; each revision's non-additive changes,
    unless its module declares `contract = True`."""
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    directory = ScriptDirectory.from_config(config)
    found: dict[str, list[str]] = {}
    for revision in reversed(list(directory.walk_revisions())):
        before = snapshot(url)
        command.upgrade(config, revision.revision)
        if getattr(revision.module, "contract", False):
            continue
        found[revision.revision] = not_additive(before, snapshot(url))
    return found


def test_every_migration_is_additive_unless_marked_contract(
    database_url: str, tmp_path: Path
) -> None:
    found = walk(scripts(None, tmp_path), database_url)
    assert len(found) == len(list(ScriptDirectory(str(MIGRATIONS)).walk_revisions()))
    assert {revision: problems for revision, problems in found.items() if problems} == {}


def test_the_rehearsal_expand_step_passes_and_a_contract_step_is_caught(
    database_url: str, tmp_path: Path
) -> None:
    """The check can fail: the green revision's 0005 passes; the same column added NOT NULL
    without a default, or a dropped column, is reported unless it is marked contract."""
    expand = REHEARSAL_MIGRATIONS / "0005_green.py"
    assert walk(scripts(expand, tmp_path / "expand"), database_url)["0005_rehearsal_expand"] == []

    source = expand.read_text()
    assert "nullable=True" in source
    tighten = tmp_path / "0005_tighten.py"
    tighten.write_text(source.replace("nullable=True", "nullable=False"))
    for url in another(database_url, tmp_path / "tighten-db"):
        problems = walk(scripts(tighten, tmp_path / "tighten"), url)["0005_rehearsal_expand"]
        assert problems == ["column user.rehearsal_note added NOT NULL without a default"]

    drop = tmp_path / "0005_drop.py"
    drop.write_text(
        source.replace(
            'batch_op.add_column(sa.Column("rehearsal_note", sa.String(length=100), '
            "nullable=True))",
            'batch_op.drop_column("name")',
            1,
        )
    )
    for url in another(database_url, tmp_path / "drop-db"):
        assert walk(scripts(drop, tmp_path / "drop"), url)["0005_rehearsal_expand"] == [
            "column user.name removed"
        ]
    marked = tmp_path / "0005_marked.py"
    marked.write_text(drop.read_text() + "\ncontract = True\n")
    for url in another(database_url, tmp_path / "marked-db"):
        assert "0005_rehearsal_expand" not in walk(scripts(marked, tmp_path / "marked"), url)


def another(like: str, tmp_path: Path) -> Iterator[str]:
    """A fresh database of the same backend as `like`."""
    tmp_path.mkdir()
    yield from fresh_database_url("sqlite" if like.startswith("sqlite") else "mysql", tmp_path)


@pytest.fixture
def mysql_url(tmp_path: Path) -> Iterator[str]:
    yield from fresh_database_url("mysql", tmp_path)


@pytest.mark.mysql
def test_replicas_starting_together_migrate_and_seed_once(mysql_url: str, tmp_path: Path) -> None:
    """A fleet's replicas all run `hollang serve` (migrate, then seed) at the same moment:
    every one of them starts, and the catalogue is seeded once."""
    replicas = 4
    together = threading.Barrier(replicas)
    errors: list[BaseException] = []

    def start(index: int) -> None:
        settings = Settings(database_url=mysql_url, data_dir=tmp_path / f"replica{index}")
        together.wait(timeout=30)
        try:
            prepare_database(settings)
        except BaseException as exc:  # reported below, per replica
            errors.append(exc)

    threads = [threading.Thread(target=start, args=(i,)) for i in range(replicas)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert errors == []
    engine = create_engine(mysql_url)
    try:
        assert is_current(engine)
        with engine.connect() as connection:
            assert connection.scalar(select(func.count()).select_from(CatalogVersion)) == 1
            assert connection.scalar(text("SELECT COUNT(*) FROM alembic_version")) == 1
    finally:
        engine.dispose()


def test_the_previous_release_restarts_and_serves_on_the_expanded_schema(
    database_url: str, tmp_path: Path
) -> None:
    """Mid-rollout green has migrated to 0005; a blue replica that restarts then (a crash,
    a reboot, a rollback) runs this release's `hollang serve`, which does not know 0005:
    it must start, leave the schema alone and store submissions."""
    config = scripts(REHEARSAL_MIGRATIONS / "0005_green.py", tmp_path)
    config.set_main_option("sqlalchemy.url", database_url.replace("%", "%%"))
    command.upgrade(config, "head")

    env = {**os.environ, "HOLLANG_DATABASE_URL": database_url, "HOLLANG_DATA_DIR": str(tmp_path)}
    port = free_port()
    log = tmp_path / "serve.log"
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [str(Path(sys.executable).with_name("hollang")), "serve", "--port", str(port)],
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    try:
        wait_until_ready(process, f"http://127.0.0.1:{port}/health/ready", log=log, timeout=90)
        created = httpx.post(
            f"http://127.0.0.1:{port}/test-responses", json=submission(), timeout=10
        )
        assert created.status_code == 200, created.text
    finally:
        stop_process(process, timeout=60)
    assert process.returncode == 0, log.read_text()[-2000:]
    assert "a revision of a newer release: not migrating" in log.read_text()
    engine = create_engine(database_url)
    try:
        with engine.connect() as connection:
            assert connection.scalar(text("SELECT version_num FROM alembic_version")) == (
                "0005_rehearsal_expand"
            )
            assert connection.scalar(text("SELECT COUNT(*) FROM user")) == 1
            assert connection.scalar(text("SELECT COUNT(rehearsal_note) FROM user")) == 0
    finally:
        engine.dispose()
