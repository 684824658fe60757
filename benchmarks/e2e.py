"""End-to-end benchmark: what removing the HTTP hop and batching buy, side by side.

    python benchmarks/e2e.py [--quick]          (or: make bench / make bench-quick)

One run, on this machine, against MariaDB (a fresh database on HOLLANG_BENCH_MYSQL_URL,
default root@127.0.0.1:3306, dropped afterwards), with the original catalogue and the
original weights (converted for the embedded side, loaded by PyTorch for the stand-in):

- ``embedded``: ``hollang serve --workers 2``, the model in-process with batching;
- ``remote``: the same service with ``HOLLANG_INFERENCE_URL`` pointing at the stand-in of the
  original inference server (benchmarks/standin: Flask's server, PyTorch, one request at a
  time), on this machine;
- ``nobatch``: the embedded service with ``HOLLANG_MAX_BATCH_SIZE=1``;
- ``shadow``: the embedded service scoring a shadow model (the same network under another
  version) beside every request, as `hollang model shadow` sets it up;
- ``standin``: the stand-in called directly;
- the comparison servers of benchmarks/baselines, each the same /predict job on the same
  model file with 2 workers: ``flask`` (a Flask route under gunicorn's sync workers, the
  naive way), ``fastapi`` (a bare FastAPI route: pydantic request model, orjson out, no
  middleware: what the framework costs) and ``raw`` (a raw ASGI app on uvicorn: what Python
  and uvicorn cost, the ceiling).

Scenarios: (1) POST /test-responses at concurrency 1, 16, 64, embedded vs remote; (2) the
same, batching off vs on; (3) POST /predict (no database) embedded vs the comparison servers
and the stand-in called directly; (4) GET /tests and GET /recommendations/{id}, against
our own /predict and the raw ASGI ceiling; (5) the engine micro-benchmark
(benchmarks/engine.py), run after the servers are stopped; (6) POST /predict with and
without a shadow model.

The load generator is wrk (a separate C process, one thread, a Lua script), bounded by
time; its CPU use is recorded to show it is not the bottleneck. Every cell runs once per
round and rounds alternate the order of the variants, so drift on this shared machine hits
every side alike; the report gives the median over rounds and ratios taken round by round.

Ad hoc comparisons: ``--only SUBSTRING`` runs only the matching cells and ``--env NAME=VALUE``
adds a setting to every service; such a run prints its numbers and writes nothing.

Writes benchmarks/results/bench-<UTC>.json, bench-latest.{json,md} and PNG plots
(--quick: bench-quick-latest.{json,md} and its plots only).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from itertools import product
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy.engine import make_url

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.engine import machine  # noqa: E402
from benchmarks.plots import write_plots  # noqa: E402
from benchmarks.report import markdown  # noqa: E402
from harness.scratch import (  # noqa: E402
    free_port,
    scratch_mysql_database,
    stop_process,
    wait_until_ready,
)

SHARED = ROOT.parent / "shared" / "hollang"
RESULTS = ROOT / "benchmarks" / "results"
LUA = ROOT / "benchmarks" / "wrk" / "requests.lua"
STANDIN = ROOT / "benchmarks" / "standin" / "app.py"
BIN = Path(sys.executable).parent
CONCURRENCY = (1, 16, 64)
BASELINES = ("flask", "fastapi", "raw")
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Budget:
    seconds: float  # per cell per round
    rounds: int  # a quick run's single round still alternates the variants within it
    warmup_seconds: float  # per server
    records: int  # recommendations created for GET /recommendations/{id}

    @classmethod
    def of(cls, quick: bool) -> Budget:
        return cls(2.0, 1, 1.0, 64) if quick else cls(5.0, 3, 2.0, 256)


@dataclass(frozen=True)
class Cell:
    """One measurement: a request kind against one variant at one concurrency."""

    scenario: str  # test-responses | predict | tests | recommendation
    variant: str  # embedded | remote | nobatch | shadow | standin | flask | fastapi | raw
    concurrency: int

    @property
    def key(self) -> str:
        return f"{self.scenario}/{self.variant}/c{self.concurrency}"


def cells() -> list[list[Cell]]:
    """Groups of cells compared side by side; a group's variants alternate between rounds."""
    groups = []
    for c in CONCURRENCY:
        groups.append([Cell("test-responses", v, c) for v in ("embedded", "remote", "nobatch")])
    for c in CONCURRENCY:
        groups.append(
            [Cell("predict", v, c) for v in ("embedded", *BASELINES, "standin", "shadow")]
        )
    groups.append([Cell("tests", "embedded", 64)])
    groups.append([Cell("recommendation", "embedded", 64)])
    return groups


