"""Structured logs of a real `hollang serve`: every line is JSON, each request has exactly
one access line with its request id, route template, status and duration, the id is the
client's when sane and is always returned, and an error logged while handling a request
carries that request's id. The text format is for terminals and cannot be forged into; it
is what a terminal gets unless `HOLLANG_LOG_FORMAT` says otherwise. Alembic's per-start
set-up lines are DEBUG.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx

from tests.db.breakage import drop_tables
from tests.helpers import (
    free_port,
    serve_process,
    stop_process,
    submission,
    wait_until_ready,
)

GENERATED = re.compile(r"[0-9a-f]{32}")


def read_json_lines(log: Path) -> list[dict[str, Any]]:
    lines = [line for line in log.read_text().splitlines() if line.strip()]
    assert lines
    records = []
    for line in lines:
        record = json.loads(line)  # every line, uvicorn's and alembic's included
        assert {"time", "level", "logger", "message", "request_id"} <= set(record), record
        records.append(record)
    return records


def test_json_logs_one_access_line_per_request_and_ids_in_error_logs(
    tmp_path: Path, database_url: str
) -> None:
    env = {
        "HOLLANG_DATA_DIR": str(tmp_path),
        "HOLLANG_DATABASE_URL": database_url,
        "HOLLANG_LOG_FORMAT": "json",
    }
    log = tmp_path / "serve.log"
    with serve_process(env, log_path=log) as url, httpx.Client(base_url=url, timeout=10) as http:
        given = http.get("/tests?version=1", headers={"X-Request-ID": "trace-0001"})
        assert given.headers["x-request-id"] == "trace-0001"
        ids = {"given": "trace-0001"}
        for name, header in [("too long", "x" * 200), ("space", "a b"), ("quote", 'a"b')]:
            response = http.get("/tests?version=1", headers={"X-Request-ID": header})
            assert GENERATED.fullmatch(response.headers["x-request-id"]), name
            ids[name] = response.headers["x-request-id"]
        missing = http.get("/recommendations/424242")
        assert missing.status_code == 404
        ids["404"] = missing.headers["x-request-id"]
        assert GENERATED.fullmatch(ids["404"])
        created = http.post("/test-responses", json=submission("로그"))
        assert created.status_code == 200
        ids["created"] = created.headers["x-request-id"]

        drop_tables(database_url, "test_response_detail", "test_response", "counter")
        broken = http.get("/test-responses/count", headers={"X-Request-ID": "broken-db-42"})
        assert broken.status_code in (500, 503)
        assert broken.headers["x-request-id"] == "broken-db-42"

    records = read_json_lines(log)
    access = [r for r in records if r["logger"] == "hollang.access"]
    assert not [r for r in records if r["logger"] == "uvicorn.access"]  # no duplicates
    by_id: dict[str, list[dict[str, Any]]] = {}
    for record in access:
        by_id.setdefault(record["request_id"], []).append(record)
    expected = {
        "given": ("GET", "/tests", "/tests", 200),
        "too long": ("GET", "/tests", "/tests", 200),
        "space": ("GET", "/tests", "/tests", 200),
        "quote": ("GET", "/tests", "/tests", 200),
        "404": ("GET", "/recommendations/{id}", "/recommendations/424242", 404),
        "created": ("POST", "/test-responses", "/test-responses", 200),
    }
    for name, (method, route, path, status) in expected.items():
        [line] = by_id[ids[name]]  # exactly one access line per request
        assert (line["method"], line["route"], line["path"], line["status"]) == (
            method,
            route,
            path,
            status,
        )
        assert isinstance(line["duration_ms"], float) and line["duration_ms"] >= 0
        assert line["level"] == "INFO"

    [failed] = by_id["broken-db-42"]
    assert failed["status"] in (500, 503) and failed["route"] == "/test-responses/count"
    errors = [r for r in records if r["level"] == "ERROR"]
    assert errors, "the database failure was not logged"
    assert {r["request_id"] for r in errors} == {"broken-db-42"}
    # Outside requests (start-up, shutdown) there is no id.
    assert any(r["request_id"] is None and r["logger"].startswith("uvicorn") for r in records)


def test_text_logs_carry_the_id_and_escape_what_a_client_sends(tmp_path: Path) -> None:
    """Database-independent, so SQLite only."""
    env = {
        "HOLLANG_DATA_DIR": str(tmp_path),
        "HOLLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'hollang.db'}",
        "HOLLANG_LOG_FORMAT": "text",
    }
    log = tmp_path / "serve.log"
    with serve_process(env, log_path=log) as url, httpx.Client(base_url=url, timeout=10) as http:
        assert http.get("/tests?version=1", headers={"X-Request-ID": "plain-7"}).status_code == 200
        forged = http.get("/x%0A2026-01-01 ERROR hollang forged%0D")
        assert forged.status_code == 404
    text = log.read_text()
    assert "INFO hollang.access [plain-7] GET /tests 200" in text
    assert "GET /x\\n2026-01-01 ERROR hollang forged\\r 404" in text
    assert not any(line.startswith("2026-01-01 ERROR") for line in text.splitlines())


TEXT_LINE = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ [\w.]+ \[[^\]]+\] ")
NOISE = ("setup plugin", "Context impl", "Will assume")


def env_without_log_format(tmp_path: Path, **extra: str) -> dict[str, str]:
    env = {
        k: v for k, v in os.environ.items() if k not in ("HOLLANG_LOG_FORMAT", "HOLLANG_LOG_LEVEL")
    }
    return {
        **env,
        "HOLLANG_DATA_DIR": str(tmp_path),
        "HOLLANG_DATABASE_URL": f"sqlite:///{tmp_path / 'hollang.db'}",
        **extra,
    }


def test_a_terminal_gets_text_lines_with_the_request_id(tmp_path: Path) -> None:
    """`hollang serve` with its stdout and stderr on a pseudo-terminal, as `make run` in a
    shell, and no HOLLANG_LOG_FORMAT: text lines, each with a request id (`-` outside a
    request), and none of alembic's per-start set-up at INFO."""
    port = free_port()
    leader, follower = pty.openpty()
    hollang = Path(sys.executable).with_name("hollang")
    process = subprocess.Popen(
        [str(hollang), "serve", "--host", "127.0.0.1", "--port", str(port)],
        env=env_without_log_format(tmp_path),
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=follower,
    )
    os.close(follower)
    chunks: list[bytes] = []

    def drain() -> None:  # a full pty would block the server's writes
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every writer closed the terminal
                return
            if not chunk:
                return
            chunks.append(chunk)

    reader = threading.Thread(target=drain, daemon=True)
    reader.start()
    url = f"http://127.0.0.1:{port}"
    try:
        wait_until_ready(process, f"{url}/health/ready", log=None)
        headers = {"X-Request-ID": "on-a-tty-1"}
        assert httpx.get(f"{url}/tests?version=1", headers=headers).status_code == 200
    finally:
        stop_process(process)
        reader.join(timeout=30)
        os.close(leader)
    lines = [line for line in b"".join(chunks).decode().splitlines() if line.strip()]
    assert lines
    for line in lines:
        assert TEXT_LINE.match(line), line
        assert not line.startswith("{"), line
    assert any(" INFO hollang.access [on-a-tty-1] GET /tests 200" in line for line in lines)
    assert any("Running upgrade  -> 0001" in line for line in lines)  # real work stays INFO
    assert not [line for line in lines if any(noise in line for noise in NOISE)]


