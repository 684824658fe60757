"""Reading an upload's raw body under a size cap (model files, images)."""

from __future__ import annotations

from fastapi import Request

from server.errors import ApiError

UPLOAD_FRAMING = 64 * 1024  # a multipart form's boundaries and part headers around the file


async def read_capped_body(request: Request, limit: int, what: str) -> bytes:
    """The body, refused with 413 as soon as it passes `limit`, so a huge upload is never
    buffered whole; the check runs on the stream because a chunked body declares no length."""
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise ApiError(413, f"The {what} is larger than {limit} bytes.")
        chunks.append(chunk)
    return b"".join(chunks)
