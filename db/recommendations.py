"""Use-case queries for test responses, recommendations and surveys.

`write_submissions` writes any number of submissions in the caller's one transaction, with
a fixed number of statements whatever their number (the write batcher,
`db/write_batcher.py`, hands it every submission that arrived together). Statement order
matters on MySQL:

- The hobbies' `recommend_count` rows are the hot locks every submission takes. They are
  bumped late, by one statement that adds +k to each hobby the batch names (never
  read-modify-write); InnoDB locks the rows in primary-key order, so two batches never
  deadlock on them, and they are held only for the last statements and the commit.
- The bump still runs before the `recommendation_hobby` rows are inserted: inserting a
  child row takes a shared lock on its parent, and taking the exclusive lock first means
  two concurrent batches naming a hobby queue instead of deadlocking on a
  shared-to-exclusive upgrade.
- The exact total (`counter`) is bumped by +k last, in the same transaction.

Ids: every caller gets its own, and nothing assumes a multi-row insert got consecutive
ids (MySQL's `innodb_autoinc_lock_mode=2` does not promise it). Where the database has
`INSERT ... RETURNING` (SQLite, MariaDB >= 10.5) one multi-row insert returns them,
matched to rows by SQLAlchemy's insertmanyvalues (`sort_by_parameter_order`). Where it
does not (MySQL 8), users are inserted one row at a time (`lastrowid`), and the test
responses and recommendations in one multi-row insert each, read back by the column that
names their parent (one per submission: `test_response.user_id`,
`recommendation.test_response_id`).

On MySQL/MariaDB the writer's own connections accept multi-statement scripts
(`Database.transact_core`), and the whole batch is one script, one round trip before the
commit: each submission's rows are inserted one by one inside it, each parent's id taken
with `LAST_INSERT_ID()` into a session variable that its children use, and the ids come
back from one final SELECT. Round trips, not statements, are the client's cost (about
60 µs of CPU each in PyMySQL, SQLAlchemy and the kernel here): one submission alone went
from eight to two, 900 -> 550 µs of CPU (README, Batched submissions). Parameters are
escaped by the driver, as everywhere.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import (
    BigInteger,
    Connection,
    CursorResult,
    Table,
    bindparam,
    case,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session

from db.models import (
    TEST_RESPONSES,
    Counter,
    Hobby,
    IdempotencyKey,
    Recommendation,
    RecommendationHobby,
    Survey,
    TestResponse,
    TestResponseDetail,
    User,
)
from db.session import MULTI_STATEMENTS


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
    token_sha256: str | None = None  # db/ownership.py `token_digest`


@dataclass(frozen=True)
class Recorded:
    user_id: int
    test_response_id: int
    recommendation_id: int


def _new_id(
    executor: Session | Connection, statement: Any, row: dict[str, Any] | None = None
) -> int:
    """Execute a single-row INSERT and return the new primary key."""
    result: CursorResult[Any] = executor.execute(statement, row)  # type: ignore[assignment]
    return int(result.inserted_primary_key[0])  # type: ignore[index]


# Built once: SQLAlchemy's compiled cache keys on the statement, and building it costs CPU.
_USERS: Table = User.__table__  # type: ignore[assignment]
_RESPONSES: Table = TestResponse.__table__  # type: ignore[assignment]
_RECOMMENDATIONS: Table = Recommendation.__table__  # type: ignore[assignment]
_INSERT = {table.name: insert(table) for table in (_USERS, _RESPONSES, _RECOMMENDATIONS)}
_RETURNING = {
    table.name: insert(table).returning(table.c.id, sort_by_parameter_order=True)
    for table in (_USERS, _RESPONSES, _RECOMMENDATIONS)
}
_INSERT_DETAILS = insert(TestResponseDetail)
_INSERT_KEYS = insert(IdempotencyKey)
_INSERT_LINKS = insert(RecommendationHobby)
_BUMP_HOBBIES = (
    update(Hobby)
    .where(Hobby.id.in_(bindparam("hobby_ids", expanding=True)))
    .values(recommend_count=Hobby.recommend_count + bindparam("added", type_=BigInteger()))
)
_BUMP_TOTAL = (
    update(Counter)
    .where(Counter.name == TEST_RESPONSES)
    .values(value=Counter.value + bindparam("added", type_=BigInteger()))
)


def has_returning(connection: Connection) -> bool:
    """Whether one multi-row INSERT can return its ids in parameter order."""
    return bool(connection.dialect.insert_executemany_returning_sort_by_parameter_order)


def _insert_ids(
    connection: Connection,
    table: Table,
    rows: list[dict[str, Any]],
    returning: bool,
    parent: str | None,
) -> list[int]:
    """Insert `rows` into `table`; their new ids, in the order of `rows`.

    `parent`: a column whose value is distinct on every row, by which rows inserted
    without RETURNING are read back; without one, rows go one at a time."""
    plain = _INSERT[table.name]
    if len(rows) == 1 or (parent is None and not returning):
        return [_new_id(connection, plain, row) for row in rows]
    if returning:
        result = connection.execute(_RETURNING[table.name], rows)
        return [int(row_id) for row_id in result.scalars()]
    assert parent is not None
    connection.execute(plain, rows)
    column = table.c[parent]
    values = [row[parent] for row in rows]
    found = {
        value: row_id
        for value, row_id in connection.execute(
            select(column, table.c.id).where(column.in_(values))
        )
    }
    return [int(found[value]) for value in values]


def _recommendation_row(submission: Submission, response_id: int, user_id: int) -> dict[str, Any]:
    score_e, score_n, score_f, score_j = submission.scores
    return {
        "test_response_id": response_id,
        "user_id": user_id,
        "hobby_type_id": submission.hobby_type_id,
        "score_e": score_e,
        "score_n": score_n,
        "score_f": score_f,
        "score_j": score_j,
        "model_version": submission.model_version,
        "token_sha256": submission.token_sha256,
    }


def write_submissions(
    connection: Connection,
    submissions: Sequence[Submission],
    *,
    returning: bool | None = None,
    script: bool | None = None,
    keys: Sequence[tuple[str, str]] = (),
) -> list[Recorded]:
    """Store every submission (users, test responses, their answers, recommendations and
    ranked hobbies), bump each named hobby's count and the total: one transaction, the
    caller's. `keys` ((key, request hash) pairs) are idempotency-key rows inserted first,
    before anything else (`db/write_batcher.py` fills them once the ids are known).

    By default (None) a script where the connection accepts one, else RETURNING where the
    database has it (see the module docstring); tests force each path with `script=False`
    and `returning=False` (the MySQL 8 path) on every backend."""
    if not submissions:
        return []
    if script is None:
        script = accepts_scripts(connection)
    if script:
        return _write_script(connection, submissions, keys)
    if keys:
        connection.execute(_INSERT_KEYS, [{"key": key, "request_sha256": sha} for key, sha in keys])
    if returning is None:
        returning = has_returning(connection)
    user_ids = _insert_ids(
        connection, _USERS, [{"name": s.user_name} for s in submissions], returning, None
    )
    response_ids = _insert_ids(
        connection,
        _RESPONSES,
        [
            {"user_id": user_id, "test_id": s.test_id}
            for s, user_id in zip(submissions, user_ids, strict=True)
        ],
        returning,
        "user_id",
    )
    connection.execute(
        _INSERT_DETAILS,
        [
            {"test_response_id": response_id, "answer_id": answer_id}
            for s, response_id in zip(submissions, response_ids, strict=True)
            for answer_id in s.answer_ids
        ],
    )
    recommendation_ids = _insert_ids(
        connection,
        _RECOMMENDATIONS,
        [
            _recommendation_row(s, response_id, user_id)
            for s, response_id, user_id in zip(submissions, response_ids, user_ids, strict=True)
        ],
        returning,
        "test_response_id",
    )
    increments: dict[int, int] = {}
    for s in submissions:
        for hobby_id in s.hobby_ids:
            increments[hobby_id] = increments.get(hobby_id, 0) + 1
    _bump_hobbies(connection, increments)
    connection.execute(
        _INSERT_LINKS,
        [
            {"recommendation_id": recommendation_id, "hobby_id": hobby_id, "ranking": ranking}
            for s, recommendation_id in zip(submissions, recommendation_ids, strict=True)
            for ranking, hobby_id in enumerate(s.hobby_ids, start=1)
        ],
    )
    connection.execute(_BUMP_TOTAL, {"added": len(submissions)})
    return [
        Recorded(user_id=u, test_response_id=t, recommendation_id=r)
        for u, t, r in zip(user_ids, response_ids, recommendation_ids, strict=True)
    ]


def accepts_scripts(connection: Connection) -> bool:
    """Whether this connection runs several statements sent at once (MySQL's
    CLIENT.MULTI_STATEMENTS, which only the writer's connections have)."""
    if connection.dialect.name != "mysql":
        return False
    raw = connection.connection.dbapi_connection
    return bool(getattr(raw, "client_flag", 0) & MULTI_STATEMENTS)


_SCRIPT_MEMBER = (
    "INSERT INTO `user` (name) VALUES (%s);SET @u{i}=LAST_INSERT_ID();"
    "INSERT INTO test_response (user_id, test_id) VALUES (@u{i}, %s);"
    "SET @t{i}=LAST_INSERT_ID();"
    "INSERT INTO test_response_detail (test_response_id, answer_id) VALUES {details};"
    "INSERT INTO recommendation (test_response_id, user_id, hobby_type_id,"
    " score_e, score_n, score_f, score_j, model_version, token_sha256)"
    " VALUES (@t{i}, @u{i}, %s, %s, %s, %s, %s, %s, %s);SET @r{i}=LAST_INSERT_ID();"
)


def _write_script(
    connection: Connection, submissions: Sequence[Submission], keys: Sequence[tuple[str, str]]
) -> list[Recorded]:
    """`write_submissions` as one multi-statement script (see the module docstring)."""
    parts: list[str] = []
    args: list[Any] = []
    if keys:
        values = ",".join("(%s, %s)" for _ in keys)
        parts.append(f"INSERT INTO idempotency_key (`key`, request_sha256) VALUES {values};")
        args += [part for pair in keys for part in pair]
    increments: dict[int, int] = {}
    links: list[str] = []
    for i, s in enumerate(submissions):
        details = ",".join(f"(@t{i}, %s)" for _ in s.answer_ids)
        parts.append(_SCRIPT_MEMBER.format(i=i, details=details))
        args += [s.user_name, s.test_id, *s.answer_ids, s.hobby_type_id, *s.scores]
        args += [s.model_version, s.token_sha256]
        for ranking, hobby_id in enumerate(s.hobby_ids, start=1):
            links.append(f"(@r{i}, {int(hobby_id)}, {ranking})")
            increments[hobby_id] = increments.get(hobby_id, 0) + 1
    ids = sorted(increments)  # InnoDB locks them in this (primary key) order
    added = " ".join(f"WHEN {int(h)} THEN {increments[h]}" for h in ids)
    parts.append(
        f"UPDATE hobby SET recommend_count = recommend_count + CASE id {added} END "
        f"WHERE id IN ({','.join(str(int(h)) for h in ids)});"
    )
    parts.append(
        "INSERT INTO recommendation_hobby (recommendation_id, hobby_id, ranking) "
        f"VALUES {','.join(links)};"
    )
    parts.append(f"UPDATE counter SET value = value + {len(submissions)} WHERE name = %s;")
    args.append(TEST_RESPONSES)
    parts.append("SELECT " + ",".join(f"@u{i},@t{i},@r{i}" for i in range(len(submissions))))
    row = _run_script(connection, "".join(parts), args)
    return [
        Recorded(
            user_id=int(row[3 * i]),
            test_response_id=int(row[3 * i + 1]),
            recommendation_id=int(row[3 * i + 2]),
        )
        for i in range(len(submissions))
    ]


def _run_script(connection: Connection, script: str, args: list[Any]) -> tuple[Any, ...]:
    """Run `script` on the connection's DBAPI cursor; the row of its last statement.

    Errors are raised as SQLAlchemy's, as if SQLAlchemy had run it (so the API's handlers
    and the batcher's failure rules see the usual exception classes)."""
    dialect = connection.dialect
    raw = connection.connection.dbapi_connection
    assert raw is not None
    cursor = raw.cursor()
    try:
        cursor.execute(script, args)
        while cursor.description is None:  # the statements before the SELECT
            if not cursor.nextset():
                raise RuntimeError("the write script returned no ids")
        row = cursor.fetchone()
        if row is None:  # pragma: no cover - a SELECT of variables always has its row
            raise RuntimeError("the write script returned no ids")
    except dialect.loaded_dbapi.Error as exc:
        raise DBAPIError.instance(
            script[:200],
            None,
            exc,
            dialect.loaded_dbapi.Error,
            connection_invalidated=dialect.is_disconnect(exc, raw, cursor),
            dialect=dialect,
        ) from exc
    finally:
        cursor.close()
    return tuple(row)


def _bump_hobbies(connection: Connection, increments: dict[int, int]) -> None:
    """One UPDATE: +k for each hobby (k = how many of the batch name it), rows in id order."""
    ids = sorted(increments)
    counts = set(increments.values())
    if len(counts) == 1:  # every submission alone, and many batches: one cached statement
        connection.execute(_BUMP_HOBBIES, {"hobby_ids": ids, "added": counts.pop()})
        return
    added = case({hobby_id: increments[hobby_id] for hobby_id in ids}, value=Hobby.id)
    connection.execute(
        update(Hobby).where(Hobby.id.in_(ids)).values(recommend_count=Hobby.recommend_count + added)
    )


def record_submission(session: Session, submission: Submission) -> Recorded:
    """One submission in the session's transaction (`write_submissions` of one)."""
    return write_submissions(session.connection(), [submission])[0]


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


# Built once: constructing this select (its joins, comparisons and cache key) cost more CPU
# than running it, about 200 of the 800 µs of a GET /recommendations/{id}.
_LOAD_RECOMMENDATION = (
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
    .where(Recommendation.id == bindparam("recommendation_id"))
    .order_by(RecommendationHobby.ranking)
)


def load_recommendation(
    session: Session | Connection, recommendation_id: int
) -> StoredRecommendation:
    """One round trip: the recommendation, its user and its ranked hobbies with surveys."""
    rows = session.execute(_LOAD_RECOMMENDATION, {"recommendation_id": recommendation_id}).all()
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
    """The exact total, read from its counter: one primary-key lookup at any table size."""
    total = session.scalar(select(Counter.value).where(Counter.name == TEST_RESPONSES))
    if total is None:  # pragma: no cover - migration 0003 seeds the row
        return int(session.scalar(select(func.count()).select_from(TestResponse)) or 0)
    return int(total)


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
