"""What each piece of FastAPI costs on /predict, in-process: the evidence for server/lean.py
and the flat route table in server/routes/__init__.py.

    .venv/bin/python benchmarks/framework_costs.py [--requests 3000]

Every variant does the same job (benchmarks/baselines/job.py: parse 12 answers, run the
bundled model on one row, rank, orjson out) and is called as an ASGI app without a network,
so only the framework around the job differs. Reported: CPU µs per request, the median of 7
rounds, variants alternating within each round; then our own app (every middleware, the
batcher, the access log to /dev/null) for comparison.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Any

import orjson
from fastapi import APIRouter, Depends, FastAPI, Request, Response

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.baselines import raw_asgi  # noqa: E402
from benchmarks.baselines.fastapi_app import Answers  # noqa: E402
from benchmarks.baselines.job import Job  # noqa: E402
from benchmarks.e2e import answers  # noqa: E402
from benchmarks.profile_requests import call  # noqa: E402
from server.lean import LeanRoute  # noqa: E402

ROUNDS = 7


def variants(job: Job) -> dict[str, Any]:
    def reply(body: Answers) -> Response:
        chosen = {d.questionNumber: d.answerNumber for d in body.testResponseDetails}
        return Response(orjson.dumps(job.predict(chosen)), media_type="application/json")

    async def declared(body: Answers) -> Response:
        return reply(body)

    async def own_body(request: Request) -> Response:
        return reply(Answers.model_validate_json(await request.body()))

    async def dependency(request: Request) -> int:
        return 1

    async def with_dependency(body: Answers, _: Annotated[int, Depends(dependency)]) -> Response:
        return reply(body)

    def app_with(endpoint: Callable[..., Any], lean: bool = False) -> FastAPI:
        app = FastAPI()
        if lean:
            app.router.route_class = LeanRoute
        app.add_api_route("/predict", endpoint, methods=["POST"])
        return app

    included = FastAPI()
    router = APIRouter()
    router.add_api_route("/predict", declared, methods=["POST"])
    included.include_router(router)
    behind = FastAPI()
    for i in range(25):
        behind.add_api_route(f"/other{i}/{{id}}", lambda id: None, methods=["GET"])
    behind.add_api_route("/predict", declared, methods=["POST"])
    return {
        "bare FastAPI route (declared body)": app_with(declared),
        "  ... in an included router": included,
        "  ... after 25 other routes": behind,
        "  ... with one async dependency": app_with(with_dependency),
        "APIRoute reading its own body (validate_json)": app_with(own_body),
        "LeanRoute reading its own body": app_with(own_body, lean=True),
        "raw ASGI": raw_asgi.create_app(),
    }


async def cpu_per_request(app: Any, body: bytes, count: int) -> float:
    request = ("POST", "/predict", b"", body)
    started = time.process_time()
    for _ in range(count):
        await call(app, request, {})
    return (time.process_time() - started) / count * 1e6


async def main(count: int) -> None:
    from cli.context import prepare_database
    from server.app import create_app
    from server.settings import Settings

    job = Job()
    apps = variants(job)
    body = json.dumps({"testResponseDetails": answers((1, 2, 3, 0))}).encode()
    with tempfile.TemporaryDirectory() as data_dir:
        settings = Settings(data_dir=Path(data_dir))
        prepare_database(settings)
        ours = create_app(settings)
        async with ours.router.lifespan_context(ours) as state:
            apps["our app (everything)"] = lambda s, r, se: ours(
                {**s, "state": dict(state or {})}, r, se
            )
            results: dict[str, list[float]] = {name: [] for name in apps}
            for app in apps.values():
                await cpu_per_request(app, body, 200)  # warm-up
            for _ in range(ROUNDS):
                for name, app in apps.items():
                    results[name].append(await cpu_per_request(app, body, count))
    print("| variant | CPU µs per /predict |")
    print("|---|---:|")
    for name, values in results.items():
        print(f"| {name} | {statistics.median(values):.0f} |")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--requests", type=int, default=3000, help="per variant per round")
    os.environ.setdefault("HOLLANG_LOG_LEVEL", "INFO")
    with open(os.devnull, "w") as devnull:
        saved = os.dup(2)
        os.dup2(devnull.fileno(), 2)  # the access log goes to stderr
        try:
            asyncio.run(main(parser.parse_args().requests))
        finally:
            os.dup2(saved, 2)
