"""The error envelope and every exception handler, in one place.

Every error body is ``{"code": <HTTP status name>, "message": <text>}``; validation errors
add ``"errors": [{"field", "message", "type"}]``. No stack trace, SQL or exception text of
an unexpected failure ever reaches a client; the log has it.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

log = logging.getLogger("hollang.errors")


class ApiError(Exception):
    """An error the API answers deliberately, with its status and message."""

    def __init__(
        self,
        status: int,
        message: str,
        *,
        errors: list[dict[str, Any]] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.message = message
        self.errors = errors
        self.headers = headers


def error_response(
    status: int,
    message: str,
    errors: list[dict[str, Any]] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {"code": HTTPStatus(status).name, "message": message}
    if errors is not None:
        body["errors"] = errors
    return JSONResponse(body, status_code=status, headers=headers)


def field_path(loc: tuple[Any, ...] | list[Any]) -> str:
    """('body', 'details', 0, 'answerNumber') -> 'details[0].answerNumber'."""
    parts = list(loc)
    if parts and parts[0] in ("body", "query", "path", "header"):
        parts = parts[1:]
    path = ""
    for part in parts:
        if isinstance(part, int):
            path += f"[{part}]"
        else:
            path += f".{part}" if path else str(part)
    return path


_MALFORMED = {"field": "", "message": "malformed JSON", "type": "json_invalid"}


def _validation_errors(exc: RequestValidationError) -> tuple[str, list[dict[str, Any]]]:
    errors = []
    for error in exc.errors():
        if error.get("type") == "json_invalid":
            return "The request body is not valid JSON.", [_MALFORMED]
        message = str(error.get("msg", "invalid value"))
        message = message.removeprefix("Value error, ")
        errors.append(
            {
                "field": field_path(error.get("loc", ())),
                "message": message,
                "type": error.get("type"),
            }
        )
    return "The request is invalid; see errors.", errors


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_: Request, exc: ApiError) -> JSONResponse:
        return error_response(exc.status, exc.message, exc.errors, exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        message, errors = _validation_errors(exc)
        return error_response(HTTPStatus.BAD_REQUEST, message, errors)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        messages = {
            404: "No such resource.",
            405: "This method is not allowed on this resource.",
        }
        if exc.status_code == HTTPStatus.BAD_REQUEST:
            # FastAPI's own body-parsing failure (not UTF-8, nested too deeply, ...).
            message, errors = "The request body is not valid JSON.", [_MALFORMED]
            return error_response(exc.status_code, message, errors)
        message = messages.get(exc.status_code, str(exc.detail))
        headers = getattr(exc, "headers", None)
        if exc.status_code == HTTPStatus.METHOD_NOT_ALLOWED:
            headers = {**(headers or {}), "Allow": _allowed_methods(request)}
        return error_response(exc.status_code, message, headers=headers)

    app.add_middleware(UnexpectedErrors)


def _allowed_methods(request: Request) -> str:
    """Every method some route on this path serves. Starlette's own `Allow` names only the
    first route that matched the path, so GET and POST /admin/model (two routes) got
    `Allow: GET`. Asks the router itself, included routers too."""
    allowed = []
    for method in ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"):
        scope = {**request.scope, "method": method}
        if any(route.matches(scope)[0] is Match.FULL for route in request.app.router.routes):
            allowed.append(method)
    return ", ".join(allowed)


class UnexpectedErrors:
    """Answer any unhandled exception with the 500 envelope, and keep the connection usable.

    Starlette's own catch-all (a handler for `Exception`) answers and then re-raises, which
    makes the server drop the keep-alive connection; a client that reuses it sees a reset.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        try:
            await self.app(scope, receive, tracking_send)
        except Exception:
            log.exception("unhandled error on %s %s", scope.get("method"), scope.get("path"))
            if started:
                raise
            response = error_response(
                HTTPStatus.INTERNAL_SERVER_ERROR, "An unexpected error occurred."
            )
            await response(scope, receive, send)
