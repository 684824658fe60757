"""POST /test-responses (take the test) and GET /test-responses/count."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response
from sqlalchemy.exc import DataError, IntegrityError
from starlette.concurrency import run_in_threadpool

from db.idempotency import KeyReused, StoredResponse, fingerprint, lookup
from db.ownership import new_token
from db.recommendations import Recorded, Submission, count_test_responses
from db.write_batcher import PendingWrite
from server.deps import ServicesDep
from server.errors import ERRORS, ApiError
from server.idempotency import (
    REUSED_KEY_RESPONSE,
    IdempotencyKeyHeader,
    key_reused,
    normalize_key,
    stored_response,
)
from server.responses import json_response
from server.schemas import (
    CountData,
    CountOut,
    Envelope,
    RecommendationCreated,
    TestResponseCreated,
    TestResponseIn,
    UserOut,
)

router = APIRouter(tags=["test responses"])
RECOMMENDED = 3


@router.post(
    "/test-responses",
    response_model=Envelope[TestResponseCreated],
    responses={**ERRORS, **REUSED_KEY_RESPONSE},
)
async def create_test_response(
    body: TestResponseIn,
    services: ServicesDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Score the answers, run the model in-process, store everything in one transaction
    (shared with the submissions that arrived at the same time: `db/write_batcher.py`).

    With an `Idempotency-Key`, a retry returns the first response and stores nothing."""
    answers = body.answers()
    key = normalize_key(idempotency_key) if idempotency_key is not None else None
    request_sha256 = fingerprint("POST /test-responses", body.user.name, sorted(answers.items()))
    if key is not None:
        try:
            stored = await run_in_threadpool(lookup, services.db, key, request_sha256)
        except KeyReused:
            raise key_reused() from None
        if stored is not None:
            return stored_response(stored)
    recommendation = await services.recommender.recommend(answers)
    catalog = recommendation.catalog
    keys = recommendation.hobby_keys[:RECOMMENDED]
    hobby_type = catalog.type_by_mbti.get(recommendation.mbti_type)
    if len(keys) < RECOMMENDED or hobby_type is None:
        raise ApiError(503, "The model and the catalogue disagree; an operator must fix it.")
    test = catalog.active_test
    token, token_sha256 = new_token()  # replays return it from the key's stored response
    submission = Submission(
        user_name=body.user.name,
        test_id=test.id,
        answer_ids=[test.answer_id(q, a) for q, a in sorted(answers.items())],
        hobby_type_id=hobby_type.id,
        scores=recommendation.scores,
        hobby_ids=[catalog.hobby_by_key[key].id for key in keys],
        model_version=recommendation.model_version,
        token_sha256=token_sha256,
    )

    def created(recorded: Recorded) -> Envelope[TestResponseCreated]:
        return Envelope(
            message="Stored the test response and its recommendation.",
            data=TestResponseCreated(
                user=UserOut(id=recorded.user_id, name=body.user.name),
                recommendation=RecommendationCreated(id=recorded.recommendation_id, token=token),
            ),
        )

    def render(recorded: Recorded) -> str:
        return created(recorded).model_dump_json(by_alias=True)

    pending = PendingWrite(submission, key, request_sha256, render if key else None)
    try:
        written = await services.writes.submit(pending)
    except KeyReused:  # another request committed this key with another body meanwhile
        raise key_reused() from None
    except (IntegrityError, DataError):  # the database refused this one submission's rows
        raise ApiError(
            503, "The database refused to store this submission.", headers={"Retry-After": "2"}
        ) from None
    if isinstance(written, StoredResponse):
        return stored_response(written)
    return json_response(created(written))


@router.get("/test-responses/count", response_model=Envelope[CountData], responses=ERRORS)
def get_test_response_count(services: ServicesDep) -> Envelope[CountData]:
    with services.db.read() as session:
        count = count_test_responses(session)
    return Envelope(
        message="Counted the test responses.",
        data=CountData(test_response=CountOut(count=count)),
    )
