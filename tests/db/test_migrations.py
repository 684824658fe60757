"""`hollang db upgrade` builds the schema on both backends; a stale schema refuses to serve."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from sqlalchemy import inspect, text

from db.migrate import is_current
from db.models import Base
from db.session import Database
from tests.helpers import free_port, run_cli


def test_db_upgrade_creates_every_table_and_is_repeatable(
    database_url: str, tmp_path: Path
) -> None:
    env = {"HOLLANG_DATABASE_URL": database_url, "HOLLANG_DATA_DIR": str(tmp_path)}
    database = Database(database_url)
    try:
        assert not is_current(database.engine)
        for _ in range(2):  # the second run is a no-op
            result = run_cli("db", "upgrade", env=env)
            assert result.returncode == 0, result.stderr
        assert is_current(database.engine)
        tables = set(inspect(database.engine).get_table_names())
        assert set(Base.metadata.tables) <= tables
        with database.engine.connect() as connection:
            assert (
                connection.execute(text("SELECT version_num FROM alembic_version")).scalar()
                == "0004_recommendation_token"
            )
            if connection.dialect.name == "mysql":
                engines = connection.execute(
                    text(
                        "SELECT DISTINCT engine, table_collation FROM information_schema.tables "
                        "WHERE table_schema = DATABASE() AND table_name != 'alembic_version'"
                    )
                ).all()
                assert engines == [("InnoDB", "utf8mb4_unicode_ci")]
    finally:
        database.dispose()


def test_serve_without_migrating_refuses_a_stale_schema(database_url: str, tmp_path: Path) -> None:
    hollang = Path(sys.executable).with_name("hollang")
    env = {**os.environ, "HOLLANG_DATABASE_URL": database_url, "HOLLANG_DATA_DIR": str(tmp_path)}
    result = subprocess.run(
        [str(hollang), "serve", "--no-migrate", "--port", str(free_port())],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode != 0
    assert "hollang db upgrade" in result.stderr
