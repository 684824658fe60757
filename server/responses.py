"""Success bodies, serialized once.

A route that returns a model makes FastAPI validate it against `response_model` and then
serialize it: for /predict's 19 hobbies that was 24 pydantic validations per request,
more than the model run itself (README, Benchmarks). Hot routes build plain dicts and
return them through `ok`, which serializes once with orjson. The route still declares its
`response_model`, for the OpenAPI document only, and the contract tests check every
answer against that document, so the two cannot drift apart silently.
"""

from __future__ import annotations

from typing import Any

import orjson
from fastapi.responses import Response

JSON = "application/json"


def ok(message: str, data: Any, *, headers: dict[str, str] | None = None) -> Response:
    """The success envelope `{"code": "OK", "message", "data"}` as one JSON response."""
    body = orjson.dumps({"code": "OK", "message": message, "data": data})
    return Response(body, media_type=JSON, headers=headers)
