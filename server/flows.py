"""Use cases behind thin routes: each flow joins model/ and db/ for one thing a client does.

`take_test` is POST /test-responses. Its four jobs are one function each: the idempotent
replay (`_replay`), the model's answer (the recommender), the rows to store
(`_submission`), and the write shared with the submissions that arrived at the same time
(`_store`, `db/write_batcher.py`). It answers with the stored response of a replay or the
new envelope; the route turns either into HTTP.
"""

from __future__ import annotations

from sqlalchemy.exc import DataError, IntegrityError
from starlette.concurrency import run_in_threadpool

from db.idempotency import KeyReused, StoredResponse, fingerprint, lookup
from db.ownership import new_token
from db.recommendations import Recorded, Submission
from db.session import Database
from db.write_batcher import PendingWrite, SubmissionWriter, WriteResult
from server.errors import ApiError
from server.idempotency import key_reused, normalize_key
from server.model_service import Recommendation, Recommender
from server.schemas import (
    Envelope,
    RecommendationCreated,
    TestResponseCreated,
    TestResponseIn,
    UserOut,
)

RECOMMENDED = 3
Created = Envelope[TestResponseCreated]


async def take_test(
    body: TestResponseIn,
    *,
    idempotency_key: str | None,
    db: Database,
    recommender: Recommender,
    writes: SubmissionWriter,
) -> StoredResponse | Created:
    """Score the answers, run the model, store everything in one transaction.

    With an `Idempotency-Key` (the header's raw value), a retry returns the first response
    and stores nothing."""
    answers = body.answers()
    key = normalize_key(idempotency_key) if idempotency_key is not None else None
    request_sha256 = fingerprint("POST /test-responses", body.user.name, sorted(answers.items()))
    if key is not None and (stored := await _replay(db, key, request_sha256)) is not None:
        return stored
    recommendation = await recommender.recommend(answers)
    token, token_sha256 = new_token()  # replays return it from the key's stored response
    submission = _submission(body.user.name, answers, recommendation, token_sha256)

    def created(recorded: Recorded) -> Created:
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
    written = await _store(writes, pending)
    return written if isinstance(written, StoredResponse) else created(written)


async def _replay(db: Database, key: str, request_sha256: str) -> StoredResponse | None:
    """The response first given for this key, or None when the key is new."""
    try:
        return await run_in_threadpool(lookup, db, key, request_sha256)
    except KeyReused:
        raise key_reused() from None


def _submission(
    user_name: str, answers: dict[int, int], recommendation: Recommendation, token_sha256: str
) -> Submission:
    """The rows of one test taken: the model's top three in catalogue ids."""
    catalog = recommendation.catalog
    keys = recommendation.hobby_keys[:RECOMMENDED]
    hobby_type = catalog.type_by_mbti.get(recommendation.mbti_type)
    if len(keys) < RECOMMENDED or hobby_type is None:
        raise ApiError(503, "The model and the catalogue disagree; an operator must fix it.")
    test = catalog.active_test
    return Submission(
        user_name=user_name,
        test_id=test.id,
        answer_ids=[test.answer_id(q, a) for q, a in sorted(answers.items())],
        hobby_type_id=hobby_type.id,
        scores=recommendation.scores,
        hobby_ids=[catalog.hobby_by_key[key].id for key in keys],
        model_version=recommendation.model_version,
        token_sha256=token_sha256,
    )


async def _store(writes: SubmissionWriter, pending: PendingWrite) -> WriteResult:
    try:
        return await writes.submit(pending)
    except KeyReused:  # another request committed this key with another body meanwhile
        raise key_reused() from None
    except (IntegrityError, DataError):  # the database refused this one submission's rows
        raise ApiError(
            503, "The database refused to store this submission.", headers={"Retry-After": "2"}
        ) from None