def test_a_pipe_gets_json_and_the_setting_overrides_the_guess(tmp_path: Path) -> None:
    """Not a terminal (a file, as under a container or a service manager): JSON lines, also
    without the set-up noise. `HOLLANG_LOG_FORMAT=text` still gives text to a file."""
    for log_format, check in (("", json.loads), ("text", TEXT_LINE.match)):
        data = tmp_path / (log_format or "guessed")
        data.mkdir()
        env = env_without_log_format(data)
        if log_format:
            env["HOLLANG_LOG_FORMAT"] = log_format
        result = subprocess.run(
            [str(Path(sys.executable).with_name("hollang")), "db", "upgrade"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines, result
        assert all(check(line) for line in lines), lines
        assert any("Running upgrade" in line for line in lines)
        assert not [line for line in lines if any(noise in line for noise in NOISE)]


def test_the_set_up_noise_is_there_at_debug(tmp_path: Path) -> None:
    """Moved to DEBUG, not dropped: asking for DEBUG shows it, with its new level."""
    env = env_without_log_format(tmp_path, HOLLANG_LOG_LEVEL="DEBUG")
    result = subprocess.run(
        [str(Path(sys.executable).with_name("hollang")), "db", "upgrade"],
        env=env,
        capture_output=True,
        text=True,
        check=True,
    )
    records = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    noise = [r for r in records if r["message"].startswith(NOISE)]
    assert {r["logger"] for r in noise} == {"alembic.runtime.plugins", "alembic.runtime.migration"}
    assert {r["level"] for r in noise} == {"DEBUG"}
    assert all(r["request_id"] is None for r in records)
