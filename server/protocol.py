"""The HTTP protocol of `hollang serve`: uvicorn's httptools protocol, bounded per connection.

uvicorn's own protocol (0.54, `uvicorn/protocols/http/httptools_impl.py`) holds whatever a
client sends for as long as it likes:

- Header bytes pile up inside httptools (`_current_header_value += val`, once per read), so
  a trickled 64 MiB header costs quadratic copying and its memory, and is then accepted.
  The protocol never sees `on_header_field`/`on_header_value` (the parser keeps them and
  calls `on_header` with the whole header), so the bound counts the bytes read while a
  request's head is incomplete: the first read past `max_header_bytes` answers 431.
- No timer runs between a connection's first byte and its request's end: half a request
  line, or a chunked body that never ends, is held forever. Here a head must complete
  within `header_timeout` of its first byte (of the connection's opening, for the first
  one), and the body within `body_timeout` more; past that the client gets a 408 when no
  response of its is under way, else the connection is closed.
- Pipelined requests are parsed a whole read (256 KiB under uvloop) at a time, each
  becoming a queued request cycle, and reading resumes after every response even while
  the queue is long, so one connection can queue without bound. Here the request past
  `max_pipelined` stops the parsing: the queued ones are answered, the last with
  `Connection: close`, and the rest is dropped (a client retries those on a new one).
- `limit_concurrency` counts connections and running requests, and only when a request's
  headers are complete: an idle connection past it is held like any other, and the 503 is
  plain text. Here a connection past `max_connections` is answered 503 (the JSON envelope,
  `Retry-After: 1`) on its first read, or closed after a second if it sends nothing.

What a healthy keep-alive request pays is a few attribute reads and writes and one clock
read: deadlines are checked by one sweep per worker every `tick` seconds, never by a timer
per request, and the phase is read from uvicorn's own state only when a deadline passes
(README, "Hostile traffic").

After a 4xx/5xx of its own, and after the last answer of a refused pipeline, the protocol
half-closes and reads (and drops) what is still coming for a second before closing, so the
client reads every answer instead of a reset.
"""

from __future__ import annotations

import asyncio
import functools
import json
import weakref
from dataclasses import dataclass
from http import HTTPStatus
from typing import TYPE_CHECKING, Any

import httptools
from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol

if TYPE_CHECKING:
    from uvicorn.config import Config
    from uvicorn.server import ServerState

    from server.settings import Settings

LINGER = 1.0  # seconds a refused connection is drained before it is closed


@dataclass(frozen=True)
class ConnectionLimits:
    max_header_bytes: int
    header_timeout: float
    body_timeout: float
    max_pipelined: int
    max_connections: int

    @classmethod
    def from_settings(cls, settings: Settings) -> ConnectionLimits:
        return cls(
            max_header_bytes=settings.max_header_bytes,
            header_timeout=settings.header_timeout,
            body_timeout=settings.body_timeout,
            max_pipelined=settings.max_pipelined_requests,
            max_connections=settings.max_connections,
        )

    @property
    def tick(self) -> float:
        """How often deadlines are checked: a quarter of the shortest timeout, 50 ms..1 s."""
        return min(1.0, max(0.05, min(self.header_timeout, self.body_timeout) / 4))


@functools.cache
def worker_limits() -> ConnectionLimits:
    """Read once per process: uvicorn builds the protocol itself (a class named by reference
    in the config, which workers receive pickled), so the settings cannot be passed in."""
    from server.settings import Settings

    return ConnectionLimits.from_settings(Settings())


class _Refused(Exception):
    """Raised from a parser callback to stop parsing this connection's input."""


class _Sweeper:
    """One per worker: closes or answers the connections whose deadline has passed."""

    def __init__(self, loop: asyncio.AbstractEventLoop, connections: set[Any], tick: float):
        self.loop = loop
        self.connections = connections
        self.tick = tick
        loop.call_later(tick, self.sweep)

    def sweep(self) -> None:
        now = self.loop.time()
        for connection in list(self.connections):
            deadline = getattr(connection, "deadline", None)
            if deadline is not None and deadline <= now:
                connection.expire()
        self.loop.call_later(self.tick, self.sweep)


