"""A recommendation, its public share view, and its satisfaction survey."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header
from fastapi.responses import Response

from db.ownership import holds_token, stored_digest
from db.recommendations import NotFound, NotInRecommendation, record_survey
from db.session import Database
from server.deps import (
    CatalogDep,
    DatabaseDep,
    RecommendationId,
    SettingsDep,
    StoredRecommendationDep,
)
from server.errors import ERRORS, ApiError, ErrorBody
from server.responses import json_response
from server.schemas import (
    Envelope,
    RecommendationData,
    RecommendationOut,
    ScoresOut,
    SharedRecommendationData,
    SharedRecommendationOut,
    SurveyRequest,
    UserOut,
)

router = APIRouter(tags=["recommendations"])
TOKEN_HEADER = "X-Recommendation-Token"
RecommendationToken = Annotated[
    str | None,
    Header(
        alias=TOKEN_HEADER,
        description=(
            "the `token` POST /test-responses returned with this recommendation "
            "(required unless HOLLANG_SURVEY_TOKEN=off)"
        ),
    ),
]


@router.get(
    "/recommendations/{id}",
    response_model=Envelope[RecommendationData],
    responses=ERRORS,
)
async def get_recommendation(stored: StoredRecommendationDep, catalog: CatalogDep) -> Response:
    """Serialized once (`json_response`), not re-validated against the response model."""
    # Async: the row is read on the thread pool (`StoredRecommendationDep`) and the rest is
    # in memory, so a request makes one thread hop, as the plain `def` route did.
    view = await catalog.view_covering([h.hobby_id for h in stored.hobbies], stored.hobby_type_id)
    score_e, score_n, score_f, score_j = stored.scores
    out = RecommendationOut(
        id=stored.id,
        did_survey=stored.did_survey,
        user=UserOut(id=stored.user_id, name=stored.user_name),
        hobby_type=view.hobby_type(stored.hobby_type_id),
        hobbies=[view.hobby(h.hobby_id, h.ranking) for h in stored.hobbies],
        fit_hobby_types=view.fit_hobby_types(stored.hobby_type_id),
        scores=ScoresOut(score_e=score_e, score_n=score_n, score_f=score_f, score_j=score_j),
        model_version=stored.model_version,
    )
    return json_response(
        Envelope(message="Fetched the recommendation.", data=RecommendationData(recommendation=out))
    )


@router.get(
    "/recommendations/{id}/shares",
    response_model=Envelope[SharedRecommendationData],
    responses=ERRORS,
)
async def get_shared_recommendation(
    stored: StoredRecommendationDep, catalog: CatalogDep
) -> Envelope[SharedRecommendationData]:
    """The public view: no survey state, no fit types, no content links."""
    view = await catalog.view_covering([h.hobby_id for h in stored.hobbies], stored.hobby_type_id)
    out = SharedRecommendationOut(
        id=stored.id,
        user=UserOut(id=stored.user_id, name=stored.user_name),
        hobby_type=view.hobby_type(stored.hobby_type_id),
        hobbies=[view.shared_hobby(h.hobby_id, h.ranking) for h in stored.hobbies],
    )
    return Envelope(
        message="Fetched the shared recommendation.",
        data=SharedRecommendationData(recommendation=out),
    )


def _require_owner(
    db: Database, recommendation_id: int, token: str | None, *, required: bool
) -> None:
    """401 without the token, 403 with one that is not this recommendation's. A row from
    before tokens has no owner, so only HOLLANG_SURVEY_TOKEN=off opens it (README)."""
    if not required:
        return
    if not token:
        raise ApiError(401, f"This survey needs the recommendation's {TOKEN_HEADER}.")
    try:
        with db.read() as session:
            stored = stored_digest(session, recommendation_id)
    except NotFound:
        raise ApiError(404, f"Recommendation {recommendation_id} does not exist.") from None
    if not holds_token(stored, token):
        raise ApiError(403, f"The {TOKEN_HEADER} is not this recommendation's.")


@router.post(
    "/recommendations/{id}/surveys",
    response_model=Envelope[None],
    responses={
        **ERRORS,
        401: {"model": ErrorBody, "description": f"no {TOKEN_HEADER}"},
        403: {"model": ErrorBody, "description": f"the {TOKEN_HEADER} is not this one's"},
    },
)
def create_survey(
    recommendation_id: RecommendationId,
    body: SurveyRequest,
    db: DatabaseDep,
    settings: SettingsDep,
    token: RecommendationToken = None,
) -> Envelope[None]:
    _require_owner(db, recommendation_id, token, required=settings.survey_token)
    ratings = [(hobby.id, hobby.satisfaction) for hobby in body.survey.hobbies]
    try:
        db.transact(lambda session: record_survey(session, recommendation_id, ratings))
    except NotFound:
        raise ApiError(404, f"Recommendation {recommendation_id} does not exist.") from None
    except NotInRecommendation as exc:
        positions = {hobby.id: i for i, hobby in enumerate(body.survey.hobbies)}
        raise ApiError(
            400,
            "Every surveyed hobby must be one of this recommendation's hobbies.",
            errors=[
                {
                    "field": f"survey.hobbies[{positions[hobby_id]}].id",
                    "message": f"hobby {hobby_id} is not part of this recommendation",
                    "type": "not_in_recommendation",
                }
                for hobby_id in exc.hobby_ids
            ],
        ) from None
    return Envelope(message="Stored the survey.", data=None)
