"""Hostile connections against a real `hollang serve` (server/protocol.py), over raw sockets.

Huge heads, stalled request lines, endless chunked bodies, pipelining floods and too many
connections; and /health/live beside 400 stalled connections and 100 writers. The bounds
are set short here (1 s timeouts) so the suite stays fast; the bounds asserted are "cut
off, not held", never tight timings (benchmarks/hostile.py reports those).
"""

from __future__ import annotations

import json
import re
import socket
import time
from collections.abc import Iterator
from contextlib import suppress
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from harness.traffic import live_under_load
from tests.helpers import serve_process

TIMEOUT = 1.0  # HOLLANG_HEADER_TIMEOUT and HOLLANG_BODY_TIMEOUT of the short server
PIPELINED = 16  # HOLLANG_MAX_PIPELINED_REQUESTS default
LIVE = b"GET /health/live HTTP/1.1\r\nHost: t\r\n\r\n"


def env_for(tmp: Path, **settings: str) -> dict[str, str]:
    return {
        "HOLLANG_DATA_DIR": str(tmp),
        "HOLLANG_DATABASE_URL": f"sqlite:///{tmp / 'hollang.db'}",
        "HOLLANG_LOG_LEVEL": "WARNING",
        **settings,
    }


@pytest.fixture(scope="module")
def short_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    tmp = tmp_path_factory.mktemp("short")
    timeouts = {"HOLLANG_HEADER_TIMEOUT": str(TIMEOUT), "HOLLANG_BODY_TIMEOUT": str(TIMEOUT)}
    with serve_process(env_for(tmp, **timeouts), log_path=tmp / "serve.log") as url:
        parts = urlsplit(url)
        yield parts.hostname or "127.0.0.1", parts.port or 80


def connect(address: tuple[str, int], timeout: float = 20) -> socket.socket:
    sock = socket.create_connection(address)
    sock.settimeout(timeout)
    return sock


def read_until_closed(sock: socket.socket) -> bytes:
    """Everything the server sends until it closes the connection (a reset ends it too)."""
    received = b""
    while True:
        try:
            data = sock.recv(65536)
        except ConnectionResetError:
            return received
        if not data:
            return received
        received += data


def read_response(sock: socket.socket) -> bytes:
    """One whole response (head and Content-Length body) of a kept-alive connection."""
    received = b""
    while b"\r\n\r\n" not in received:
        received += sock.recv(65536)
    head, body = received.split(b"\r\n\r\n", 1)
    length = int(head.lower().split(b"content-length: ", 1)[1].split(b"\r\n", 1)[0])
    while len(body) < length:
        body += sock.recv(65536)
    return head + b"\r\n\r\n" + body


def status_of(response: bytes) -> int:
    return int(response.split(b" ", 2)[1])


def body_of(response: bytes) -> dict[str, object]:
    return json.loads(response.split(b"\r\n\r\n", 1)[1])  # type: ignore[no-any-return]


def test_a_1_mib_header_gets_431_at_once(short_server: tuple[str, int]) -> None:
    with connect(short_server) as sock:
        started = time.monotonic()
        # the server may answer and stop reading before the whole header is sent
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Big: " + b"a" * 2**20)
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert status_of(answer) == 431, answer[:200]
    assert body_of(answer)["code"] == "REQUEST_HEADER_FIELDS_TOO_LARGE"
    assert b"connection: close" in answer.lower()
    assert elapsed < TIMEOUT * 5  # answered on the read that passed the limit, not timed out


def test_a_large_header_in_one_read_gets_431_too(short_server: tuple[str, int]) -> None:
    """40 KiB of headers complete in one read: counted exactly, not only across reads."""
    head = b"GET /health/live HTTP/1.1\r\nHost: t\r\n" + b"X-Pad: " + b"b" * 40_000 + b"\r\n\r\n"
    with connect(short_server) as sock:
        sock.sendall(head)
        answer = read_until_closed(sock)
    assert status_of(answer) == 431


def test_headers_under_the_limit_keep_the_connection(short_server: tuple[str, int]) -> None:
    head = b"GET /health/live HTTP/1.1\r\nHost: t\r\nX-Pad: " + b"c" * 20_000 + b"\r\n\r\n"
    with connect(short_server) as sock:
        for _ in range(3):
            sock.sendall(head)
            answer = read_response(sock)
            assert status_of(answer) == 200
            assert b"connection: close" not in answer.lower()


def test_a_stalled_request_line_gets_408(short_server: tuple[str, int]) -> None:
    with connect(short_server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health/li")
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert status_of(answer) == 408
    assert body_of(answer)["code"] == "REQUEST_TIMEOUT"
    assert elapsed < 10 * TIMEOUT  # cut off by the header timeout, not held


def test_a_trickled_head_is_cut_off_although_bytes_keep_coming(
    short_server: tuple[str, int],
) -> None:
    """The header timeout is a deadline for the whole head, not an idle gap."""
    with connect(short_server) as sock:
        started = time.monotonic()
        sock.sendall(b"GET /health/live HTTP/1.1\r\nHost: t\r\n")
        answer = b""
        while time.monotonic() - started < 10 * TIMEOUT:
            try:
                sock.sendall(b"X-Slow: 1\r\n")
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.1)
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert status_of(answer) == 408
    assert elapsed < 10 * TIMEOUT


