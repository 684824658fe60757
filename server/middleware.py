"""The HTTP middleware of the app: the request edge (request id, security headers, metrics,
access log) and the request body cap. Both are pure ASGI (no `BaseHTTPMiddleware`): they
add no task per request and never buffer a response.

Order, outermost first: the edge, CORS, body cap, the app's own error handling. So every
response, a 413 and a 500 included, carries the request id and the security headers, is
logged once and is counted once.
"""

from __future__ import annotations

import logging
import re
import time
import uuid
from http import HTTPStatus
from typing import Any

from asgi_correlation_id import correlation_id
from fastapi import FastAPI
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from server import metrics
from server.errors import error_response
from server.logs import log_request
from server.settings import Settings
from server.uploads import UPLOAD_FRAMING

log = logging.getLogger("hollang.requests")
REQUEST_ID_HEADER = "X-Request-ID"
_SANE_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:-]{0,127}")
UPLOAD_PREFIX = "/admin/"


def sane_request_id(value: str) -> bool:
    """A client's id is echoed into logs and headers: only short, printable tokens."""
    return _SANE_ID.fullmatch(value) is not None


class BodyTooLarge(HTTPException):
    """Raised from `receive` when a body without (or beyond) its Content-Length grows past
    the cap. An HTTPException, so FastAPI's body reading passes it on untouched and the
    app's handler answers it in the error envelope."""

    def __init__(self, limit: int) -> None:
        super().__init__(413, f"The request body is larger than {limit} bytes.")


class BodySizeLimit:
    """Caps request bodies: `limit` bytes, `upload_limit` under /admin/ (model and image
    uploads, whose routes also check their own, exact caps).

    A declared Content-Length over the cap is answered at once, before the app runs; a
    chunked body is counted as it arrives and stops the request at the first byte over.
    """

    def __init__(self, app: ASGIApp, limit: int, upload_limit: int) -> None:
        self.app = app
        self.limit = limit
        self.upload_limit = upload_limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.upload_limit if path.startswith(UPLOAD_PREFIX) else self.limit
        declared = b""
        for name, value in scope["headers"]:
            if name == b"content-length":
                declared = value
                break
        if declared.isdigit() and int(declared) > limit:
            await self._too_large(limit)(scope, receive, send)
            return
        received = 0
        started = False

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise BodyTooLarge(limit)
            return message

        async def tracking_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counting_receive, tracking_send)
        except BodyTooLarge:  # read outside a route (none does today): answer it here
            if started:
                raise
            await self._too_large(limit)(scope, receive, send)

    @staticmethod
    def _too_large(limit: int) -> ASGIApp:
        message = f"The request body is larger than {limit} bytes."
        return error_response(HTTPStatus.REQUEST_ENTITY_TOO_LARGE, message)


API_CSP = "default-src 'none'; frame-ancestors 'none'"
# The documentation pages load only this service's files (server/routes/docs.py). /docs
# (Swagger UI) needs nothing inline; its icons are data: images in its stylesheet. ReDoc
# styles itself with styled-components, which inserts <style> elements at run time:
# without style-src 'unsafe-inline' Chromium blocks them and ReDoc fails to render ("An
# error occurred ... #17"); a nonce would need a per-request policy and page, for a
# page whose scripts are all 'self' anyway. Its search index runs in a blob: worker.
DOCS_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
    "connect-src 'self'; base-uri 'none'; frame-ancestors 'none'"
)
REDOC_CSP = (
    "default-src 'none'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
    "img-src 'self' data:; connect-src 'self'; worker-src blob:; base-uri 'none'; "
    "frame-ancestors 'none'"
)
PAGE_CSP = {"/docs": DOCS_CSP, "/docs/oauth2-redirect": DOCS_CSP, "/redoc": REDOC_CSP}
SECURITY_HEADERS = (
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Resource-Policy", "same-site"),
    # Answers are per user and change: no shared or browser cache keeps them, unless a
    # route says otherwise (it sets its own Cache-Control).
    ("Cache-Control", "no-store"),
)


def _raw(headers: tuple[tuple[str, str], ...]) -> tuple[tuple[bytes, bytes], ...]:
    return tuple((name.lower().encode(), value.encode()) for name, value in headers)


_API_HEADERS = _raw((*SECURITY_HEADERS, ("Content-Security-Policy", API_CSP)))
_PAGE_HEADERS = {
    path: _raw((*SECURITY_HEADERS, ("Content-Security-Policy", policy)))
    for path, policy in PAGE_CSP.items()
}
_REQUEST_ID = REQUEST_ID_HEADER.lower().encode()


def route_of(scope: Scope) -> str:
    """The route template (`/recommendations/{recommendation_id}`), never the raw path, so
    the number of label values is bounded by the number of routes."""
    route: Any = scope.get("route")
    template = getattr(route, "path", None)
    return template if isinstance(template, str) else metrics.UNMATCHED


class RequestEdge:
    """What every request gets on its way in and out, in one pure ASGI layer: its request
    id, the security headers, its metrics and its one access-log line.

    One layer, not four (asgi-correlation-id's middleware, an observer, a header setter):
    each layer of ASGI wrapping costs a coroutine frame, a `send` closure and a header
    parse per request, and on a request whose model run is 7 µs those were most of the
    middleware's cost (README, Benchmarks). Headers are handled as the raw byte pairs ASGI
    carries, never parsed into `Headers` objects.

    - The id is the client's `X-Request-ID` when sane (`sane_request_id`), else a new
      uuid4 hex. It is put in asgi-correlation-id's context variable, which the log filter
      reads, so every log line of the request carries it, and it is returned in the
      response.
    - Security headers are added unless the response set that header itself.
    - The request is counted and timed by method, route template and status, and logged.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        request_id = None
        for name, value in scope["headers"]:
            if name == _REQUEST_ID:
                request_id = value.decode("latin-1")
                break
        if request_id is None or not sane_request_id(request_id):
            if request_id is not None:
                log.warning("replaced an invalid X-Request-ID with a generated one")
            request_id = uuid.uuid4().hex
        correlation_id.set(request_id)
        id_header = (_REQUEST_ID, request_id.encode("latin-1"))
        extra = _PAGE_HEADERS.get(scope["path"], _API_HEADERS)
        status = HTTPStatus.INTERNAL_SERVER_ERROR.value  # what the server sends if we raise

        async def edge_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                headers = list(message.get("headers", ()))
                present = {name.lower() for name, _ in headers}
                headers.extend(pair for pair in extra if pair[0] not in present)
                headers.append(id_header)
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, edge_send)
        finally:
            seconds = time.perf_counter() - started
            route = route_of(scope)
            metrics.observe_request(scope["method"], route, status, seconds)
            client = scope.get("client")
            log_request(
                scope["method"],
                route,
                scope["path"],
                status,
                seconds,
                client[0] if client else None,
            )


def install_body_limit(app: FastAPI, settings: Settings) -> None:
    """Call before CORS is added, so a 413 still carries the CORS headers."""
    largest_file = max(settings.max_model_bytes, settings.max_image_bytes)
    upload_limit = max(largest_file + UPLOAD_FRAMING, settings.max_body_bytes)
    app.add_middleware(BodySizeLimit, limit=settings.max_body_bytes, upload_limit=upload_limit)


def install_outer_middleware(app: FastAPI) -> None:
    """Call after every other middleware: this one wraps them all (last added is outermost)."""
    app.add_middleware(RequestEdge)
