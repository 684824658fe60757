"""CPU cost of one request through the whole app, in-process: where the service spends.

    python benchmarks/profile_requests.py [--requests 2000] [--profile KIND] [--sqlite]

Builds the app exactly as `hollang serve` does (every middleware, the lifespan, the model,
a fresh MariaDB database on HOLLANG_BENCH_MYSQL_URL, or SQLite with --sqlite) and calls it
as an ASGI application, without a network or a load generator, so the numbers are the
app's own. For each request kind it reports the CPU time (user + system of this process,
all threads, so database driver work counts) per request: the median of 5 alternating
rounds, because CPU time is far steadier than latency on a shared machine. `--profile
KIND` also prints cProfile's top functions for that kind (event-loop thread only).

It also reports every pause of the cyclic garbage collector during the run;
`--no-gc-freeze` undoes the start-up heap freeze (server/heap.py) to compare. `--shadow`
names a copy of the active model (another version, the same weights, so the same cost) as
the shadow before measuring, to show what shadow scoring costs each request.

Kinds: live (GET /health/live), tests (GET /tests), predict (POST /predict), post
(POST /test-responses), recommendation (GET /recommendations/{id}).
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import json
import os
import pstats
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from contextlib import ExitStack
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.e2e import answers  # noqa: E402
from cli.context import prepare_database  # noqa: E402
from harness.scratch import scratch_mysql_database  # noqa: E402
from server.app import create_app  # noqa: E402
from server.settings import Settings  # noqa: E402

KINDS = ("live", "tests", "predict", "post", "recommendation")
ROUNDS = 5


class GcPauses:
    """Every cyclic-collector pause while it is installed, by generation (gc.callbacks)."""

    def __init__(self) -> None:
        self.pauses: dict[int, list[float]] = {0: [], 1: [], 2: []}
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            self.pauses[info["generation"]].append(time.perf_counter() - self._started)

    def report(self) -> str:
        return ", ".join(
            f"gen{g}: {len(p)} pauses, max {max(p, default=0) * 1e3:.2f} ms"
            for g, p in self.pauses.items()
        )


def scope(method: str, path: str, query: bytes, body: bytes) -> dict[str, Any]:
    headers = [(b"host", b"127.0.0.1:8000"), (b"user-agent", b"bench")]
    if body:
        headers += [(b"content-type", b"application/json"), (b"content-length", b"%d" % len(body))]
    return {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query,
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8000),
    }


async def call(app: Any, request: tuple[str, str, bytes, bytes], state: dict[str, Any]) -> int:
    method, path, query, body = request
    pending = [{"type": "http.request", "body": body, "more_body": False}]
    status = 0

    async def receive() -> dict[str, Any]:
        if pending:
            return pending.pop()
        await asyncio.Event().wait()  # the client never disconnects
        raise AssertionError

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    await app({**scope(method, path, query, body), "state": dict(state)}, receive, send)
    return status


async def measure(
    database_url: str,
    data_dir: Path,
    count: int,
    profile: str | None,
    freeze: bool = True,
    profile_sort: str = "cumulative",
    profile_lines: int = 40,
    shadow: bool = False,
) -> dict[str, float]:
    settings = Settings(database_url=database_url, data_dir=data_dir)
    prepare_database(settings)
    app = create_app(settings)
    post = json.dumps({"user": {"name": "벤치"}, "testResponseDetails": answers((1, 2, 3, 0))})
    predict = json.dumps({"testResponseDetails": answers((1, 2, 3, 0))})
    requests = {
        "live": ("GET", "/health/live", b"", b""),
        "tests": ("GET", "/tests", b"version=1", b""),
        "predict": ("POST", "/predict", b"", predict.encode()),
        "post": ("POST", "/test-responses", b"", post.encode()),
        "recommendation": ("GET", "/recommendations/1", b"", b""),
    }
    async with app.router.lifespan_context(app) as state:
        state = dict(state or {})
        if shadow:
            await set_shadow(app.state.services)
        if not freeze:  # the lifespan froze the start-up heap (server/heap.py): undo it
            gc.unfreeze()
            gc.set_threshold(700, 10, 10)
        pauses = GcPauses()
        gc.callbacks.append(pauses)
        assert await call(app, requests["post"], state) == 200  # recommendation 1 exists
        results: dict[str, list[float]] = {kind: [] for kind in KINDS}
        for _ in range(ROUNDS):
            for kind in KINDS:
                one: Callable[[], Awaitable[int]] = lambda k=kind: call(app, requests[k], state)  # noqa: E731
                for _ in range(max(10, count // 20)):  # warm-up
                    assert await one() == 200, kind
                n = count // (10 if kind == "post" else 1)
                started = time.process_time()
                for _ in range(n):
                    await one()
                results[kind].append((time.process_time() - started) / n * 1e6)
        if profile:
            profiler = cProfile.Profile()
            profiler.enable()
            for _ in range(count // (10 if profile == "post" else 1)):
                await call(app, requests[profile], state)
            profiler.disable()
            out = io.StringIO()
            pstats.Stats(profiler, stream=out).sort_stats(profile_sort).print_stats(profile_lines)
            print(out.getvalue())
        gc.callbacks.remove(pauses)
        if shadow:
            stats = app.state.services.engine.shadow.stats
            print(
                f"shadow: {stats.rows} rows scored in {stats.runs} runs, "
                f"{stats.failed_rows} failed, {stats.skipped_rows} skipped",
                file=sys.__stdout__,
                flush=True,
            )
    print(
        f"garbage collector ({'frozen start-up heap' if freeze else 'defaults'}): "
        f"{pauses.report()}",
        file=sys.__stdout__,
        flush=True,
    )
    return {kind: statistics.median(values) for kind, values in results.items()}


async def set_shadow(services: Any) -> None:
    """Publish the active model again as version `bench-shadow` and score it beside."""
    import onnx
    from onnx import helper

    from model.modelfile import ModelFile, ModelMetadata

    active = services.engine.model.file
    graph = onnx.load_from_string(active.data)
    del graph.metadata_props[:]
    helper.set_model_props(graph, ModelMetadata("bench-shadow", active.metadata.labels).to_props())
    services.models.registry.publish(ModelFile.from_bytes(graph.SerializeToString()))
    await services.models.set_shadow("bench-shadow")
    assert services.engine.shadow is not None


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=2000, help="per kind per round")
    parser.add_argument("--profile", choices=KINDS)
    parser.add_argument("--sort", default="cumulative", help="cProfile's sort key (tottime, ...)")
    parser.add_argument("--lines", type=int, default=40, help="how many functions to print")
    parser.add_argument("--sqlite", action="store_true")
    parser.add_argument(
        "--no-gc-freeze",
        action="store_true",
        help="undo the start-up heap freeze, to measure what it buys (pauses are reported)",
    )
    parser.add_argument("--shadow", action="store_true", help="score a shadow model too")
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("HOLLANG_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
    )
    args = parser.parse_args()
    os.environ.setdefault("HOLLANG_LOG_LEVEL", "INFO")  # as served: the access log included
    with ExitStack() as stack:
        tmp = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hollang-prof-")))
        if args.sqlite:
            url = f"sqlite:///{tmp / 'hollang.db'}"
        else:
            url = stack.enter_context(scratch_mysql_database(args.mysql_url, "profile_"))
        with open(os.devnull, "w") as devnull:
            sys.stderr.flush()
            saved = os.dup(2)
            os.dup2(devnull.fileno(), 2)  # the access log goes to stderr: keep it off screen
            try:
                costs = asyncio.run(
                    measure(
                        url,
                        tmp,
                        args.requests,
                        args.profile,
                        not args.no_gc_freeze,
                        args.sort,
                        args.lines,
                        args.shadow,
                    )
                )
            finally:
                os.dup2(saved, 2)
    if args.shadow:
        print("with a shadow model scoring every request")
    print("| request | CPU µs per request (median of 5 rounds) |")
    print("|---|---:|")
    for kind in KINDS:
        print(f"| {kind} | {costs[kind]:,.0f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