# ---- processes ----


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process and its children (uvicorn workers), from /proc."""
    pids = [pid]
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                pids.append(int(entry.name))
    total = 0
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / CLOCK_TICKS


@dataclass
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]


@contextmanager
def launched(name: str, command: list[str], env: dict[str, str], log: Path) -> Iterator[Server]:
    """Start a server process on a free port (`{port}` in `command`); stop it afterwards."""
    port = free_port()
    command = [part.replace("{port}", str(port)) for part in command]
    with open(log, "wb") as out:
        process = subprocess.Popen(command, env={**os.environ, **env}, stdout=out, stderr=out)
    try:
        yield Server(name, f"http://127.0.0.1:{port}", process)
    finally:
        stop_process(process)


def wait_ready(server: Server, path: str, log: Path) -> None:
    wait_until_ready(server.process, server.url + path, log=log, timeout=120, interval=0.2)


def run_cli(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run(
        [str(BIN / "hollang"), *args],
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"hollang {' '.join(args)} failed: {result.stderr[-2000:]}")


SHADOW_VERSION = "bench-shadow"


def prepare_shadow(original: Path, env: dict[str, str], work: Path) -> None:
    """In the shadow variant's own object store: the original active, and the same network
    stamped as another version its shadow, so its workers score it from their start."""
    from model.modelfile import ModelFile

    labels = work / "labels.json"
    labels.write_text(json.dumps(list(ModelFile.read(original).metadata.labels)))
    candidate = work / "shadow.onnx"
    run_cli("model", "stamp", str(original), "--labels", str(labels),
            "--version", SHADOW_VERSION, "-o", str(candidate), env=env)  # fmt: skip
    run_cli("model", "publish", str(original), "--activate", env=env)
    run_cli("model", "publish", str(candidate), env=env)
    run_cli("model", "shadow", SHADOW_VERSION, env=env)


def shadow_rows(server: Server) -> float:
    """Rows the shadow variant's workers scored with the shadow model, from /metrics."""
    text = httpx.get(server.url + "/metrics", timeout=10).text
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("hollang_shadow_rows_total{")
    )


def baseline_commands() -> dict[str, list[str]]:
    """The comparison servers, with the same worker count and serving options as ours."""
    uvicorn = [str(BIN / "uvicorn"), "--factory", "--workers", "2", "--port", "{port}"]
    uvicorn += [
        "--loop",
        "uvloop",
        "--http",
        "httptools",
        "--no-access-log",
        "--log-level",
        "warning",
    ]
    return {
        "flask": [str(BIN / "gunicorn"), "-w", "2", "-b", "127.0.0.1:{port}", "-k", "sync",
                  "--log-level", "warning", "benchmarks.baselines.flask_app:app"],
        "fastapi": [*uvicorn, "benchmarks.baselines.fastapi_app:create_app"],
        "raw": [*uvicorn, "benchmarks.baselines.raw_asgi:create_app"],
    }  # fmt: skip


# ---- request files ----


def answers(scores: tuple[int, ...]) -> list[dict[str, int]]:
    return [
        {"questionNumber": group * 3 + offset + 1, "answerNumber": 2 if offset < score else 1}
        for group, score in enumerate(scores)
        for offset in range(3)
    ]


def request_files(work: Path) -> dict[str, Path]:
    """Bodies for every one of the 256 possible inputs, one JSON per line."""
    inputs = list(product(range(4), repeat=4))
    docs = {
        "test-responses": [
            {"user": {"name": "벤치"}, "testResponseDetails": answers(s)} for s in inputs
        ],
        "predict": [{"testResponseDetails": answers(s)} for s in inputs],
        "standin": [answers(s) for s in inputs],
    }
    files = {}
    for name, bodies in docs.items():
        path = work / f"{name}.txt"
        path.write_text("\n".join(json.dumps(b, ensure_ascii=False) for b in bodies) + "\n")
        files[name] = path
    files["tests"] = work / "tests.txt"
    files["tests"].write_text("/tests?version=1\n")
    return files


def recommendation_paths(url: str, body_file: Path, out: Path, count: int) -> Path:
    """Create `count` recommendations through the service; their GET paths, one a line."""
    bodies = body_file.read_text().splitlines()
    paths = []
    with httpx.Client(base_url=url, timeout=30) as client:
        for i in range(count):
            response = client.post(
                "/test-responses",
                content=bodies[i % len(bodies)],
                headers={"Content-Type": "application/json"},
            )
            response.raise_for_status()
            paths.append(f"/recommendations/{response.json()['data']['recommendation']['id']}")
    out.write_text("\n".join(paths) + "\n")
    return out