def test_a_connection_that_sends_nothing_is_closed(short_server: tuple[str, int]) -> None:
    with connect(short_server) as sock:
        started = time.monotonic()
        assert read_until_closed(sock) == b""
    assert time.monotonic() - started < 10 * TIMEOUT


def test_an_endless_chunked_body_gets_408(short_server: tuple[str, int]) -> None:
    head = (
        b"POST /test-responses HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        b"Transfer-Encoding: chunked\r\n\r\n"
    )
    with connect(short_server) as sock:
        started = time.monotonic()
        sock.sendall(head)
        while time.monotonic() - started < 10 * TIMEOUT:
            try:
                sock.sendall(b"1\r\n \r\n")  # a space: valid JSON padding, forever
            except (BrokenPipeError, ConnectionResetError):
                break
            time.sleep(0.05)
        answer = read_until_closed(sock)
        elapsed = time.monotonic() - started
    assert status_of(answer) == 408
    assert "body" in str(body_of(answer)["message"])
    assert elapsed < 10 * TIMEOUT


def test_a_keep_alive_client_outlives_the_timeouts(short_server: tuple[str, int]) -> None:
    """Deadlines are per request: one connection used for longer than both timeouts, with
    pauses between requests, keeps being served."""
    with connect(short_server) as sock:
        started = time.monotonic()
        served = 0
        while time.monotonic() - started < 3 * TIMEOUT:
            sock.sendall(LIVE)
            assert status_of(read_response(sock)) == 200
            served += 1
            time.sleep(0.2)
    assert served >= 10


def test_a_few_pipelined_requests_are_all_answered(short_server: tuple[str, int]) -> None:
    with connect(short_server) as sock:
        sock.sendall(LIVE * 8)
        received = b""
        while received.count(b"HTTP/1.1 200") < 8:
            received += sock.recv(65536)
        sock.sendall(LIVE)  # still open and serving
        assert status_of(read_response(sock)) == 200


def test_a_pipelining_flood_is_bounded(short_server: tuple[str, int]) -> None:
    with connect(short_server) as sock:
        with suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(LIVE * 20_000)  # about 800 KB
        answer = read_until_closed(sock)
    statuses = re.findall(rb"HTTP/1\.1 (\d{3}) ", answer)
    # the one running and the queue behind it, every answer delivered (the server lingers
    # rather than resetting over the unread flood); the last says it closes
    assert statuses == [b"200"] * (PIPELINED + 1), (len(answer), statuses, answer[-300:])
    assert answer.lower().count(b"connection: close") == 1


@pytest.fixture(scope="module")
def limited_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, int]]:
    tmp = tmp_path_factory.mktemp("limited")
    with serve_process(
        env_for(tmp, HOLLANG_MAX_CONNECTIONS="20"), log_path=tmp / "serve.log"
    ) as url:
        parts = urlsplit(url)
        yield parts.hostname or "127.0.0.1", parts.port or 80


def test_connections_past_the_limit_get_503(limited_server: tuple[str, int]) -> None:
    held = [connect(limited_server) for _ in range(20)]
    try:
        time.sleep(0.2)  # let the server accept them all
        with connect(limited_server) as extra:
            extra.sendall(LIVE)
            answer = read_until_closed(extra)
        assert status_of(answer) == 503
        assert body_of(answer)["code"] == "SERVICE_UNAVAILABLE"
        assert b"retry-after: 1" in answer.lower()
        for sock in held[:3]:  # the ones under the limit are served
            sock.sendall(LIVE)
            assert status_of(read_response(sock)) == 200
    finally:
        for sock in held:
            sock.close()
    deadline = time.monotonic() + 10
    while True:  # once they are gone, new connections are served again
        with connect(limited_server) as sock:
            sock.sendall(LIVE)
            if status_of(read_response(sock)) == 200:
                break
        assert time.monotonic() < deadline
        time.sleep(0.1)


def test_health_live_beside_stalled_connections_and_writers(tmp_path: Path) -> None:
    """400 stalled connections and 100 concurrent writers (in their own process, so the
    prober measures the server): /health/live and /health/ready (200: the database is
    fine, only busy) answer within 1 s every time."""
    with serve_process(env_for(tmp_path), log_path=tmp_path / "serve.log") as url:
        result = live_under_load(url, stalled=400, writers=100, seconds=4)
    assert result["writes"].get("200", 0) > 0, result
    for probe in ("live", "ready"):
        assert result[probe]["n"] >= 5, result
        assert result[probe]["max_ms"] < 1000, result
