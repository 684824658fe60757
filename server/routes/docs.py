"""The error responses every route may give, for the OpenAPI document."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from server.schemas import Camel


class FieldError(Camel):
    field: str
    message: str
    type: str | None = None


class ErrorBody(BaseModel):
    code: str
    message: str
    errors: list[FieldError] | None = None


ERRORS: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorBody, "description": "invalid request; `errors` lists the fields"},
    404: {"model": ErrorBody, "description": "no such resource"},
    413: {"model": ErrorBody, "description": "the body is over `HOLLANG_MAX_BODY_BYTES`"},
    503: {"model": ErrorBody, "description": "overloaded or a dependency is down; retry"},
}
