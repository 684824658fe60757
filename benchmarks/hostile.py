"""Hostile traffic against a real `hollang serve` (SQLite in a temporary folder): the timings
tests/server/test_hostile_traffic.py proves only as "bounded, not hung".

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

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.scratch import free_port, stop_process, wait_until_ready
from harness.traffic import address, live_under_load

LIVE = b"GET /health/live HTTP/1.1\r\nHost: bench\r\n\r\n"


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
