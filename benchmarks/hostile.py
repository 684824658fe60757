"""Hostile traffic against a real `hollang serve` (SQLite in a temporary folder): the timings
tests/security/test_hostile_traffic.py proves only as "bounded, not hung".

    .venv/bin/python benchmarks/hostile.py            # the default bounds (10 s + 15 s)
    .venv/bin/python benchmarks/hostile.py --quick    # 2 s timeouts, 3 s load phase

Reports: time to the 431 of a 1 MiB header; time until a stalled request line and an
endless chunked body are cut; the worker's RSS before and after 8 connections each pipeline
~3.7 MB of `GET /tests`; `/health/live` and `/health/ready` latency beside 400 stalled
connections and 100 concurrent writers (the writers run in their own process, so the
prober measures the server, not its own event loop); and what a healthy keep-alive
`GET /health/live` costs with this protocol and with uvicorn's stock httptools one: through
the whole app with wrk, and through the protocol alone in-process (interleaved rounds both).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from urllib.parse import urlsplit

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.scratch import free_port, stop_process, wait_until_ready

LIVE = b"GET /health/live HTTP/1.1\r\nHost: bench\r\n\r\n"
SUBMISSION = {
    "user": {"name": "벤치"},
    "testResponseDetails": [{"questionNumber": n, "answerNumber": 1 + n % 2} for n in range(1, 13)],
}


@contextmanager
def server(data_dir: Path, env: dict[str, str], command: list[str]) -> Iterator[tuple[str, int]]:
    """Run `command` (a server on $PORT) until the block ends; yield its pid and URL."""
    port = free_port()
    full_env = {
        **os.environ,
        "HOLLANG_DATA_DIR": str(data_dir),
        "HOLLANG_LOG_LEVEL": "WARNING",
        "PORT": str(port),
        **env,
    }
    args = [arg.replace("$PORT", str(port)) for arg in command]
    log_path = data_dir / "serve.log"
    with open(log_path, "a") as log:
        process = subprocess.Popen(args, env=full_env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            wait_until_ready(process, f"{url}/health/ready", log=log_path)
            yield url, process.pid
        finally:
            stop_process(process)


def hollang_serve() -> list[str]:
    hollang = str(Path(sys.executable).with_name("hollang"))
    return [hollang, "serve", "--host", "127.0.0.1", "--port", "$PORT"]


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


def until_closed(sock: socket.socket) -> bytes:
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            return received
        if not data:
            return received
        received += data


def time_431(url: str) -> tuple[float, str]:
    with socket.create_connection(address(url), timeout=60) as sock:
        started = time.perf_counter()
        with suppress(OSError):
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: b\r\nX-Big: " + b"a" * 2**20)
        answer = until_closed(sock)
        return time.perf_counter() - started, answer.split(b"\r\n", 1)[0].decode()


def time_stalled_line(url: str) -> tuple[float, str]:
    with socket.create_connection(address(url), timeout=120) as sock:
        started = time.perf_counter()
        sock.sendall(b"GET /health/li")
        answer = until_closed(sock)
        return time.perf_counter() - started, answer.split(b"\r\n", 1)[0].decode()


def time_endless_chunked(url: str) -> tuple[float, str]:
    head = (
        b"POST /test-responses HTTP/1.1\r\nHost: b\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with socket.create_connection(address(url), timeout=120) as sock:
        started = time.perf_counter()
        sock.sendall(head)
        sock.setblocking(False)
        answer = b""
        while time.perf_counter() - started < 120:
            try:
                sock.send(b"1\r\n \r\n")
            except BlockingIOError:
                pass
            except OSError:
                break
            try:
                data = sock.recv(65536)
            except BlockingIOError:
                time.sleep(0.05)
                continue
            except OSError:
                break
            if not data:
                break
            answer += data
        return time.perf_counter() - started, answer.split(b"\r\n", 1)[0].decode()


def rss_mib(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def pipelining_rss(url: str, pid: int, connections: int = 8, megabytes: float = 3.7) -> dict:  # type: ignore[type-arg]
    request = b"GET /tests HTTP/1.1\r\nHost: b\r\n\r\n"
    payload = request * int(megabytes * 1e6 / len(request))
    before = rss_mib(pid)
    socks = [socket.create_connection(address(url), timeout=30) for _ in range(connections)]
    answered = 0
    for sock in socks:
        with suppress(OSError):
            sock.sendall(payload)
    peak = rss_mib(pid)
    for sock in socks:
        answered += until_closed(sock).count(b"HTTP/1.1 200")
        sock.close()
        peak = max(peak, rss_mib(pid))
    time.sleep(0.5)
    return {
        "rss_before_mib": round(before, 1),
        "rss_peak_mib": round(peak, 1),
        "rss_after_mib": round(rss_mib(pid), 1),
        "requests_sent": connections * (len(payload) // len(request)),
        "answered": answered,
    }


async def write_for(url: str, writers: int, seconds: float) -> dict[str, int]:
    """`writers` concurrent POST /test-responses loops for `seconds`; counts by status."""
    limits = httpx.Limits(max_connections=writers, max_keepalive_connections=writers)
    statuses: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, timeout=30, limits=limits) as http:
        stop = time.monotonic() + seconds

        async def writer() -> None:
            while time.monotonic() < stop:
                try:
                    status = str((await http.post("/test-responses", json=SUBMISSION)).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                statuses[status] = statuses.get(status, 0) + 1

        await asyncio.gather(*(writer() for _ in range(writers)))
    return statuses


@contextmanager
def writers_process(url: str, writers: int, seconds: float) -> Iterator[subprocess.Popen[str]]:
    """The writers in their own process (`hostile.py writers`), so they do not share the
    prober's interpreter and event loop."""
    process = subprocess.Popen(
        [sys.executable, __file__, "writers", url, str(writers), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        yield process
    finally:
        if process.poll() is None:
            process.wait(timeout=seconds + 60)


def health_latencies(url: str, seconds: float, interval: float = 0.05) -> dict[str, list[float]]:
    """`GET /health/live` and `/health/ready` in turn, each on a fresh connection (what a
    load balancer does); both must answer 200."""
    latencies: dict[str, list[float]] = {"live": [], "ready": []}
    stop = time.monotonic() + seconds
    with httpx.Client(base_url=url, timeout=30) as http:
        while time.monotonic() < stop:
            for name in latencies:
                started = time.perf_counter()
                http.get(f"/health/{name}", headers={"Connection": "close"}).raise_for_status()
                latencies[name].append(time.perf_counter() - started)
            time.sleep(interval)
    return latencies


def live_under_load(url: str, stalled: int, writers: int, seconds: float) -> dict:  # type: ignore[type-arg]
    socks = [socket.create_connection(address(url), timeout=30) for _ in range(stalled)]
    for sock in socks:
        sock.sendall(b"GET /health/li")
    try:
        with writers_process(url, writers, seconds) as process:
            time.sleep(min(1.0, seconds / 3))  # let the writers get going
            latencies = health_latencies(url, seconds * 0.6)
            out, _ = process.communicate(timeout=seconds + 60)
    finally:
        for sock in socks:
            sock.close()
    return {
        **{name: summary(samples) for name, samples in latencies.items()},
        "writes": json.loads(out or "{}"),
    }


def summary(samples: list[float]) -> dict[str, float]:
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50_ms": round(statistics.median(ordered) * 1000, 2),
        "p99_ms": round(ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))] * 1000, 2),
        "max_ms": round(ordered[-1] * 1000, 2),
    }