# ---- wrk ----


def wrk(url: str, method: str, lines: Path, concurrency: int, seconds: float) -> dict[str, Any]:
    """One wrk run; returns its counts, latency percentiles and its own CPU time."""
    before = os.times()
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            f"-c{concurrency}",
            f"-d{max(1, round(seconds))}s",
            "--timeout",
            "10s",
            "-s",
            str(LUA),
            url,
            "--",
            method,
            str(lines),
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=False,
    )
    after = os.times()
    line = next((x for x in result.stdout.splitlines() if x.startswith("WRK_RESULT ")), None)
    if result.returncode != 0 or line is None:
        raise RuntimeError(f"wrk failed ({result.returncode}): {result.stderr or result.stdout}")
    out: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
    out["wrk_cpu_s"] = (after.children_user - before.children_user) + (
        after.children_system - before.children_system
    )
    return out


def measure(
    cell: Cell,
    servers: dict[str, Server],
    files: dict[str, Path],
    seconds: float,
) -> dict[str, Any]:
    if cell.scenario == "predict" and cell.variant == "standin":
        server, method, path, lines = servers["standin"], "POST", "/test-responses", "standin"
    elif cell.scenario == "predict" and cell.variant in BASELINES:
        server, method, path, lines = servers[cell.variant], "POST", "/predict", "predict"
    elif cell.scenario in ("test-responses", "predict"):
        server, method, path, lines = (
            servers[cell.variant],
            "POST",
            f"/{cell.scenario}",
            cell.scenario,
        )
    else:
        server, method, path, lines = servers[cell.variant], "GET", "/", cell.scenario
    watched = [s for s in servers.values() if s.name in (cell.variant, "standin")]
    cpu_before = {s.name: cpu_seconds(s.process.pid) for s in watched}
    out = wrk(server.url + path, method, files[lines], cell.concurrency, seconds)
    cpu = {s.name: cpu_seconds(s.process.pid) - cpu_before[s.name] for s in watched}
    duration = out["duration_us"] / 1e6
    ok = out["requests"] - out["errors"]["status"]
    return {
        **out,
        "throughput_per_s": out["requests"] / duration,
        "ok_requests": ok,
        "p50_ms": out["latency_us"]["percentiles"]["50"] / 1000,
        "p99_ms": out["latency_us"]["percentiles"]["99"] / 1000,
        "server_cpu_s": cpu,
        "cpu_ms_per_request": sum(cpu.values()) / max(1, out["requests"]) * 1000,
        "wrk_cpu_share": out["wrk_cpu_s"] / duration,
    }


# ---- summary ----


def summarise(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, Any]]:
    """Median over rounds of each cell's numbers."""
    summary = {}
    for key, rounds in runs.items():
        summary[key] = {
            field: statistics.median(r[field] for r in rounds)
            for field in (
                "throughput_per_s",
                "p50_ms",
                "p99_ms",
                "cpu_ms_per_request",
                "wrk_cpu_share",
            )
        }
        summary[key]["requests"] = sum(r["requests"] for r in rounds)
        summary[key]["errors"] = sum(sum(r["errors"].values()) for r in rounds)
        summary[key]["rounds"] = len(rounds)
    return summary


def ratios(runs: dict[str, list[dict[str, Any]]]) -> dict[str, dict[str, float]]:
    """Round-by-round ratios (the same round's numbers side by side), then their median."""

    def paired(a: str, b: str, field: str) -> float:
        values = [x[field] / y[field] for x, y in zip(runs[a], runs[b], strict=True) if y[field]]
        return statistics.median(values) if values else float("nan")

    out = {}
    for c in CONCURRENCY:
        emb, rem, nob = (f"test-responses/{v}/c{c}" for v in ("embedded", "remote", "nobatch"))
        pe, ps = f"predict/embedded/c{c}", f"predict/standin/c{c}"
        out[f"c{c}"] = {
            "embedded_vs_remote_throughput": paired(emb, rem, "throughput_per_s"),
            "embedded_vs_remote_p99": paired(emb, rem, "p99_ms"),
            "embedded_vs_remote_p50": paired(emb, rem, "p50_ms"),
            "embedded_vs_remote_cpu_per_request": paired(emb, rem, "cpu_ms_per_request"),
            "batching_on_vs_off_throughput": paired(emb, nob, "throughput_per_s"),
            "batching_on_vs_off_p99": paired(emb, nob, "p99_ms"),
            "predict_embedded_vs_standin_throughput": paired(pe, ps, "throughput_per_s"),
            "predict_embedded_vs_standin_p99": paired(pe, ps, "p99_ms"),
        }
        for base in BASELINES:
            pb = f"predict/{base}/c{c}"
            out[f"c{c}"][f"predict_embedded_vs_{base}_throughput"] = paired(
                pe, pb, "throughput_per_s"
            )
            out[f"c{c}"][f"predict_embedded_vs_{base}_p99"] = paired(pe, pb, "p99_ms")
        psh = f"predict/shadow/c{c}"
        for field in ("throughput_per_s", "p50_ms", "p99_ms", "cpu_ms_per_request"):
            out[f"c{c}"][f"predict_shadow_vs_embedded_{field}"] = paired(psh, pe, field)
    for read in ("tests", "recommendation"):
        for against in ("embedded", "raw"):
            out["reads"] = out.get("reads", {})
            out["reads"][f"{read}_vs_predict_{against}_throughput"] = paired(
                f"{read}/embedded/c64", f"predict/{against}/c64", "throughput_per_s"
            )
    return out


