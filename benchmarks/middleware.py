"""What the request-id, access-log, metrics, security-header and body-cap middleware cost
per request: the same app with and without them, called directly through ASGI (no network,
no server), so only the middleware differs. Logs go to /dev/null through the real JSON
handler.

    .venv/bin/python benchmarks/middleware.py [--no-access-log]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import tempfile
import time
from typing import Any

from fastapi import FastAPI

from server import middleware
from server.app import create_app
from server.logs import make_handler, skip_unused_record_fields
from server.settings import Settings

OURS = (middleware.BodySizeLimit, middleware.RequestEdge)
PATH = "/no-such-route"  # answered by the app's own 404 handler: async, no database


def build(with_middleware: bool, data_dir: str) -> FastAPI:
    app = create_app(Settings(data_dir=data_dir))
    if not with_middleware:
        app.user_middleware = [m for m in app.user_middleware if m.cls not in OURS]
    return app


async def median_seconds(app: FastAPI, requests: int) -> float:
    scope: dict[str, Any] = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": PATH,
        "raw_path": PATH.encode(),
        "root_path": "",
        "query_string": b"",
        "headers": [(b"host", b"bench")],
        "client": ("127.0.0.1", 1),
        "server": ("bench", 80),
    }

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(_: dict[str, Any]) -> None:
        return None

    times = []
    for _ in range(requests):
        started = time.perf_counter()
        await app(dict(scope), receive, send)
        times.append(time.perf_counter() - started)
    return statistics.median(times)


async def main(access_log: bool) -> None:
    skip_unused_record_fields()  # as configure_logging does in a served process
    handler = make_handler("json")
    handler.setStream(open(os.devnull, "w"))  # noqa: SIM115 - lives as long as the process
    logging.getLogger().addHandler(handler)
    logging.getLogger().setLevel(logging.INFO)
    logging.getLogger("hollang.access").disabled = not access_log
    with tempfile.TemporaryDirectory() as data_dir:
        full, bare = build(True, data_dir), build(False, data_dir)
        await median_seconds(full, 300)  # warm-up
        await median_seconds(bare, 300)
        rounds = [
            (await median_seconds(full, 2000), await median_seconds(bare, 2000)) for _ in range(5)
        ]
    with_mw, without = min(r[0] for r in rounds), min(r[1] for r in rounds)
    print(
        f"GET {PATH} (404), median of 2000, best of 5 rounds: with middleware "
        f"{with_mw * 1e6:.0f} µs, without {without * 1e6:.0f} µs, "
        f"middleware {(with_mw - without) * 1e6:.0f} µs per request"
        + ("" if access_log else " (access log off)")
    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--no-access-log", action="store_true")
    asyncio.run(main(access_log=not parser.parse_args().no_access_log))
