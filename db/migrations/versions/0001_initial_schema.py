"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-27 21:12:05.512476
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "catalog_version",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("content_sha256", sa.String(length=64), nullable=False),
        sa.Column("test_version", sa.Integer(), nullable=False),
        sa.Column("source", sa.String(length=500), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_catalog_version")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("catalog_version", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_catalog_version_content_sha256"), ["content_sha256"], unique=False
        )

    op.create_table(
        "hobby",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "original_name",
            sa.String(length=200, collation="utf8mb4_bin").with_variant(
                sa.String(length=200), "sqlite"
            ),
            nullable=False,
        ),
        sa.Column("short_name", sa.String(length=50), nullable=False),
        sa.Column("summary", sa.Text(), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("image_key", sa.String(length=100), nullable=False),
        sa.Column("content_url", sa.String(length=500), nullable=False),
        sa.Column("recommend_count", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hobby")),
        sa.UniqueConstraint("original_name", name=op.f("uq_hobby_original_name")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("hobby", schema=None) as batch_op:
        batch_op.create_index(
            "ix_hobby_active_recommend_count", ["active", "recommend_count"], unique=False
        )

    op.create_table(
        "hobby_type",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("mbti_type", sa.String(length=4), nullable=False),
        sa.Column("active", sa.Boolean(), server_default="1", nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_hobby_type")),
        sa.UniqueConstraint("mbti_type", name=op.f("uq_hobby_type_mbti_type")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "survey",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("satisfaction", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_survey")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "test",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test")),
        sa.UniqueConstraint("version", name=op.f("uq_test_version")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "user",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("name", sa.String(length=20), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_user")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "fit_hobby_type",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "hobby_type_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("mbti_type", sa.String(length=4), nullable=False),
        sa.Column("ranking", sa.SmallInteger(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hobby_type_id"],
            ["hobby_type.id"],
            name=op.f("fk_fit_hobby_type_hobby_type_id_hobby_type"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_fit_hobby_type")),
        sa.UniqueConstraint(
            "hobby_type_id", "ranking", name=op.f("uq_fit_hobby_type_hobby_type_id_ranking")
        ),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "question",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("test_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("number", sa.SmallInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(["test_id"], ["test.id"], name=op.f("fk_question_test_id_test")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_question")),
        sa.UniqueConstraint("test_id", "number", name=op.f("uq_question_test_id_number")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "test_response",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("test_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["test_id"], ["test.id"], name=op.f("fk_test_response_test_id_test")
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_test_response_user_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_response")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("test_response", schema=None) as batch_op:
        batch_op.create_index("ix_test_response_created_at", ["created_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_test_response_test_id"), ["test_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_test_response_user_id"), ["user_id"], unique=False)

    op.create_table(
        "answer",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "question_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("number", sa.SmallInteger(), nullable=False),
        sa.Column("content", sa.Text(), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["question_id"], ["question.id"], name=op.f("fk_answer_question_id_question")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_answer")),
        sa.UniqueConstraint("question_id", "number", name=op.f("uq_answer_question_id_number")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    op.create_table(
        "recommendation",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "test_response_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "hobby_type_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("score_e", sa.SmallInteger(), nullable=False),
        sa.Column("score_n", sa.SmallInteger(), nullable=False),
        sa.Column("score_f", sa.SmallInteger(), nullable=False),
        sa.Column("score_j", sa.SmallInteger(), nullable=False),
        sa.Column("model_version", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hobby_type_id"],
            ["hobby_type.id"],
            name=op.f("fk_recommendation_hobby_type_id_hobby_type"),
        ),
        sa.ForeignKeyConstraint(
            ["test_response_id"],
            ["test_response.id"],
            name=op.f("fk_recommendation_test_response_id_test_response"),
        ),
        sa.ForeignKeyConstraint(
            ["user_id"], ["user.id"], name=op.f("fk_recommendation_user_id_user")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommendation")),
        sa.UniqueConstraint("test_response_id", name=op.f("uq_recommendation_test_response_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("recommendation", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recommendation_hobby_type_id"), ["hobby_type_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_recommendation_model_version"), ["model_version"], unique=False
        )
        batch_op.create_index(batch_op.f("ix_recommendation_user_id"), ["user_id"], unique=False)

    op.create_table(
        "recommendation_hobby",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "recommendation_id",
            sa.BigInteger().with_variant(sa.Integer(), "sqlite"),
            nullable=False,
        ),
        sa.Column("hobby_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ranking", sa.SmallInteger(), nullable=False),
        sa.Column("survey_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["hobby_id"], ["hobby.id"], name=op.f("fk_recommendation_hobby_hobby_id_hobby")
        ),
        sa.ForeignKeyConstraint(
            ["recommendation_id"],
            ["recommendation.id"],
            name=op.f("fk_recommendation_hobby_recommendation_id_recommendation"),
        ),
        sa.ForeignKeyConstraint(
            ["survey_id"], ["survey.id"], name=op.f("fk_recommendation_hobby_survey_id_survey")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recommendation_hobby")),
        sa.UniqueConstraint(
            "recommendation_id",
            "hobby_id",
            name=op.f("uq_recommendation_hobby_recommendation_id_hobby_id"),
        ),
        sa.UniqueConstraint(
            "recommendation_id",
            "ranking",
            name=op.f("uq_recommendation_hobby_recommendation_id_ranking"),
        ),
        sa.UniqueConstraint("survey_id", name=op.f("uq_recommendation_hobby_survey_id")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("recommendation_hobby", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_recommendation_hobby_hobby_id"), ["hobby_id"], unique=False
        )

    op.create_table(
        "test_response_detail",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column(
            "test_response_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column(
            "answer_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False
        ),
        sa.Column("created_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), server_default=sa.func.now(), nullable=False),
        sa.ForeignKeyConstraint(
            ["answer_id"], ["answer.id"], name=op.f("fk_test_response_detail_answer_id_answer")
        ),
        sa.ForeignKeyConstraint(
            ["test_response_id"],
            ["test_response.id"],
            name=op.f("fk_test_response_detail_test_response_id_test_response"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_test_response_detail")),
        mysql_charset="utf8mb4",
        mysql_collate="utf8mb4_unicode_ci",
        mysql_engine="InnoDB",
    )
    with op.batch_alter_table("test_response_detail", schema=None) as batch_op:
        batch_op.create_index(
            batch_op.f("ix_test_response_detail_answer_id"), ["answer_id"], unique=False
        )
        batch_op.create_index(
            batch_op.f("ix_test_response_detail_test_response_id"),
            ["test_response_id"],
            unique=False,
        )


def downgrade() -> None:
    with op.batch_alter_table("test_response_detail", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_test_response_detail_test_response_id"))
        batch_op.drop_index(batch_op.f("ix_test_response_detail_answer_id"))

    op.drop_table("test_response_detail")
    with op.batch_alter_table("recommendation_hobby", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recommendation_hobby_hobby_id"))

    op.drop_table("recommendation_hobby")
    with op.batch_alter_table("recommendation", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_recommendation_user_id"))
        batch_op.drop_index(batch_op.f("ix_recommendation_model_version"))
        batch_op.drop_index(batch_op.f("ix_recommendation_hobby_type_id"))

    op.drop_table("recommendation")
    op.drop_table("answer")
    with op.batch_alter_table("test_response", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_test_response_user_id"))
        batch_op.drop_index(batch_op.f("ix_test_response_test_id"))
        batch_op.drop_index("ix_test_response_created_at")

    op.drop_table("test_response")
    op.drop_table("question")
    op.drop_table("fit_hobby_type")
    op.drop_table("user")
    op.drop_table("test")
    op.drop_table("survey")
    op.drop_table("hobby_type")
    with op.batch_alter_table("hobby", schema=None) as batch_op:
        batch_op.drop_index("ix_hobby_active_recommend_count")

    op.drop_table("hobby")
    with op.batch_alter_table("catalog_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_catalog_version_content_sha256"))

    op.drop_table("catalog_version")