_sweepers: weakref.WeakKeyDictionary[ServerState, _Sweeper] = weakref.WeakKeyDictionary()


def _answer(status: HTTPStatus, message: str, extra: bytes = b"") -> bytes:
    body = json.dumps({"code": status.name, "message": message}).encode()
    return b"".join(
        (
            b"HTTP/1.1 %d %s\r\n" % (status.value, status.phrase.encode()),
            b"content-type: application/json\r\ncontent-length: %d\r\n" % len(body),
            extra,
            b"connection: close\r\n\r\n",
            body,
        )
    )


class GuardedHttpToolsProtocol(HttpToolsProtocol):
    """uvicorn's httptools protocol with the bounds above; select with `Config(http=...)`.

    Only `data_received` and `on_message_begin` run per request, both replacing uvicorn's
    (same code plus a few attribute writes) rather than wrapping them; the phase a request
    is in is read from uvicorn's own state when a deadline passes (`expire`)."""

    def __init__(
        self,
        config: Config,
        server_state: ServerState,
        app_state: dict[str, Any],
        _loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        super().__init__(config, server_state, app_state, _loop)
        self.limits = limits = worker_limits()
        self._max_head = limits.max_header_bytes
        self._max_pipelined = limits.max_pipelined
        self._header_timeout = limits.header_timeout
        self.deadline: float | None = None  # when the current phase expires (the sweep)
        self._began = 0.0  # loop time of the current request's first byte
        self._head_read = 0  # bytes read for the current request's unfinished head
        self._pipeline_full = False
        self._refused = False  # nothing more is parsed on this connection
        self._over_limit = False

    # -- connection ---------------------------------------------------------------------

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        if self.server_state not in _sweepers:
            _sweepers[self.server_state] = _Sweeper(self.loop, self.connections, self.limits.tick)
        if len(self.connections) > self.limits.max_connections:
            self._over_limit = True
            self.deadline = self.loop.time() + min(LINGER, self.limits.header_timeout)
        else:  # a connection that never sends its first request is a stalled request line
            self.deadline = self.loop.time() + self._header_timeout

    def data_received(self, data: bytes) -> None:
        if self._refused:
            return  # draining after a refusal
        if self._over_limit:
            self._refuse(
                HTTPStatus.SERVICE_UNAVAILABLE,
                "Too many connections; retry shortly.",
                b"retry-after: 1\r\n",
            )
            return
        self._unset_keepalive_if_required()
        scope = self.scope
        if len(data) + self._head_read > self._max_head and not self._in_body():
            # A large read that starts in a head (rare): measure that head before parsing.
            end = data.find(b"\r\n\r\n")
            if self._head_read + (len(data) if end < 0 else end + 4) > self._max_head:
                self._refuse(*self._headers_too_large())
                return
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            if self._should_upgrade():
                self.handle_websocket_upgrade()
            else:
                self._unsupported_upgrade_warning()
            return
        except httptools.HttpParserError:
            if self._pipeline_full:
                self._stop_after_queued()
            else:
                self.logger.warning("Invalid HTTP request received.")
                self.send_400_response("Invalid HTTP request received.")
            return
        cycle = self.cycle
        if cycle is None or cycle.scope is not self.scope:  # a head is still incomplete
            if self.scope is scope:  # the same one as before this read: all of it was head
                self._head_read += len(data)
            if self._head_read > self._max_head:
                self._refuse(*self._headers_too_large())

    def _in_body(self) -> bool:
        cycle = self.cycle
        return cycle is not None and cycle.scope is self.scope and cycle.more_body

    def expire(self) -> None:
        """Called by the sweep once `deadline` has passed: what to do depends on where the
        connection's current request is."""
        self.deadline = None
        cycle = self.cycle
        if self._refused or self._over_limit or self.scope is None:
            self.transport.close()  # lingered enough, or never sent a byte: nobody to answer
        elif cycle is None or cycle.scope is not self.scope:
            self._refuse(
                HTTPStatus.REQUEST_TIMEOUT,
                f"The request head did not arrive within {self._header_timeout:g} s.",
            )
        elif cycle.more_body:  # the body is still arriving
            whole = self._began + self._header_timeout + self.limits.body_timeout
            if self.loop.time() < whole:
                self.deadline = whole
            elif cycle.response_started or self.pipeline:
                self.transport.close()
            else:
                cycle.disconnected = True  # the app's receive() returns disconnect, send is a no-op
                cycle.message_event.set()
                self._refuse(
                    HTTPStatus.REQUEST_TIMEOUT,
                    f"The request body did not arrive within {self.limits.body_timeout:g} s "
                    "of its head.",
                )

    # -- parser callbacks -----------------------------------------------------------------

    def on_message_begin(self) -> None:
        """uvicorn's, plus the pipeline bound and the request's first-byte deadline."""
        if len(self.pipeline) >= self._max_pipelined:
            self._pipeline_full = True
            raise _Refused
        self._began = now = self.loop.time()
        self.deadline = now + self._header_timeout
        self._head_read = 0
        self.url = b""
        self.expect_100_continue = False
        self.headers = []
        self.scope = {  # type: ignore[typeddict-item]
            "type": "http",
            "asgi": {"version": self.asgi_version, "spec_version": "2.3"},
            "http_version": "1.1",
            "server": self.server,
            "client": self.client,
            "scheme": self.scheme,  # type: ignore[typeddict-item]
            "root_path": self.root_path,
            "headers": self.headers,
            "state": self.app_state.copy(),
        }

    # -- refusals -------------------------------------------------------------------------

    def _headers_too_large(self) -> tuple[HTTPStatus, str]:
        return (
            HTTPStatus.REQUEST_HEADER_FIELDS_TOO_LARGE,
            f"The request head is larger than {self._max_head} bytes.",
        )

    def _refuse(self, status: HTTPStatus, message: str, extra: bytes = b"") -> None:
        """Answer, half-close, and drain for LINGER seconds before closing; or just close
        while an earlier request of this connection is still being answered."""
        self._refused = True
        cycle = self.cycle
        answering = cycle is not None and not cycle.response_complete and not cycle.disconnected
        if self.pipeline or answering or self.transport.is_closing():
            self.transport.close()
            return
        self.transport.write(_answer(status, message, extra))
        self._linger()

    def _linger(self) -> None:
        """Half-close, and drop what still comes for LINGER seconds before closing (the
        sweep closes). Closing a socket with unread input resets the connection, and the
        reset discards answers the kernel has not sent yet: the client would lose them."""
        if self.transport.can_write_eof():
            self.transport.write_eof()
        self.flow.resume_reading()
        self.deadline = self.loop.time() + LINGER

    def _stop_after_queued(self) -> None:
        """Too many pipelined requests: answer the queued ones, the last with `Connection:
        close`, and then linger instead of closing at once (the rest of the flood is still
        arriving, unread)."""
        self._refused = True
        self.deadline = None
        newest, _app = self.pipeline[0]  # appendleft: index 0 is the newest
        newest.keep_alive = False
        newest.transport = _LingeringTransport(self)  # type: ignore[assignment]


class _LingeringTransport:
    """The transport as the last queued request of a refused pipeline sees it: the close
    uvicorn makes after a `Connection: close` response lingers (`_linger`) instead."""

    def __init__(self, protocol: GuardedHttpToolsProtocol) -> None:
        self._protocol = protocol
        self._transport = protocol.transport

    def write(self, data: bytes) -> None:
        self._transport.write(data)

    def is_closing(self) -> bool:
        return self._transport.is_closing()

    def close(self) -> None:
        if not self._transport.is_closing():
            self._protocol._linger()
