"""The one logging set-up, used by the CLI and by every server process.

Logs go to stderr: as plain text when stderr is a terminal (`make run` in a shell), else
one JSON object per line, so a log shipper needs no parsing rules (a container, a service
manager, a file). ``HOLLANG_LOG_FORMAT`` (``text`` or ``json``) overrides the guess. Every
record carries ``request_id``: the id of the request being handled when it was logged
(asgi-correlation-id keeps it in a context variable), so an error log can be joined to its
access line; a text line shows ``[-]`` outside a request, a JSON line ``null``. Read from
the environment rather than `Settings` on purpose: logging must work before the settings
are parsed, so that a bad setting is itself logged.

Alembic announces at INFO what it does on every start whether or not a migration runs
(seven "setup plugin" lines, the dialect and its DDL mode); `StartupNoise` moves those to
DEBUG, so INFO shows only migrations that really ran.
"""

from __future__ import annotations

import logging
import os
import sys
import time
from typing import Any

from asgi_correlation_id import CorrelationIdFilter
from pythonjsonlogger.core import RESERVED_ATTRS
from pythonjsonlogger.orjson import OrjsonFormatter

FORMATS = ("json", "text")
TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(correlation_id)s] %(message)s"
ACCESS = logging.getLogger("hollang.access")
# (logger, message template prefix) of records logged on every start, whatever happens.
STARTUP_NOISE = (
    ("alembic.runtime.plugins", "setup plugin "),
    ("alembic.runtime.migration", "Context impl "),
    ("alembic.runtime.migration", "Will assume "),
)


class StartupNoise(logging.Filter):
    """Logs `STARTUP_NOISE` records at DEBUG instead of INFO: shown when DEBUG is asked
    for, dropped otherwise. A filter on the logger, not a higher logger level, because a
    level would hide the same loggers' useful lines ("Running upgrade 0001 -> 0002")."""

    def __init__(self, prefixes: tuple[str, ...]) -> None:
        super().__init__()
        self.prefixes = prefixes

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.INFO or not str(record.msg).startswith(self.prefixes):
            return True
        record.levelno, record.levelname = logging.DEBUG, "DEBUG"
        return logging.getLogger().isEnabledFor(logging.DEBUG)


class UtcJsonFormatter(OrjsonFormatter):
    """JSON lines with a UTC ISO-8601 `time`, `level`, `logger`, `message`, any extras."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        seconds = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
        return f"{seconds}.{int(record.msecs):03d}Z"


def make_handler(log_format: str) -> logging.Handler:
    if log_format not in FORMATS:
        raise ValueError(f"HOLLANG_LOG_FORMAT must be one of {', '.join(FORMATS)}: {log_format!r}")
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(CorrelationIdFilter(default_value="-" if log_format == "text" else None))
    formatter: logging.Formatter
    if log_format == "json":
        formatter = UtcJsonFormatter(
            "{asctime}{levelname}{name}{message}",
            style="{",
            rename_fields={
                "asctime": "time",
                "levelname": "level",
                "name": "logger",
                "correlation_id": "request_id",
                "exc_info": "exception",
            },
            # uvicorn's copy of each message with terminal colour codes
            reserved_attrs=[*RESERVED_ATTRS, "color_message"],
        )
    else:
        formatter = logging.Formatter(TEXT_FORMAT)
    handler.setFormatter(formatter)
    return handler


def skip_unused_record_fields() -> None:
    """Stop every log record from looking up what no handler of ours prints: the caller's
    file and line (a walk up the stack), thread and process names. The logging HOWTO's
    "Optimization" section names these switches; together with the orjson formatter they
    took the access line from 38 to 17-22 µs (benchmarks/middleware.py, with and without
    --no-access-log)."""
    logging._srcfile = None
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False


def default_format() -> str:
    """`text` for a person at a terminal, `json` for everything that collects logs."""
    return "text" if sys.stderr.isatty() else "json"


def configure_logging() -> None:
    """Set up the root logger in every process, including uvicorn's worker processes,
    which do not inherit the CLI's set-up (they do inherit stderr, so they guess the same
    format). A no-op when already set (e.g. under pytest)."""
    root = logging.getLogger()
    if root.handlers:
        return
    skip_unused_record_fields()
    log_format = os.environ.get("HOLLANG_LOG_FORMAT", "").strip().lower() or default_format()
    level = os.environ.get("HOLLANG_LOG_LEVEL", "INFO").strip().upper()
    root.addHandler(make_handler(log_format))
    root.setLevel(level)
    quiet_startup_noise()


def quiet_startup_noise() -> None:
    by_logger: dict[str, list[str]] = {}
    for name, prefix in STARTUP_NOISE:
        by_logger.setdefault(name, []).append(prefix)
    for name, prefixes in by_logger.items():
        logger = logging.getLogger(name)
        if not any(isinstance(f, StartupNoise) for f in logger.filters):
            logger.addFilter(StartupNoise(tuple(prefixes)))


def log_request(
    method: str, route: str, path: str, status: int, seconds: float, client: str | None
) -> None:
    """The one access-log line of a request (uvicorn's own access log is off)."""
    extra: dict[str, Any] = {
        "method": method,
        "route": route,
        "path": path,
        "status": status,
        "duration_ms": round(seconds * 1000, 3),
        "client": client,
    }
    # The message escapes control characters: a decoded path may hold a newline, and a
    # text-format log must not let a client forge a line.
    shown = path.encode("unicode_escape").decode("ascii")
    ACCESS.info("%s %s %d", method, shown, status, extra=extra)
