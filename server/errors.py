"""The error envelope, its OpenAPI schema and every exception handler, in one place.

Every error body is ``{"code": <HTTP status name>, "message": <text>}``; validation errors
add ``"errors": [{"field", "message", "type"}]``. No stack trace, SQL or exception text of
an unexpected failure ever reaches a client; the log has it. Faults of our dependencies
(an overloaded or failing model, a database that is down or contended) are 503s that tell
the client when to retry.
"""

from __future__ import annotations

import logging
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.exc import InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeout
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from batching.adaptive import Overloaded
from model.batcher import BadModelOutput
from model.engine import NoModelLoaded
from server.schemas import Camel

log = logging.getLogger("hollang.errors")


class FieldError(Camel):
    field: str
    message: str
    type: str | None = None


class ErrorBody(BaseModel):  # every error body; a docstring would become its OpenAPI description
    code: str
    message: str
    errors: list[FieldError] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid request; `errors` lists the fields"},
    404: {"model": ErrorBody, "description": "no such resource"},
    413: {"model": ErrorBody, "description": "the body is over `HOLLANG_MAX_BODY_BYTES`"},
    503: {"model": ErrorBody, "description": "overloaded or a dependency is down; retry"},
}


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
    """Every handler: the envelope for our own and FastAPI's errors, 503s for faults of our
    dependencies, and the catch-all 500 (`UnexpectedErrors`)."""

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

    _install_fault_handlers(app)
    app.add_middleware(UnexpectedErrors)


def _install_fault_handlers(app: FastAPI) -> None:
    """Faults of our dependencies become clear 503s that tell the client to retry."""

    @app.exception_handler(Overloaded)
    async def _overloaded(_: Request, exc: Overloaded) -> JSONResponse:
        return error_response(
            503, "The service is overloaded; retry shortly.", headers={"Retry-After": "1"}
        )

    @app.exception_handler(BadModelOutput)
    async def _bad_output(_: Request, exc: BadModelOutput) -> JSONResponse:
        # Only this batch's callers; nothing was stored, and no made-up ranking is.
        log.error("model output refused: %s", exc)
        return error_response(
            503, "The model gave an unusable answer; retry shortly.", headers={"Retry-After": "2"}
        )

    @app.exception_handler(NoModelLoaded)
    async def _no_model(_: Request, exc: NoModelLoaded) -> JSONResponse:
        return error_response(503, "No model is loaded yet.", headers={"Retry-After": "5"})

    async def _database_down(request: Request, exc: Exception) -> JSONResponse:
        busy = _is_contention(exc)
        log.error(
            "database %s on %s %s: %s",
            "busy" if busy else "error",
            request.method,
            request.url.path,
            type(exc).__name__,
        )
        message = "The database is busy" if busy else "The database is unavailable"
        return error_response(503, f"{message}; retry shortly.", headers={"Retry-After": "2"})

    for kind in (OperationalError, InterfaceError, PoolTimeout):
        app.add_exception_handler(kind, _database_down)


def _is_contention(exc: Exception) -> bool:
    """A lock wait timed out: the database is up but contended, which operators read
    differently from an outage. (A full pool is ambiguous: a hung server fills it too.)"""
    orig = getattr(exc, "orig", None)
    code = orig.args[0] if orig is not None and orig.args else None
    return code == 1205 or "database is locked" in str(orig)  # InnoDB lock wait / SQLite


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
