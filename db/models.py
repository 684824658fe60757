"""The tables of the original's ERD as SQLAlchemy 2.0 typed models.

Additions to the original, each for a reason: `hobby.active` / `hobby_type.active` (a new
catalogue retires entries without breaking stored rows that point at them),
`recommendation.model_version` (which model produced it), `recommendation.token_sha256`
(who may answer its survey), `test_response.test_id` (which
test was answered), `catalog_version` (what catalogue is loaded) and `idempotency_key`
(a retried POST is answered from it instead of stored twice) and `counter` (exact totals
kept in the writers' transactions, so counting costs the same at any size). MySQL tables are
InnoDB/utf8mb4 so Korean text and foreign keys work.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    SmallInteger,
    String,
    Text,
    UniqueConstraint,
    func,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# BIGINT ids on MySQL; SQLite only auto-increments a column declared INTEGER.
Id = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)


class Timestamped:
    """Every table of the ERD has created_at and updated_at."""

    created_at: Mapped[datetime] = mapped_column(DateTime, server_default=func.now())
    updated_at: Mapped[datetime] = mapped_column(
        DateTime, server_default=func.now(), onupdate=func.now()
    )


MYSQL = {
    "mysql_engine": "InnoDB",
    "mysql_charset": "utf8mb4",
    "mysql_collate": "utf8mb4_unicode_ci",
}


class Test(Timestamped, Base):
    __tablename__ = "test"
    __table_args__ = (UniqueConstraint("version"), MYSQL)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    version: Mapped[int] = mapped_column(Integer)


class Question(Timestamped, Base):
    __tablename__ = "question"
    __table_args__ = (UniqueConstraint("test_id", "number"), MYSQL)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("test.id"))
    number: Mapped[int] = mapped_column(SmallInteger)
    content: Mapped[str] = mapped_column(Text)


class Answer(Timestamped, Base):
    __tablename__ = "answer"
    __table_args__ = (UniqueConstraint("question_id", "number"), MYSQL)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    question_id: Mapped[int] = mapped_column(ForeignKey("question.id"))
    number: Mapped[int] = mapped_column(SmallInteger)
    content: Mapped[str] = mapped_column(Text)


class Hobby(Timestamped, Base):
    __tablename__ = "hobby"
    __table_args__ = (
        UniqueConstraint("original_name"),
        Index("ix_hobby_active_recommend_count", "active", "recommend_count"),
        MYSQL,
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    # Binary collation on MySQL: the identity is the exact name, as in Python and SQLite,
    # so renaming "K-POP" to "K-pop" is a rename, not a clash with itself.
    original_name: Mapped[str] = mapped_column(
        String(200, collation="utf8mb4_bin").with_variant(String(200), "sqlite")
    )
    short_name: Mapped[str] = mapped_column(String(50))
    summary: Mapped[str] = mapped_column(Text)
    description: Mapped[str] = mapped_column(Text)
    image_key: Mapped[str] = mapped_column(String(100))
    content_url: Mapped[str] = mapped_column(String(500))
    recommend_count: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")


class HobbyType(Timestamped, Base):
    __tablename__ = "hobby_type"
    __table_args__ = (UniqueConstraint("mbti_type"), MYSQL)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    description: Mapped[str] = mapped_column(Text)
    mbti_type: Mapped[str] = mapped_column(String(4))
    active: Mapped[bool] = mapped_column(Boolean, default=True, server_default="1")


class FitHobbyType(Timestamped, Base):
    __tablename__ = "fit_hobby_type"
    __table_args__ = (UniqueConstraint("hobby_type_id", "ranking"), MYSQL)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    hobby_type_id: Mapped[int] = mapped_column(ForeignKey("hobby_type.id"))
    mbti_type: Mapped[str] = mapped_column(String(4))
    ranking: Mapped[int] = mapped_column(SmallInteger)


class User(Timestamped, Base):
    __tablename__ = "user"
    __table_args__ = (MYSQL,)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    name: Mapped[str] = mapped_column(String(20))


class TestResponse(Timestamped, Base):
    __tablename__ = "test_response"
    __table_args__ = (Index("ix_test_response_created_at", "created_at"), MYSQL)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    test_id: Mapped[int] = mapped_column(ForeignKey("test.id"), index=True)


class TestResponseDetail(Timestamped, Base):
    __tablename__ = "test_response_detail"
    __table_args__ = (MYSQL,)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    test_response_id: Mapped[int] = mapped_column(ForeignKey("test_response.id"), index=True)
    answer_id: Mapped[int] = mapped_column(ForeignKey("answer.id"), index=True)


class Survey(Timestamped, Base):
    __tablename__ = "survey"
    __table_args__ = (MYSQL,)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    satisfaction: Mapped[int] = mapped_column(SmallInteger)


class Recommendation(Timestamped, Base):
    __tablename__ = "recommendation"
    __table_args__ = (UniqueConstraint("test_response_id"), MYSQL)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    test_response_id: Mapped[int] = mapped_column(ForeignKey("test_response.id"))
    user_id: Mapped[int] = mapped_column(ForeignKey("user.id"), index=True)
    hobby_type_id: Mapped[int] = mapped_column(ForeignKey("hobby_type.id"), index=True)
    score_e: Mapped[int] = mapped_column(SmallInteger)
    score_n: Mapped[int] = mapped_column(SmallInteger)
    score_f: Mapped[int] = mapped_column(SmallInteger)
    score_j: Mapped[int] = mapped_column(SmallInteger)
    model_version: Mapped[str] = mapped_column(String(64), index=True)
    # SHA-256 (hex) of the token POST /test-responses returned; the token itself is never
    # stored. NULL for rows from before tokens (db/recommendations.py, `survey_owner`).
    token_sha256: Mapped[str | None] = mapped_column(String(64))


class RecommendationHobby(Timestamped, Base):
    __tablename__ = "recommendation_hobby"
    __table_args__ = (
        UniqueConstraint("recommendation_id", "ranking"),
        UniqueConstraint("recommendation_id", "hobby_id"),
        UniqueConstraint("survey_id"),
        MYSQL,
    )
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    recommendation_id: Mapped[int] = mapped_column(ForeignKey("recommendation.id"))
    hobby_id: Mapped[int] = mapped_column(ForeignKey("hobby.id"), index=True)
    ranking: Mapped[int] = mapped_column(SmallInteger)
    survey_id: Mapped[int | None] = mapped_column(ForeignKey("survey.id"))


class CatalogVersion(Timestamped, Base):
    """One row per distinct catalogue ever loaded; the newest row is the active catalogue."""

    __tablename__ = "catalog_version"
    __table_args__ = (MYSQL,)
    id: Mapped[int] = mapped_column(Id, primary_key=True)
    content_sha256: Mapped[str] = mapped_column(String(64), index=True)
    test_version: Mapped[int] = mapped_column(Integer)
    source: Mapped[str] = mapped_column(String(500))


class IdempotencyKey(Timestamped, Base):
    """A client's `Idempotency-Key` and the response its first request got.

    Written in the same transaction as the submission it guards (`db/idempotency.py`), so
    a key exists exactly when its submission does; the primary key makes a second writer
    of the same key wait for the first and then fail, on every replica.
    """

    __tablename__ = "idempotency_key"
    __table_args__ = (Index("ix_idempotency_key_created_at", "created_at"), MYSQL)
    # Binary collation on MySQL: keys are compared exactly (case-sensitive), as on SQLite.
    key: Mapped[str] = mapped_column(
        String(255, collation="utf8mb4_bin").with_variant(String(255), "sqlite"),
        primary_key=True,
    )
    request_sha256: Mapped[str] = mapped_column(String(64))
    # Filled by the same transaction that inserted the row, so never seen empty by others.
    response_status: Mapped[int | None] = mapped_column(SmallInteger)
    response_body: Mapped[str | None] = mapped_column(Text)


class Counter(Base):
    """An exact running total, bumped (+k, never read-modify-write) in the same transaction
    that writes the k rows it counts, so reading it is one primary-key lookup however large
    the table grows; `SELECT COUNT(*)` on InnoDB scans an index (90-140 ms at a million
    rows). Seeded from COUNT(*) by migration 0003."""

    __tablename__ = "counter"
    __table_args__ = (MYSQL,)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    value: Mapped[int] = mapped_column(BigInteger, default=0, server_default="0")


TEST_RESPONSES = "test_response"  # the counter of stored test responses (submissions)
