"""The `Idempotency-Key` request header: validation, replayed responses, the reuse error.

The key is an opaque client token (a UUID, say) of 1..255 visible ASCII characters, sent
bare (`Idempotency-Key: 8e03...`) or as a structured-field string in double quotes, as the
IETF httpapi draft writes it; both forms name the same key. Storage and the exactly-once
rule live in `db/idempotency.py`.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Header
from fastapi.responses import Response

from db.idempotency import StoredResponse
from server.errors import ApiError, ErrorBody

_CHARS = r"[!#-\[\]-~]"  # visible ASCII except the double quote and the backslash
KEY_PATTERN = rf'^(?:{_CHARS}{{1,255}}|"{_CHARS}{{1,255}}")$'
REPLAYED_HEADER = "Idempotent-Replayed"

IdempotencyKeyHeader = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key",
        pattern=KEY_PATTERN,
        description=(
            "Makes the request safe to retry: the same key with the same body returns the "
            "first response and stores nothing new; with another body it is a 422."
        ),
    ),
]

REUSED_KEY_RESPONSE: dict[int | str, dict[str, Any]] = {
    422: {"model": ErrorBody, "description": "the Idempotency-Key was used with another body"},
}


def normalize_key(raw: str) -> str:
    """`"abc"` and `abc` are the same key."""
    return raw[1:-1] if len(raw) >= 2 and raw[0] == raw[-1] == '"' else raw


def stored_response(stored: StoredResponse) -> Response:
    """The stored response, byte for byte; `Idempotent-Replayed` tells a retry apart."""
    return Response(
        content=stored.body,
        status_code=stored.status,
        media_type="application/json",
        headers={REPLAYED_HEADER: "true" if stored.replayed else "false"},
    )


def key_reused() -> ApiError:
    return ApiError(
        422,
        "This Idempotency-Key was already used with a different request body.",
        errors=[
            {
                "field": "Idempotency-Key",
                "message": "already used with a different request body; use a new key",
                "type": "idempotency_key_reused",
            }
        ],
    )