def stock_vs_guarded(data_dir: Path, rounds: int, seconds: int) -> dict[str, list[float]]:
    """Requests/s of a keep-alive `GET /health/live` (wrk, 1 thread, 16 connections) with
    uvicorn's httptools protocol and with ours, same app and loop, rounds interleaved."""
    wrk = shutil.which("wrk")
    if wrk is None:
        return {"skipped": []}
    launch = (
        "import sys, uvicorn; from server.protocol import GuardedHttpToolsProtocol as G; "
        "uvicorn.run('server.app:create_app', factory=True, host='127.0.0.1', "
        "port=int(sys.argv[2]), loop='uvloop', access_log=False, log_config=None, "
        "http=G if sys.argv[1] == 'guarded' else 'httptools')"
    )
    results: dict[str, list[float]] = {"stock": [], "guarded": []}
    for _ in range(rounds):
        for variant in ("stock", "guarded"):
            command = [sys.executable, "-c", launch, variant, "$PORT"]
            with server(data_dir, {}, command) as (url, _pid):
                run = subprocess.run(
                    [wrk, "-t1", "-c16", f"-d{seconds}s", f"{url}/health/live"],
                    capture_output=True,
                    text=True,
                    check=True,
                )
                match = re.search(r"Requests/sec:\s+([\d.]+)", run.stdout)
                results[variant].append(float(match.group(1)) if match else float("nan"))
    return results


