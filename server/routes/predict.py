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
    result = await services.models.recommend(body.answers())
    catalog = result.catalog
    prediction = result.prediction
    labels = prediction.model.labels
    hobbies = []
    for ranking, index in enumerate(prediction.ranking, start=1):
        hobby = catalog.hobby_by_key.get(labels[index])
        hobbies.append(
            PredictedHobbyOut(
                key=labels[index],
                id=hobby.id if hobby else None,
                short_name=hobby.short_name if hobby else None,
                name=hobby.short_name if hobby else None,
                score=float(prediction.logits[index]),
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
