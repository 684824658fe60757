"""POST /predict: the active model's answer for 12 answers, storing nothing."""

from __future__ import annotations

from fastapi import APIRouter, Request
from fastapi.responses import Response

from server.deps import services_of
from server.errors import ERRORS
from server.lean import LeanRoute, json_body, openapi_body
from server.responses import ok
from server.schemas import AnswersIn, Envelope, PredictionOut

router = APIRouter(tags=["model"], route_class=LeanRoute)


@router.post(
    "/predict",
    response_model=Envelope[PredictionOut],
    responses=ERRORS,
    openapi_extra=openapi_body(AnswersIn),
)
async def predict(request: Request) -> Response:
    """Every output of the model in rank order, with hobby ids where the catalogue has them.

    The hottest route: it reads its own body and services (`json_body`, `services_of`)
    and answers through `ok`, which together saved a third of its CPU (README, Benchmarks)."""
    body = await json_body(request, AnswersIn)
    result = await services_of(request).recommender.recommend(body.answers())
    known = result.catalog.hobby_by_key
    hobbies = []
    for ranking, (key, score) in enumerate(result.ranked, start=1):
        hobby = known.get(key)
        name = hobby.short_name if hobby else None
        hobbies.append(
            {
                "key": key,
                "id": hobby.id if hobby else None,
                "shortName": name,
                "name": name,
                "score": score,
                "ranking": ranking,
            }
        )
    score_e, score_n, score_f, score_j = result.scores
    data = {
        "scores": {"scoreE": score_e, "scoreN": score_n, "scoreF": score_f, "scoreJ": score_j},
        "mbtiType": result.mbti_type,
        "hobbies": hobbies,
        "modelVersion": result.model_version,
    }
    return ok("Predicted.", data)
