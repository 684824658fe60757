"""POST /test-responses (take the test) and GET /test-responses/count."""

from __future__ import annotations

from fastapi import APIRouter
from fastapi.responses import Response

from db.idempotency import StoredResponse
from db.recommendations import count_test_responses
from server.deps import DatabaseDep, RecommenderDep, SubmissionWriterDep
from server.errors import ERRORS
from server.flows import take_test
from server.idempotency import REUSED_KEY_RESPONSE, IdempotencyKeyHeader, stored_response
from server.responses import json_response
from server.schemas import CountData, CountOut, Envelope, TestResponseCreated, TestResponseIn

router = APIRouter(tags=["test responses"])


@router.post(
    "/test-responses",
    response_model=Envelope[TestResponseCreated],
    responses={**ERRORS, **REUSED_KEY_RESPONSE},
)
async def create_test_response(
    body: TestResponseIn,
    db: DatabaseDep,
    recommender: RecommenderDep,
    writes: SubmissionWriterDep,
    idempotency_key: IdempotencyKeyHeader = None,
) -> Response:
    """Score the answers, run the model in-process, store everything in one transaction
    (shared with the submissions that arrived at the same time: `db/write_batcher.py`).

    With an `Idempotency-Key`, a retry returns the first response and stores nothing."""
    taken = await take_test(
        body, idempotency_key=idempotency_key, db=db, recommender=recommender, writes=writes
    )
    if isinstance(taken, StoredResponse):
        return stored_response(taken)
    return json_response(taken)


@router.get("/test-responses/count", response_model=Envelope[CountData], responses=ERRORS)
def get_test_response_count(db: DatabaseDep) -> Envelope[CountData]:
    with db.read() as session:
        count = count_test_responses(session)
    return Envelope(
        message="Counted the test responses.",
        data=CountData(test_response=CountOut(count=count)),
    )
