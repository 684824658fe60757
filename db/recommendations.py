"""Use-case queries for test responses, recommendations and surveys.

`record_submission` writes a whole submission in the caller's single transaction. Its
statement order matters on MySQL: the `recommend_count` increment (one atomic
``UPDATE ... SET recommend_count = recommend_count + 1``, never read-modify-write) runs
before the rows that reference those hobbies are inserted. Inserting a child row takes a
shared lock on its parent; taking the exclusive lock first means two concurrent submissions
of the same hobby queue instead of deadlocking on a shared-to-exclusive upgrade.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, CursorResult, func, insert, select, update
from sqlalchemy.orm import Session

from db.models import (
    Hobby,
    Recommendation,
    RecommendationHobby,
    Survey,
    TestResponse,
    TestResponseDetail,
    User,
)


class NotFound(LookupError):
    """No row with that id."""


class NotInRecommendation(ValueError):
    """A survey named a hobby that is not one of the recommendation's three."""

    def __init__(self, hobby_ids: Sequence[int]) -> None:
        super().__init__(f"hobbies {list(hobby_ids)} are not part of this recommendation")
        self.hobby_ids = list(hobby_ids)


@dataclass(frozen=True)
class Submission:
    """Everything one POST /test-responses stores."""

    user_name: str
    test_id: int
    answer_ids: Sequence[int]
    hobby_type_id: int
    scores: tuple[int, int, int, int]
    hobby_ids: Sequence[int]  # ranked, best first
    model_version: str


@dataclass(frozen=True)
class Recorded:
    user_id: int
    test_response_id: int
    recommendation_id: int


def _new_id(executor: Session | Connection, statement: Any) -> int:
    """Execute a single-row INSERT and return the new primary key."""
    result: CursorResult[Any] = executor.execute(statement)  # type: ignore[assignment]
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def record_submission(session: Session, submission: Submission) -> Recorded:
    """Insert user, test response, details and recommendation; bump the hobbies' counts.

    Core statements on the session's connection (same transaction): the ORM's bulk-insert
    layer cost about a sixth of this function's CPU and bought nothing here (README,
    Benchmarks)."""
    connection = session.connection()
    user_id = _new_id(connection, insert(User).values(name=submission.user_name))
    response_id = _new_id(
        connection, insert(TestResponse).values(user_id=user_id, test_id=submission.test_id)
    )
    connection.execute(
        insert(TestResponseDetail),
        [
            {"test_response_id": response_id, "answer_id": answer_id}
            for answer_id in submission.answer_ids
        ],
    )
    score_e, score_n, score_f, score_j = submission.scores
    recommendation_id = _new_id(
        connection,
        insert(Recommendation).values(
            test_response_id=response_id,
            user_id=user_id,
            hobby_type_id=submission.hobby_type_id,
            score_e=score_e,
            score_n=score_n,
            score_f=score_f,
            score_j=score_j,
            model_version=submission.model_version,
        ),
    )
    connection.execute(
        update(Hobby)
        .where(Hobby.id.in_(submission.hobby_ids))
        .values(recommend_count=Hobby.recommend_count + 1)
        .execution_options(synchronize_session=False)
    )
    connection.execute(
        insert(RecommendationHobby),
        [
            {"recommendation_id": recommendation_id, "hobby_id": hobby_id, "ranking": ranking}
            for ranking, hobby_id in enumerate(submission.hobby_ids, start=1)
        ],
    )
    return Recorded(
        user_id=user_id, test_response_id=response_id, recommendation_id=recommendation_id
    )


@dataclass(frozen=True)
class RecommendedHobby:
    hobby_id: int
    ranking: int
    satisfaction: int | None


@dataclass(frozen=True)
class StoredRecommendation:
    id: int
    user_id: int
    user_name: str
    hobby_type_id: int
    scores: tuple[int, int, int, int]
    model_version: str
    hobbies: tuple[RecommendedHobby, ...]  # by ranking

    @property
    def did_survey(self) -> bool:
        return any(hobby.satisfaction is not None for hobby in self.hobbies)


