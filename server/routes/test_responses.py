"""POST /test-responses (take the test) and GET /test-responses/count."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.concurrency import run_in_threadpool

from db.recommendations import Submission, count_test_responses, record_submission
from server.deps import ServicesDep
from server.errors import ApiError
from server.routes.docs import ERRORS
from server.schemas import (
    CountData,
    CountOut,
    Envelope,
    IdOut,
    TestResponseCreated,
    TestResponseIn,
    UserOut,
)

router = APIRouter(tags=["test responses"])
RECOMMENDED = 3


@router.post("/test-responses", response_model=Envelope[TestResponseCreated], responses=ERRORS)
async def create_test_response(
    body: TestResponseIn, services: ServicesDep
) -> Envelope[TestResponseCreated]:
    """Score the answers, run the model in-process, store everything in one transaction."""
    answers = body.answers()
    recommendation = await services.models.recommend(answers)
    catalog = recommendation.catalog
    keys = recommendation.hobby_keys[:RECOMMENDED]
    hobby_type = catalog.type_by_mbti.get(recommendation.mbti_type)
    if len(keys) < RECOMMENDED or hobby_type is None:
        raise ApiError(503, "The model and the catalogue disagree; an operator must fix it.")
    test = catalog.active_test
    submission = Submission(
        user_name=body.user.name,
        test_id=test.id,
        answer_ids=[test.answer_id(q, a) for q, a in sorted(answers.items())],
        hobby_type_id=hobby_type.id,
        scores=recommendation.scores,
        hobby_ids=[catalog.hobby_by_key[key].id for key in keys],
        model_version=recommendation.model_version,
    )
    recorded = await run_in_threadpool(
        services.db.transact, lambda session: record_submission(session, submission)
    )
    return Envelope(
        message="Stored the test response and its recommendation.",
        data=TestResponseCreated(
            user=UserOut(id=recorded.user_id, name=body.user.name),
            recommendation=IdOut(id=recorded.recommendation_id),
        ),
    )


@router.get("/test-responses/count", response_model=Envelope[CountData], responses=ERRORS)
def get_test_response_count(services: ServicesDep) -> Envelope[CountData]:
    with services.db.read() as session:
        count = count_test_responses(session)
    return Envelope(
        message="Counted the test responses.",
        data=CountData(test_response=CountOut(count=count)),
    )