class _Transport(asyncio.Transport):
    """Enough of a socket for the protocol: sets `answered` when a response ends."""

    def __init__(self) -> None:
        super().__init__()
        self.answered = asyncio.Event()

    def write(self, data: bytes | bytearray | memoryview) -> None:
        if bytes(data).endswith(b"alive"):
            self.answered.set()

    def get_extra_info(self, name: str, default: object = None) -> object:
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 50000)}.get(name)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    def close(self) -> None:
        pass


async def _alive(scope: dict, receive: object, send: object) -> None:  # type: ignore[type-arg]
    headers = [(b"content-type", b"text/plain"), (b"content-length", b"5")]
    await send({"type": "http.response.start", "status": 200, "headers": headers})  # type: ignore[operator]
    await send({"type": "http.response.body", "body": b"alive"})  # type: ignore[operator]


def protocol_cost(rounds: int = 12, requests: int = 20_000) -> dict[str, float]:
    """CPU microseconds per keep-alive request through the protocol alone (a trivial ASGI
    app, a fake transport, uvloop), uvicorn's httptools protocol and ours, rounds
    interleaved in alternating order: median and minimum of the rounds. No network and no
    app, so only the protocol differs."""
    import uvloop
    from uvicorn.config import Config
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol
    from uvicorn.server import ServerState

    from server.protocol import GuardedHttpToolsProtocol

    async def run(cls: type[HttpToolsProtocol]) -> float:
        config = Config(app=_alive, lifespan="off", log_config=None, access_log=False)
        protocol = cls(config, ServerState(), {})
        transport = _Transport()
        protocol.connection_made(transport)
        started = time.process_time()
        for _ in range(requests):
            transport.answered.clear()
            protocol.data_received(LIVE)
            await transport.answered.wait()
        elapsed = time.process_time() - started
        protocol.connection_lost(None)
        return elapsed / requests * 1e6

    variants: list[tuple[str, type[HttpToolsProtocol]]] = [
        ("stock", HttpToolsProtocol),
        ("guarded", GuardedHttpToolsProtocol),
    ]
    samples: dict[str, list[float]] = {name: [] for name, _ in variants}
    for round_ in range(rounds):
        for name, cls in variants if round_ % 2 else variants[::-1]:
            samples[name].append(uvloop.run(run(cls)))
    return {
        f"{name}_{stat.__name__}_us": round(stat(values), 2)
        for name, values in samples.items()
        for stat in (statistics.median, min)
    }


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "writers":
        url, writers, seconds = sys.argv[2], int(sys.argv[3]), float(sys.argv[4])
        print(json.dumps(asyncio.run(write_for(url, writers, seconds))))
        return
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="2 s timeouts, 3 s load phase")
    parser.add_argument("--seconds", type=float, help="load phase length (default 10, quick 3)")
    parser.add_argument("--wrk-rounds", type=int, default=3)
    parser.add_argument("--wrk-seconds", type=int, default=3)
    args = parser.parse_args()
    seconds = args.seconds or (3.0 if args.quick else 10.0)
    env = {"HOLLANG_HEADER_TIMEOUT": "2", "HOLLANG_BODY_TIMEOUT": "2"} if args.quick else {}
    report: dict[str, object] = {"settings": env or "defaults (10 s head, 15 s more for body)"}
    with tempfile.TemporaryDirectory(prefix="hollang-hostile-") as tmp:
        data_dir = Path(tmp)
        with server(data_dir, env, hollang_serve()) as (url, pid):
            took, status = time_431(url)
            report["header_1mib"] = {"seconds": round(took, 4), "status": status}
            took, status = time_stalled_line(url)
            report["stalled_request_line"] = {"seconds": round(took, 2), "status": status}
            took, status = time_endless_chunked(url)
            report["endless_chunked_body"] = {"seconds": round(took, 2), "status": status}
            report["pipelining_8x3.7MB"] = pipelining_rss(url, pid)
        # the stalled connections must outlive the load phase: default timeouts here
        with server(data_dir, {}, hollang_serve()) as (url, _pid):
            report["live_beside_400_stalled_100_writers"] = live_under_load(
                url, stalled=400, writers=100, seconds=seconds
            )
        report["keepalive_live_requests_per_s"] = stock_vs_guarded(
            data_dir, args.wrk_rounds, args.wrk_seconds
        )
    report["protocol_alone_per_request"] = protocol_cost()
    print(json.dumps(report, indent=2, ensure_ascii=False))


if __name__ == "__main__":
    main()
