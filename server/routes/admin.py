"""Model administration: upload (validate, publish, activate, swap), status, rollback, shadow.

Registered only when `HOLLANG_ADMIN_TOKEN` is set; every route requires it as a bearer token.
None of them answers 5xx for an unreadable pointer: status shows it (`pointer: null`,
`lastError`), an upload overwrites it, and a rollback is a 409 that says how to repair it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request
from pydantic import Field
from starlette.exceptions import HTTPException as StarletteHTTPException

from model.engine import LoadedModel
from model.modelfile import ModelFileError
from model.registry import RegistryError, UnknownVersion
from server import metrics
from server.deps import ModelServiceDep, SettingsDep, require_admin
from server.errors import ERRORS, ApiError, ErrorBody
from server.model_service import ModelService
from server.schemas import Camel, Envelope
from server.uploads import UPLOAD_FRAMING, read_capped_body
from storage.objectstore import ObjectStoreError

router = APIRouter(prefix="/admin", tags=["admin"], dependencies=[Depends(require_admin)])
ADMIN_ERRORS = {**ERRORS, 401: ERRORS[404], 413: ERRORS[400], 422: ERRORS[400]}


class ModelStatus(Camel):
    active: dict[str, Any] | None
    pointer: dict[str, Any] | None
    last_error: str | None
    quality: dict[str, Any] | None = None  # an upload's comparison with the previous model
    shadow: dict[str, Any] | None = None  # the candidate scored beside the active model


class ShadowRequest(Camel):
    """Which published version every replica scores beside the active one; null stops it."""

    version: str | None = Field(min_length=1, max_length=200)


async def _read_upload(request: Request, limit: int) -> bytes:
    """The model file, as the raw body or as the `file` field of a multipart form."""
    multipart = request.headers.get("content-type", "").startswith("multipart/form-data")
    declared = request.headers.get("content-length")
    framing = UPLOAD_FRAMING if multipart else 0  # a form's framing is not the file
    if declared and declared.isdigit() and int(declared) > limit + framing:
        raise ApiError(413, f"The model file is larger than {limit} bytes.")
    if multipart:
        try:
            form = await request.form(max_files=1, max_fields=1, max_part_size=limit)
        except StarletteHTTPException as exc:  # Starlette's 400 for a form it cannot parse
            raise ApiError(400, f"The multipart form is malformed: {exc.detail}") from None
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise ApiError(400, "Send the model file as the multipart field 'file'.")
        data = await upload.read(limit + 1)
    else:
        data = await read_capped_body(request, limit, "model file")
    if len(data) > limit:
        raise ApiError(413, f"The model file is larger than {limit} bytes.")
    if not data:
        raise ApiError(400, "The request carries no model file.")
    return data


def _describe(model: LoadedModel | None) -> dict[str, Any] | None:
    if model is None:
        return None
    return {**model.file.describe(), "loadedAt": model.loaded_at}


async def _status(models: ModelService, quality: dict[str, Any] | None = None) -> ModelStatus:
    pointer = await models.history()
    return ModelStatus(
        quality=quality,
        active=_describe(models.engine.model),
        pointer=None
        if pointer is None
        else {
            "active": pointer.active.describe(),
            "history": [entry.describe() for entry in pointer.history],
            "shadow": pointer.shadow.describe() if pointer.shadow else None,
        },
        last_error=models.last_error,
        shadow=_shadow_status(models),
    )


def _shadow_status(models: ModelService) -> dict[str, Any] | None:
    """This worker's shadow and, summed over every live worker's metrics, how it agrees
    with the active model on live inputs and what a run of it costs."""
    scorer, active = models.engine.shadow, models.engine.model
    error = models.shadow_error
    if scorer is None:
        return None if error is None else {"model": None, "error": error}
    return {
        "model": _describe(scorer.model),
        "error": error or scorer.stats.last_error,
        "live": metrics.shadow_summary(scorer.version, active.version)
        if active is not None
        else None,
    }


@router.get("/model", response_model=Envelope[ModelStatus], responses=ADMIN_ERRORS)
async def get_model(models: ModelServiceDep) -> Envelope[ModelStatus]:
    return Envelope(message="The active model and its history.", data=await _status(models))


UPLOAD_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "application/octet-stream": {"schema": {"type": "string", "format": "binary"}},
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "properties": {"file": {"type": "string", "format": "binary"}},
                    "required": ["file"],
                }
            },
        },
    }
}


@router.post(
    "/model",
    response_model=Envelope[ModelStatus],
    responses=ADMIN_ERRORS,
    openapi_extra=UPLOAD_BODY,
)
async def upload_model(
    request: Request,
    models: ModelServiceDep,
    settings: SettingsDep,
    allow_degenerate: Annotated[
        bool,
        Query(
            alias="allowDegenerate",
            description="accept a model that gives the same three hobbies for every input",
        ),
    ] = False,
    require_agreement: Annotated[
        float | None,
        Query(
            alias="requireAgreement",
            ge=0,
            le=1,
            description="refuse unless the model gives the active model's top 3 for at "
            "least this share of all inputs",
        ),
    ] = None,
) -> Envelope[ModelStatus]:
    """Upload a model file (raw body or multipart field `file`); it serves only once valid.

    Validated in a bounded child process (every batch size), then compared with the active
    model over all inputs (`data.quality`) and refused if degenerate or below
    `requireAgreement`."""
    data = await _read_upload(request, settings.max_model_bytes)
    try:
        model, report = await models.upload(
            data, allow_degenerate=allow_degenerate, require_agreement=require_agreement
        )
    except (ModelFileError, RegistryError) as exc:
        raise ApiError(422, f"Model rejected: {exc}") from None
    except ObjectStoreError as exc:
        raise ApiError(503, f"The model store is unavailable: {exc}") from None
    return Envelope(
        message=f"Model {model.version} is active.",
        data=await _status(models, report.describe()),
    )


ROLLBACK_ERRORS = {
    **ADMIN_ERRORS,
    409: {"model": ErrorBody, "description": "no earlier valid model to roll back to"},
}


@router.post("/model/rollback", response_model=Envelope[ModelStatus], responses=ROLLBACK_ERRORS)
async def rollback_model(
    models: ModelServiceDep,
    to: Annotated[
        str | None,
        Query(
            min_length=1,
            max_length=200,
            description="roll back to this version of the activation history; default: the "
            "previous one (again: one further back)",
        ),
    ] = None,
) -> Envelope[ModelStatus]:
    try:
        model = await models.rollback(to)
    except (ModelFileError, RegistryError) as exc:
        raise ApiError(409, f"Cannot roll back: {exc}") from None
    except ObjectStoreError as exc:
        raise ApiError(503, f"The model store is unavailable: {exc}") from None
    return Envelope(message=f"Rolled back to model {model.version}.", data=await _status(models))


SHADOW_ERRORS = {
    **ADMIN_ERRORS,
    404: {"model": ErrorBody, "description": "no published model has that version"},
    409: {"model": ErrorBody, "description": "no readable pointer, or the version is active"},
}


@router.post("/model/shadow", response_model=Envelope[ModelStatus], responses=SHADOW_ERRORS)
async def shadow_model(body: ShadowRequest, models: ModelServiceDep) -> Envelope[ModelStatus]:
    """Make every replica score live requests with a published version too, without
    serving it (validated here first, as any model); `{"version": null}` stops it."""
    try:
        await models.set_shadow(body.version)
    except UnknownVersion as exc:
        raise ApiError(404, f"Cannot shadow: {exc}") from None
    except ModelFileError as exc:
        raise ApiError(422, f"Model rejected: {exc}") from None
    except RegistryError as exc:
        raise ApiError(409, f"Cannot shadow: {exc}") from None
    except ObjectStoreError as exc:
        raise ApiError(503, f"The model store is unavailable: {exc}") from None
    message = (
        f"Model {body.version} is scored beside the active model."
        if body.version is not None
        else "No shadow model."
    )
    return Envelope(message=message, data=await _status(models))
