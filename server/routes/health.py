"""Liveness, readiness and build information (with the original's Actuator paths too)."""

from __future__ import annotations

import asyncio
import gc
import os
import time
from typing import Any

from fastapi import APIRouter, Request
from fastapi.responses import JSONResponse, Response

import server
from server.deps import Services, ServicesDep
from server.errors import error_response
from server.lean import LeanRoute
from server.responses import JSON

router = APIRouter(tags=["health"])
live_router = APIRouter(tags=["health"], route_class=LeanRoute)
_ALIVE = b'{"code":"OK","message":"alive"}'


@live_router.get("/health/live")
async def live(request: Request) -> Response:
    """The process is up and its event loop answers. Async and touching nothing shared, so
    it never queues behind work: as a plain `def` it waited for FastAPI's thread pool, which
    is busy with database calls under load (5.4 s under 100 writers)."""
    return Response(_ALIVE, media_type=JSON)


# Reported in `checks` without making the service unready.
INFORMATIONAL = frozenset({"modelRegistry", "images"})


async def _checks(services: Services) -> dict[str, str]:
    database, images = await asyncio.gather(
        services.readiness.status(), services.image_readiness.status()
    )
    checks = {"database": database}
    if services.engine.model is not None:
        checks["model"] = "ok"
    else:
        checks["model"] = f"not loaded ({services.models.last_error or 'starting'})"
    checks["catalog"] = "ok" if services.catalog.catalog.hobby_by_key else "empty"
    checks["images"] = images
    if services.models.last_error:
        checks["modelRegistry"] = services.models.last_error
    return checks


@router.get("/health/ready", responses={503: {"description": "not ready, with the reasons"}})
@router.get("/actuator/health", include_in_schema=False)
async def ready(services: ServicesDep) -> JSONResponse:
    """Ready when the database answers and takes writes, a model is loaded and a catalogue
    is in memory. Answers within a second under any load (server/readiness.py).
    `checks.images` names the catalogue's images that would be a 404, without failing."""
    checks = await _checks(services)
    failing = {k: v for k, v in checks.items() if k not in INFORMATIONAL and v != "ok"}
    if failing:
        response = error_response(
            503, "not ready: " + "; ".join(f"{k} {v}" for k, v in failing.items())
        )
        response.headers["Retry-After"] = "5"
        return response
    # Serving, but the registry is not followed (pointer unreadable, store down, a refused
    # model): still ready, since pulling every replica for a shared pointer would stop the
    # fleet, but DEGRADED, with the reason in checks.modelRegistry.
    status = "DEGRADED" if "modelRegistry" in checks else "UP"
    return JSONResponse(
        {"code": "OK", "message": "ready", "data": {"status": status, "checks": checks}}
    )


@router.get("/info")
@router.get("/actuator/info", include_in_schema=False)
async def info(services: ServicesDep) -> dict[str, Any]:
    """Async: everything here is in memory, so a thread hop would only add a wait."""
    model = services.engine.model
    return {
        "code": "OK",
        "message": "Service information.",
        "data": {
            "service": {"name": "hollang", "version": server.__version__},
            "model": {
                "version": model.version if model else None,
                "sha256": model.file.sha256 if model else None,
                "lastError": services.models.last_error,
            },
            "catalog": {"version": services.catalog.catalog.version},
            "database": services.db.backend,
            "uptimeSeconds": round(time.time() - services.started_at, 1),
            "pid": os.getpid(),
            # objects this worker moved out of the collector's reach (server/heap.py)
            "gcFrozenObjects": gc.get_freeze_count(),
        },
    }
