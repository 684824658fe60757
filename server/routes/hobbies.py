"""GET /hobbies: the hobby ranking, paged, with a documented set of sort fields."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from db.recommendations import HOBBY_SORTS, rank_hobbies
from server.deps import CatalogDep, DatabaseDep
from server.errors import ERRORS, ApiError
from server.schemas import Envelope, HobbiesData, RankedHobbyOut

router = APIRouter(tags=["hobbies"])
SORT_HELP = (
    "one of " + ", ".join(HOBBY_SORTS) + "; optionally ',asc' or ',desc' (default descending)"
)


def parse_sort(sort: str) -> tuple[str, bool]:
    field, _, direction = sort.partition(",")
    if field not in HOBBY_SORTS or direction not in ("", "asc", "desc"):
        raise ApiError(
            400,
            "Unsupported sort.",
            errors=[{"field": "sort", "message": SORT_HELP, "type": "enum"}],
        )
    return field, direction != "asc"


@router.get("/hobbies", response_model=Envelope[HobbiesData], responses=ERRORS)
def list_hobbies(
    db: DatabaseDep,
    catalog: CatalogDep,
    page: Annotated[int, Query(ge=0, le=100_000)] = 0,
    size: Annotated[int, Query(ge=1, le=100)] = 20,
    sort: Annotated[str, Query(max_length=40, description=SORT_HELP)] = "recommendCount",
) -> Envelope[HobbiesData]:
    field, descending = parse_sort(sort)
    with db.read() as session:
        rows, total = rank_hobbies(session, page=page, size=size, sort=field, descending=descending)
    images = catalog.view.images
    hobbies = [
        RankedHobbyOut(
            id=row.hobby_id,
            short_name=row.short_name,
            name=row.short_name,
            recommend_count=row.recommend_count,
            image_url=images.hobby(row.image_key),
        )
        for row in rows
    ]
    return Envelope(
        message="Fetched the hobby ranking.",
        data=HobbiesData(hobbies=hobbies, page=page, size=size, total_count=total),
    )
