"""Test responses as training records, streamed: the format `hollang model train` reads.

One record per test response that has a recommendation::

    {"testResponseId", "createdAt", "scores": [E, N, F, J], "mbtiType", "modelVersion",
     "hobbies": [{"key": <originalName>, "ranking", "satisfaction": 1..5 | null}]}

The window's id range is found once on the `created_at` index; then responses are read in
keyset pages along the primary key (`PAGE` ids, then their hobby rows), inside one read
transaction so the pages form one consistent snapshot on InnoDB. Memory stays bounded by
one page however many responses the window holds, and the database never sorts the whole
window: one sorted join over millions of rows makes MySQL build an on-disk temporary table
(and a streaming cursor would hold its connection for minutes).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, func, select
from sqlalchemy.orm import Session

from db.models import (
    Hobby,
    HobbyType,
    Recommendation,
    RecommendationHobby,
    Survey,
    TestResponse,
)

PAGE = 1000


def _window(since: datetime, until: datetime | None) -> list[ColumnElement[bool]]:
    window = [TestResponse.created_at >= since]
    if until is not None:
        window.append(TestResponse.created_at < until)
    return window


def count_responses(session: Session, since: datetime, until: datetime | None) -> int:
    """How many records `export_records` will yield (for a progress bar)."""
    statement = (
        select(func.count())
        .select_from(TestResponse)
        .join(Recommendation, Recommendation.test_response_id == TestResponse.id)
        .where(*_window(since, until))
    )
    return int(session.scalar(statement) or 0)


def export_records(
    session: Session, since: datetime, until: datetime | None, page: int = PAGE
) -> Iterator[dict[str, Any]]:
    """Records of the responses created in [since, until), in id (creation) order."""
    window = _window(since, until)
    low, high = session.execute(
        select(func.min(TestResponse.id), func.max(TestResponse.id)).where(*window)
    ).one()
    if low is None:
        return
    keys = (
        select(TestResponse.id)
        .join(Recommendation, Recommendation.test_response_id == TestResponse.id)
        .where(TestResponse.id <= high, *window)
        .order_by(TestResponse.id)
        .limit(page)
    )
    details = (
        select(
            TestResponse.id,
            TestResponse.created_at,
            Recommendation.score_e,
            Recommendation.score_n,
            Recommendation.score_f,
            Recommendation.score_j,
            Recommendation.hobby_type_id,
            Recommendation.model_version,
            RecommendationHobby.ranking,
            RecommendationHobby.hobby_id,
            Survey.satisfaction,
        )
        .join(Recommendation, Recommendation.test_response_id == TestResponse.id)
        .join(RecommendationHobby, RecommendationHobby.recommendation_id == Recommendation.id)
        .outerjoin(Survey, Survey.id == RecommendationHobby.survey_id)
        .order_by(TestResponse.id, RecommendationHobby.ranking)
    )
    # Hobby names and types are mapped here, not joined: a few hundred rows, and a join lets
    # a planner with stale statistics start from `hobby` and walk every recommended hobby.
    # The type is the one stored with the recommendation (the service stores the type its
    # scores give), so db/ needs no scoring rule from model/.
    names = {
        row.id: row.original_name for row in session.execute(select(Hobby.id, Hobby.original_name))
    }
    types = {
        row.id: row.mbti_type for row in session.execute(select(HobbyType.id, HobbyType.mbti_type))
    }
    last = low - 1
    while ids := session.scalars(keys.where(TestResponse.id > last)).all():
        # A range, not IN (ids): MariaDB turns a long IN list into a derived table and may
        # then scan every recommended hobby. The range holds exactly `ids` (same filters).
        rows = session.execute(details.where(TestResponse.id.between(ids[0], ids[-1]), *window))
        for response_id, group in itertools.groupby(rows, key=lambda row: row.id):
            yield _record(response_id, list(group), names, types)
        last = ids[-1]


def _record(
    response_id: int, hobbies: list[Any], names: dict[int, str], types: dict[int, str]
) -> dict[str, Any]:
    first = hobbies[0]
    return {
        "testResponseId": response_id,
        "createdAt": first.created_at.isoformat(timespec="seconds") + "Z",
        "scores": [first.score_e, first.score_n, first.score_f, first.score_j],
        "mbtiType": types[first.hobby_type_id],
        "modelVersion": first.model_version,
        "hobbies": [
            {"key": names[row.hobby_id], "ranking": row.ranking, "satisfaction": row.satisfaction}
            for row in hobbies
        ],
    }