def engine_benchmark(quick: bool, out: Path) -> dict[str, Any]:
    args = [sys.executable, str(ROOT / "benchmarks" / "engine.py"), "--out", str(out)]
    if quick:
        args.append("--quick")
    subprocess.run(args, check=True, timeout=600, capture_output=True)
    result: dict[str, Any] = json.loads((out / "engine-latest.json").read_text())
    return result


def versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    found = {}
    for name in (
        "fastapi",
        "uvicorn",
        "sqlalchemy",
        "pymysql",
        "onnxruntime",
        "torch",
        "flask",
        "werkzeug",
        "httpx",
    ):
        try:
            found[name] = version(name)
        except PackageNotFoundError:
            found[name] = "not installed"
    wrk_version = subprocess.run(["wrk", "-v"], capture_output=True, text=True, check=False)
    found["wrk"] = (
        (wrk_version.stdout or wrk_version.stderr).splitlines()[0].split(" Copyright")[0]
        if (wrk_version.stdout or wrk_version.stderr)
        else "?"
    )
    mariadb = subprocess.run(["mariadb", "--version"], capture_output=True, text=True, check=False)
    found["mariadb_client"] = mariadb.stdout.strip()
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="about a minute and a half")
    parser.add_argument("--out", type=Path, default=RESULTS)
    parser.add_argument(
        "--mysql-url",
        default=os.environ.get("HOLLANG_BENCH_MYSQL_URL", "mysql+pymysql://root@127.0.0.1:3306"),
    )
    parser.add_argument(
        "--only",
        metavar="SUBSTRING",
        action="append",
        help="an ad hoc run: only cells whose key (e.g. test-responses/embedded/c64) contains "
        "this; prints the numbers, writes no results and skips the engine benchmark",
    )
    parser.add_argument(
        "--env",
        metavar="NAME=VALUE",
        action="append",
        default=[],
        help="an extra setting for every service, e.g. HOLLANG_DB_POOL_SIZE=10 (ad hoc runs)",
    )
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("the benchmark needs wrk: apt-get install -y wrk", file=sys.stderr)
        return 2
    budget = Budget.of(args.quick)
    started_at = time.perf_counter()
    args.out.mkdir(parents=True, exist_ok=True)
    runs: dict[str, list[dict[str, Any]]] = {}

    with ExitStack() as stack:
        work = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hollang-bench-")))
        database = stack.enter_context(scratch_mysql_database(args.mysql_url, "bench_"))
        env = {
            "HOLLANG_DATABASE_URL": database,
            "HOLLANG_DATA_DIR": str(work / "data"),
            "HOLLANG_MODEL_PATH": str(work / "original.onnx"),
            **dict(item.split("=", 1) for item in args.env),
        }
        print(f"setting up (database {make_url(database).database}, work dir {work})", flush=True)
        run_cli(
            "model", "import-torch",
            "--state-dict", str(SHARED / "model.pt"),
            "--labels", str(SHARED / "num2content.json"),
            "-o", str(work / "original.onnx"),
            env=env,
        )  # fmt: skip
        run_cli("catalog", "load", str(SHARED / "catalog.json"), env=env)
        files = request_files(work)
        # all servers start at once; each is waited for before anything is measured
        standin = stack.enter_context(
            launched(
                "standin",
                [sys.executable, str(STANDIN), "--port", "{port}", "--quiet"],
                {},
                work / "standin.log",
            )
        )
        serve = [str(BIN / "hollang"), "serve", "--port", "{port}", "--workers", "2"]
        variants = {
            "embedded": {},
            "remote": {"HOLLANG_INFERENCE_URL": standin.url},
            "nobatch": {"HOLLANG_MAX_BATCH_SIZE": "1"},
            "shadow": {"HOLLANG_DATA_DIR": str(work / "data-shadow")},
        }
        prepare_shadow(work / "original.onnx", {**env, **variants["shadow"]}, work)
        servers = {"standin": standin}
        for name, extra in variants.items():
            servers[name] = stack.enter_context(
                launched(name, serve, {**env, **extra}, work / f"{name}.log")
            )
        for name, command in baseline_commands().items():
            servers[name] = stack.enter_context(
                launched(
                    name,
                    command,
                    {"HOLLANG_BENCH_MODEL": env["HOLLANG_MODEL_PATH"], "PYTHONPATH": str(ROOT)},
                    work / f"{name}.log",
                )
            )
        for name, server in servers.items():
            ready_path = "/health/ready" if name in variants else "/health"
            wait_ready(server, ready_path, work)
        files["recommendation"] = recommendation_paths(
            servers["embedded"].url, files["test-responses"], work / "recs.txt", budget.records
        )
        groups = cells()
        if args.only:
            groups = [
                [cell for cell in group if any(part in cell.key for part in args.only)]
                for group in groups
            ]
            groups = [group for group in groups if group]
        print(
            f"warming up; then {budget.rounds} rounds of {sum(map(len, groups))} cells "
            f"x {budget.seconds:.0f} s",
            flush=True,
        )
        for warm in ("embedded", "remote", "nobatch"):  # first requests pay for imports
            measure(Cell("test-responses", warm, 16), servers, files, budget.warmup_seconds)
        measure(Cell("predict", "shadow", 16), servers, files, budget.warmup_seconds)
        shadow_before = shadow_rows(servers["shadow"])
        for warm in ("standin", *BASELINES):
            measure(Cell("predict", warm, 16), servers, files, budget.warmup_seconds)
        for round_index in range(budget.rounds):
            for group in groups:
                shift = round_index % len(group)
                ordered = group[shift:] + group[:shift]
                if round_index % 2:
                    ordered.reverse()
                for cell in ordered:
                    result = measure(cell, servers, files, budget.seconds)
                    runs.setdefault(cell.key, []).append(result)
                    print(
                        f"  round {round_index + 1} {cell.key:<32} "
                        f"{result['throughput_per_s']:8.0f} req/s  p50 {result['p50_ms']:7.2f} ms"
                        f"  p99 {result['p99_ms']:7.2f} ms  errors {sum(result['errors'].values())}",  # noqa: E501
                        flush=True,
                    )
        shadow_scored = shadow_rows(servers["shadow"]) - shadow_before
    if args.only or args.env:
        for key, value in summarise(runs).items():
            print(f"{key}: {json.dumps(value)}")
        return 0
    print("engine micro-benchmark (benchmarks/engine.py), servers stopped", flush=True)
    with tempfile.TemporaryDirectory(prefix="hollang-engine-") as scratch:
        # a full run also refreshes benchmarks/results/engine-*.json; a quick one does not
        engine = engine_benchmark(args.quick, Path(scratch) if args.quick else args.out)

    result = {
        "benchmark": "e2e",
        "quick": args.quick,
        "machine": machine(),
        "versions": versions(),
        "budget": asdict(budget),
        "load_generator": "wrk -t1 (one thread), Lua script benchmarks/wrk/requests.lua",
        "summary": summarise(runs),
        "ratios": ratios(runs),
        "shadow": {
            "version": SHADOW_VERSION,
            "rows_scored": shadow_scored,
            "requests_served": sum(
                r["requests"] for key, rs in runs.items() if "/shadow/" in key for r in rs
            ),
        },
        "runs": runs,
        "engine": engine,
    }
    result["duration_s"] = round(time.perf_counter() - started_at, 1)
    prefix = "bench-quick" if args.quick else "bench"
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%SZ")
    text_json = json.dumps(result, indent=2, ensure_ascii=False) + "\n"
    if not args.quick:  # every full run is kept; a quick run only replaces the last quick one
        (args.out / f"{prefix}-{stamp}.json").write_text(text_json, encoding="utf-8")
    (args.out / f"{prefix}-latest.json").write_text(text_json, encoding="utf-8")
    report = markdown(result, prefix)
    (args.out / f"{prefix}-latest.md").write_text(report + "\n", encoding="utf-8")
    write_plots(result, args.out, prefix)
    print(report)
    print(f"\nwrote {args.out}/{prefix}-latest.{{json,md}} and plots ({result['duration_s']} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
