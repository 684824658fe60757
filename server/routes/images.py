"""Images: served from the object store (streamed from the local folder, or a redirect to a
presigned S3 URL), and uploaded by an admin under the stable keys the URLs name.

With a CDN in front (`HOLLANG_IMAGE_BASE_URL`) clients never come here; without one, these
routes are what `imageUrl` points at.
"""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, RedirectResponse, Response, StreamingResponse
from starlette.concurrency import run_in_threadpool

from server.deps import ServicesDep, require_admin
from server.errors import ERRORS, ApiError
from server.images import (
    CACHE_CONTROL,
    ImageError,
    bundled_image,
    content_type_of,
    image_key,
    store_image,
)
from server.schemas import Camel, Envelope
from server.uploads import read_capped_body
from storage.objectstore import ObjectNotFound, ObjectStoreError

router = APIRouter(tags=["images"])
admin_router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
ADMIN_ERRORS = {**ERRORS, 401: ERRORS[404], 413: ERRORS[400], 415: ERRORS[400]}
# A redirect may be cached well within the presigned URL's life.
REDIRECT_CACHE_CONTROL = "private, max-age=300"


class StoredImage(Camel):
    key: str
    content_type: str
    size: int


def _key_or_404(kind: str, name: str) -> str:
    try:
        return image_key(kind, name)
    except ImageError:
        raise ApiError(404, "No such image.") from None


@router.get(
    "/images/{kind}/{name}",
    response_class=Response,
    responses={
        200: {"content": {"image/png": {}, "image/gif": {}, "image/jpeg": {}}},
        302: {"description": "to a presigned URL of the object store"},
        **ERRORS,
    },
)
async def get_image(kind: str, name: str, services: ServicesDep) -> Response:
    """The image under that key, else the bundled catalogue's placeholder for it; a
    missing image is a 404 for the image alone."""
    key = _key_or_404(kind, name)
    store = services.objects
    expiry = services.settings.image_url_expiry
    try:
        url = await run_in_threadpool(store.url, key, expires_in=expiry)
        if url is not None:
            if not await run_in_threadpool(store.exists, key):
                raise ObjectNotFound(key)
            return RedirectResponse(url, 302, headers={"Cache-Control": REDIRECT_CACHE_CONTROL})
        stream = await run_in_threadpool(store.open, key)
    except ObjectNotFound:
        bundled = bundled_image(key) if services.settings.bundled_images else None
        if bundled is None:
            raise ApiError(404, "No such image.") from None
        return FileResponse(
            bundled, media_type=content_type_of(key), headers={"Cache-Control": CACHE_CONTROL}
        )
    except ObjectStoreError:
        raise ApiError(
            503, "The image store is unavailable; retry shortly.", headers={"Retry-After": "5"}
        ) from None
    headers = {"Cache-Control": CACHE_CONTROL, "Content-Length": str(stream.size)}
    return StreamingResponse(stream.chunks, media_type=content_type_of(key), headers=headers)


@admin_router.put(
    "/images/{kind}/{name}",
    response_model=Envelope[StoredImage],
    responses=ADMIN_ERRORS,
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {"image/*": {"schema": {"type": "string", "format": "binary"}}},
        }
    },
)
async def put_image(
    kind: str, name: str, request: Request, services: ServicesDep
) -> Envelope[StoredImage]:
    """Store an image (raw body) under its layout key; its bytes decide the Content-Type."""
    try:
        key = image_key(kind, name)
    except ImageError as exc:
        raise ApiError(400, str(exc)) from None
    limit = services.settings.max_image_bytes
    data = await _read_body(request, limit)
    try:
        content_type = await run_in_threadpool(store_image, services.objects, key, data, limit)
    except ImageError as exc:
        raise ApiError(415, str(exc)) from None
    except ObjectStoreError:
        raise ApiError(503, "The image store is unavailable; retry shortly.") from None
    return Envelope(
        message=f"Stored {key}.",
        data=StoredImage(key=key, content_type=content_type, size=len(data)),
    )


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused as soon as it passes `limit` so a huge upload is never buffered."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise ApiError(413, f"The image is larger than {limit} bytes.")
    data = await read_capped_body(request, limit, "image")
    if not data:
        raise ApiError(400, "The request carries no image.")
    return data
