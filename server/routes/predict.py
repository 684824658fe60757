"""POST /predict: the active model's answer for 12 answers, storing nothing."""

from __future__ import annotations

from fastapi import APIRouter

from server.deps import ServicesDep
from server.routes.docs import ERRORS
from server.schemas import AnswersIn, Envelope, PredictedHobbyOut, PredictionOut, ScoresOut

router = APIRouter(tags=["model"])


@router.post("/predict", response_model=Envelope[PredictionOut], responses=ERRORS)
async def predict(body: AnswersIn, services: ServicesDep) -> Envelope[PredictionOut]:
    """Every output of the model in rank order, with hobby ids where the catalogue has them."""
    result = await services.recommender.recommend(body.answers())
    catalog = result.catalog
    hobbies = []
    for ranking, (key, score) in enumerate(result.ranked, start=1):
        hobby = catalog.hobby_by_key.get(key)
        hobbies.append(
            PredictedHobbyOut(
                key=key,
                id=hobby.id if hobby else None,
                short_name=hobby.short_name if hobby else None,
                name=hobby.short_name if hobby else None,
                score=score,
                ranking=ranking,
            )
        )
    score_e, score_n, score_f, score_j = result.scores
    return Envelope(
        message="Predicted.",
        data=PredictionOut(
            scores=ScoresOut(score_e=score_e, score_n=score_n, score_f=score_f, score_j=score_j),
            mbti_type=result.mbti_type,
            hobbies=hobbies,
            model_version=result.model_version,
        ),
    )
