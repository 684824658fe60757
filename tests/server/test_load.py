"""A short run of the load script (`harness/load.py`): `hollang serve --workers 2` under
closed-loop load answers no 5xx, exits 0 on SIGTERM, and the database matches exactly what
the clients were told. The 60 s run on MariaDB is recorded in the README."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

from sqlalchemy import create_engine, text

from harness.load import Tally, audit
from tests.helpers import ROOT


def test_short_load_run_has_exact_accounting(database_url: str, tmp_path: Path) -> None:
    report_path = tmp_path / "load.json"
    result = subprocess.run(
        [
            sys.executable,
            str(ROOT / "harness" / "load.py"),
            "--duration",
            "3",
            "--clients",
            "16",
            "--database-url",
            database_url,
            "--json",
            str(report_path),
        ],
        capture_output=True,
        text=True,
        timeout=150,
        check=False,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(report_path.read_text())
    assert report["acknowledged_posts"] > 30
    assert report["server_exit_status"] == 0
    assert report["transport_errors"] == {}
    assert all(name.endswith(" 200") for name in report["statuses"]), report["statuses"]
    for name, check in report["checks"].items():
        assert check["got"] == check["want"], name
    assert report["checks"]["surveys == surveyed hobby rows"]["got"] > 0  # surveys were taken

    # The audit is not a formality: one lost increment and one unacknowledged row show up.
    engine = create_engine(database_url)
    with engine.begin() as connection:
        connection.execute(
            text("UPDATE hobby SET recommend_count = recommend_count - 1 WHERE id = 1")
        )
    engine.dispose()
    checks = audit(database_url, Tally())
    assert checks["hobbies whose recommend_count != rows naming them"] == (1, 0)
    got, want = checks["test responses == acknowledged POSTs"]
    assert got == report["acknowledged_posts"] and want == 0
