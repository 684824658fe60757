"""GET /tests: the personality test, served from bytes rendered once per catalogue."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from server.deps import CatalogDep
from server.errors import ERRORS, ApiError
from server.schemas import Envelope, TestData

router = APIRouter(tags=["tests"])


@router.get("/tests", response_model=Envelope[TestData], responses=ERRORS)
async def get_test(
    catalog: CatalogDep, version: Annotated[int, Query(ge=1, le=1_000_000)] = 1
) -> Response:
    """Async: the body is in memory (rendered once per catalogue), so a thread hop would
    cost more than the work."""
    body = catalog.view.tests_body(version)
    if body is None:
        raise ApiError(404, f"There is no test of version {version}.")
    return Response(content=body, media_type="application/json")
