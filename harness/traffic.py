"""Hostile traffic beside real work: stalled connections, many concurrent writers, and a
prober timing `/health/live` and `/health/ready` through it (what a load balancer sees).

    python -m harness.traffic URL WRITERS SECONDS   # the writers alone, counts as JSON

The writers run in their own process so they do not share the prober's interpreter and
event loop; `tests/server/test_hostile_traffic.py` and `benchmarks/hostile.py` use it.
"""

from __future__ import annotations

import asyncio
import json
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from urllib.parse import urlsplit

import httpx

SUBMISSION = {
    "user": {"name": "벤치"},
    "testResponseDetails": [{"questionNumber": n, "answerNumber": 1 + n % 2} for n in range(1, 13)],
}


def address(url: str) -> tuple[str, int]:
    parts = urlsplit(url)
    return parts.hostname or "127.0.0.1", parts.port or 80


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
    """The writers in their own process (`python -m harness.traffic`), so they do not share the
    prober's interpreter and event loop."""
    process = subprocess.Popen(
        [sys.executable, "-m", "harness.traffic", url, str(writers), str(seconds)],
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


if __name__ == "__main__":
    target, count, duration = sys.argv[1], int(sys.argv[2]), float(sys.argv[3])
    print(json.dumps(asyncio.run(write_for(target, count, duration))))
