"""The lean path of the busiest routes: a route class without dependency injection, and
JSON bodies parsed and validated in one pass.

`LeanRoute` is an `APIRoute` (so it is in the OpenAPI document, with its response model,
errors and `openapi_extra`) whose endpoint takes the `Request` and returns a `Response`
itself. It is served by Starlette's plain `request_response` instead of FastAPI's handler,
which resolves dependencies, reads the body and validates the answer: on /predict that
handler cost 33 µs a request (benchmarks/framework_costs.py). Only
routes whose endpoint needs nothing but the request use it.

FastAPI reads a declared body model in three steps: it parses the Content-Type with the
`email` package, decodes the JSON into Python objects with `json.loads`, then validates
those objects. pydantic-core parses and validates the raw bytes in one step; on /predict
that saved 29 µs a request (benchmarks/framework_costs.py).

`json_body` keeps FastAPI's behaviour: an empty body is "missing", a body that is not
declared as JSON is refused, and every error is a `RequestValidationError` located under
`body`, so the one handler in `server.errors` answers it in the same envelope. The route
documents its body with `openapi_body(Model)`, and `document_bodies` puts the schemas that
body refers to into the OpenAPI components.
"""

from __future__ import annotations

import re
from typing import Any, TypeVar

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError
from starlette.routing import request_response

M = TypeVar("M", bound=BaseModel)
_JSON_TYPE = re.compile(r"application/(?:[\w.!#$&^-]+\+)?json\s*(?:;|$)", re.IGNORECASE)
_REF = "#/components/schemas/{model}"
_DOCUMENTED: list[type[BaseModel]] = []


class LeanRoute(APIRoute):
    """An API route whose endpoint is `async def endpoint(request) -> Response`."""

    def __init__(self, path: str, endpoint: Any, **options: Any) -> None:
        super().__init__(path, endpoint, **options)
        self.app = request_response(endpoint)


async def json_body(request: Request, model: type[M]) -> M:
    """The request's JSON body as `model`, or a `RequestValidationError` (answered 400)."""
    raw = await request.body()
    if not raw:
        raise RequestValidationError(
            [{"type": "missing", "loc": ("body",), "msg": "Field required", "input": None}]
        )
    if not _JSON_TYPE.match(request.headers.get("content-type", "")):
        raise RequestValidationError(
            [
                {
                    "type": "content_type",
                    "loc": ("body",),
                    "msg": "the body must be JSON, sent with Content-Type: application/json",
                    "input": None,
                }
            ]
        )
    try:
        return model.model_validate_json(raw)
    except ValidationError as exc:
        errors = exc.errors(include_url=False, include_context=False, include_input=False)
        raise RequestValidationError(
            [{**error, "loc": ("body", *error["loc"])} for error in errors]
        ) from None


def openapi_body(model: type[BaseModel]) -> dict[str, Any]:
    """`openapi_extra` for a route that reads `model` with `json_body`."""
    _DOCUMENTED.append(model)
    return {
        "requestBody": {
            "required": True,
            "content": {
                "application/json": {"schema": {"$ref": _REF.format(model=model.__name__)}}
            },
        }
    }


def document_bodies(app: FastAPI) -> None:
    """Add the schemas of every `openapi_body` model to the app's OpenAPI components."""
    generate = app.openapi

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is not None:
            return app.openapi_schema
        schema = generate()
        components = schema.setdefault("components", {}).setdefault("schemas", {})
        for model in _DOCUMENTED:
            body = model.model_json_schema(ref_template=_REF, mode="validation")
            for name, definition in body.pop("$defs", {}).items():
                components.setdefault(name, definition)
            components.setdefault(model.__name__, body)
        return schema

    app.openapi = openapi  # type: ignore[method-assign]