def load_recommendation(session: Session, recommendation_id: int) -> StoredRecommendation:
    """One round trip: the recommendation, its user and its ranked hobbies with surveys."""
    rows = session.execute(
        select(
            Recommendation.user_id,
            User.name,
            Recommendation.hobby_type_id,
            Recommendation.score_e,
            Recommendation.score_n,
            Recommendation.score_f,
            Recommendation.score_j,
            Recommendation.model_version,
            RecommendationHobby.hobby_id,
            RecommendationHobby.ranking,
            Survey.satisfaction,
        )
        .join(User, User.id == Recommendation.user_id)
        .join(RecommendationHobby, RecommendationHobby.recommendation_id == Recommendation.id)
        .outerjoin(Survey, Survey.id == RecommendationHobby.survey_id)
        .where(Recommendation.id == recommendation_id)
        .order_by(RecommendationHobby.ranking)
    ).all()
    if not rows:
        raise NotFound(f"recommendation {recommendation_id} does not exist")
    first = rows[0]
    return StoredRecommendation(
        id=recommendation_id,
        user_id=first.user_id,
        user_name=first.name,
        hobby_type_id=first.hobby_type_id,
        scores=(first.score_e, first.score_n, first.score_f, first.score_j),
        model_version=first.model_version,
        hobbies=tuple(
            RecommendedHobby(row.hobby_id, row.ranking, row.satisfaction) for row in rows
        ),
    )


def record_survey(
    session: Session, recommendation_id: int, ratings: Sequence[tuple[int, int]]
) -> None:
    """Store (hobby id, satisfaction) ratings; a second rating of a hobby replaces the first.

    The recommendation's hobby rows are locked first (``FOR UPDATE``), so two surveys of the
    same recommendation at once are applied one after the other and never create two
    survey rows for one hobby.
    """
    links = {
        link.hobby_id: link
        for link in session.scalars(
            select(RecommendationHobby)
            .where(RecommendationHobby.recommendation_id == recommendation_id)
            .with_for_update()
        )
    }
    if not links:
        raise NotFound(f"recommendation {recommendation_id} does not exist")
    strangers = [hobby_id for hobby_id, _ in ratings if hobby_id not in links]
    if strangers:
        raise NotInRecommendation(strangers)
    for hobby_id, satisfaction in ratings:
        link = links[hobby_id]
        if link.survey_id is not None:
            session.execute(
                update(Survey).where(Survey.id == link.survey_id).values(satisfaction=satisfaction)
            )
        else:
            link.survey_id = _new_id(session, insert(Survey).values(satisfaction=satisfaction))
    session.flush()


def count_test_responses(session: Session) -> int:
    return int(session.scalar(select(func.count()).select_from(TestResponse)) or 0)


HOBBY_SORTS = {
    "recommendCount": Hobby.recommend_count,
    "id": Hobby.id,
    "shortName": Hobby.short_name,
    "createdAt": Hobby.created_at,
}


@dataclass(frozen=True)
class RankedHobby:
    """A ranking row; names come from the same query, so a catalogue loaded a moment ago
    (not yet in a worker's in-memory snapshot) cannot make the ranking fail."""

    hobby_id: int
    short_name: str
    image_key: str
    recommend_count: int


def rank_hobbies(
    session: Session, *, page: int, size: int, sort: str, descending: bool
) -> tuple[list[RankedHobby], int]:
    """A page of active hobbies ordered by `sort`, ties broken by id so pages are stable."""
    column = HOBBY_SORTS[sort]
    order: list[Any] = [column.desc() if descending else column.asc()]
    if sort != "id":
        order.append(Hobby.id.desc() if descending else Hobby.id.asc())
    rows = session.execute(
        select(Hobby.id, Hobby.short_name, Hobby.image_key, Hobby.recommend_count)
        .where(Hobby.active.is_(True))
        .order_by(*order)
        .limit(size)
        .offset(page * size)
    ).all()
    total = session.scalar(select(func.count()).select_from(Hobby).where(Hobby.active.is_(True)))
    ranked = [
        RankedHobby(row.id, row.short_name, row.image_key, row.recommend_count) for row in rows
    ]
    return ranked, int(total or 0)
