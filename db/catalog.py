"""The catalogue: the test, hobbies and hobby types, loaded from JSON and served from memory.

`load_catalog` upserts a catalogue document idempotently: entities are matched by their
stable identity (test version, question/answer number, hobby ``originalName``, hobby type
``mbtiType``), only changed fields are written, entries missing from the new document are
retired (``active = false``) rather than deleted, so stored recommendations that point at
them stay valid. `read_catalog` builds the immutable in-memory snapshot the API serves.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import delete, func, select
from sqlalchemy.orm import Session

from db.models import (
    Answer,
    CatalogVersion,
    FitHobbyType,
    Hobby,
    HobbyType,
    Question,
    Test,
)

DEFAULT_CATALOG = Path(__file__).resolve().parent / "catalog" / "default.json"
MBTI_TYPES = frozenset(a + b + c + d for a in "EI" for b in "NS" for c in "FT" for d in "JP")


class CatalogError(ValueError):
    """A catalogue document that cannot be loaded; the message says why."""


# ---- the document (the JSON schema of the original's catalog.json) ----


class _Doc(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class AnswerDoc(_Doc):
    number: int = Field(ge=1, le=2)
    content: str = Field(min_length=1)


class QuestionDoc(_Doc):
    number: int = Field(ge=1, le=12)
    content: str = Field(min_length=1)
    answers: list[AnswerDoc]

    @model_validator(mode="after")
    def _two_answers(self) -> QuestionDoc:
        if sorted(a.number for a in self.answers) != [1, 2]:
            raise ValueError(f"question {self.number} must have answers numbered 1 and 2")
        return self


class TestDoc(_Doc):
    version: int = Field(ge=1)
    questions: list[QuestionDoc]

    @model_validator(mode="after")
    def _twelve_questions(self) -> TestDoc:
        if sorted(q.number for q in self.questions) != list(range(1, 13)):
            raise ValueError("the test must have questions numbered 1..12, each once")
        return self


class HobbyDoc(_Doc):
    originalName: str = Field(min_length=1, max_length=200)
    shortName: str = Field(min_length=1, max_length=50)
    summary: str = ""
    description: str = ""
    # Names hobby/<imageKey>.png, which the image store refuses to hold with a leading dot.
    imageKey: str = Field(
        default="", max_length=100, pattern=r"^(?:[A-Za-z0-9_-][A-Za-z0-9._-]*)?$"
    )
    contentUrl: str = Field(default="", max_length=500)


class FitDoc(_Doc):
    mbtiType: str
    ranking: int = Field(ge=1)


class HobbyTypeDoc(_Doc):
    name: str = Field(min_length=1, max_length=100)
    description: str = ""
    mbtiType: str
    fitHobbyTypes: list[FitDoc] = []


class CatalogDoc(_Doc):
    test: TestDoc
    hobbies: list[HobbyDoc] = Field(min_length=3)
    hobbyTypes: list[HobbyTypeDoc]

    @model_validator(mode="after")
    def _consistent(self) -> CatalogDoc:
        names = [h.originalName for h in self.hobbies]
        if len(set(names)) != len(names):
            raise ValueError("hobby originalName values must be unique")
        types = [t.mbtiType for t in self.hobbyTypes]
        if sorted(types) != sorted(MBTI_TYPES):
            raise ValueError("hobbyTypes must cover each of the 16 MBTI types exactly once")
        for hobby_type in self.hobbyTypes:
            fits = hobby_type.fitHobbyTypes
            if any(fit.mbtiType not in MBTI_TYPES for fit in fits):
                raise ValueError(f"{hobby_type.mbtiType}: fit types must be MBTI types")
            if sorted(fit.ranking for fit in fits) != list(range(1, len(fits) + 1)):
                raise ValueError(f"{hobby_type.mbtiType}: fit rankings must be 1..n")
        return self


def parse_catalog(raw: bytes | str) -> tuple[CatalogDoc, str]:
    """Validate a document; returns it with its content hash (the catalogue version)."""
    try:
        data = json.loads(raw)
        doc = CatalogDoc.model_validate(data)
    except json.JSONDecodeError as exc:
        raise CatalogError(f"not JSON: {exc}") from exc
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"])
        raise CatalogError(f"{where}: {first['msg']}" if where else first["msg"]) from exc
    canonical = json.dumps(doc.model_dump(), sort_keys=True, ensure_ascii=False)
    return doc, hashlib.sha256(canonical.encode()).hexdigest()


# ---- loading into the database ----


@dataclass
class LoadResult:
    version: str
    changed: bool
    counts: dict[str, int] = field(default_factory=dict)


def _sync(row: Any, values: dict[str, Any], counts: dict[str, int], kind: str) -> None:
    """Set only the fields that differ, so an identical reload writes nothing."""
    dirty = {key: value for key, value in values.items() if getattr(row, key) != value}
    for key, value in dirty.items():
        setattr(row, key, value)
    if dirty:
        counts[f"{kind}_updated"] = counts.get(f"{kind}_updated", 0) + 1


def load_catalog(session: Session, raw: bytes | str, source: str) -> LoadResult:
    """Upsert a catalogue inside the caller's transaction and make it the active one."""
    doc, content_hash = parse_catalog(raw)
    counts: dict[str, int] = {}

    def created(kind: str) -> None:
        counts[f"{kind}_created"] = counts.get(f"{kind}_created", 0) + 1

    test = session.scalar(select(Test).where(Test.version == doc.test.version))
    if test is None:
        test = Test(version=doc.test.version)
        session.add(test)
        session.flush()
        created("test")
    questions = {
        q.number: q for q in session.scalars(select(Question).where(Question.test_id == test.id))
    }
    for question_doc in doc.test.questions:
        question = questions.get(question_doc.number)
        if question is None:
            question = Question(
                test_id=test.id, number=question_doc.number, content=question_doc.content
            )
            session.add(question)
            session.flush()
            created("question")
        else:
            _sync(question, {"content": question_doc.content}, counts, "question")
        answers = {
            a.number: a
            for a in session.scalars(select(Answer).where(Answer.question_id == question.id))
        }
        for answer_doc in question_doc.answers:
            answer = answers.get(answer_doc.number)
            if answer is None:
                session.add(
                    Answer(
                        question_id=question.id,
                        number=answer_doc.number,
                        content=answer_doc.content,
                    )
                )
                created("answer")
            else:
                _sync(answer, {"content": answer_doc.content}, counts, "answer")

    hobbies = {h.original_name: h for h in session.scalars(select(Hobby))}
    for hobby_doc in doc.hobbies:
        values = {
            "short_name": hobby_doc.shortName,
            "summary": hobby_doc.summary,
            "description": hobby_doc.description,
            "image_key": hobby_doc.imageKey,
            "content_url": hobby_doc.contentUrl,
            "active": True,
        }
        hobby = hobbies.pop(hobby_doc.originalName, None)
        if hobby is None:
            session.add(Hobby(original_name=hobby_doc.originalName, recommend_count=0, **values))
            created("hobby")
        else:
            _sync(hobby, values, counts, "hobby")
    for retired in hobbies.values():
        _sync(retired, {"active": False}, counts, "hobby")

    types = {t.mbti_type: t for t in session.scalars(select(HobbyType))}
    for type_doc in doc.hobbyTypes:
        values = {"name": type_doc.name, "description": type_doc.description, "active": True}
        hobby_type = types.get(type_doc.mbtiType)
        if hobby_type is None:
            hobby_type = HobbyType(mbti_type=type_doc.mbtiType, **values)
            session.add(hobby_type)
            session.flush()
            created("hobby_type")
        else:
            _sync(hobby_type, values, counts, "hobby_type")
        wanted = sorted((fit.ranking, fit.mbtiType) for fit in type_doc.fitHobbyTypes)
        current = sorted(
            (fit.ranking, fit.mbti_type)
            for fit in session.scalars(
                select(FitHobbyType).where(FitHobbyType.hobby_type_id == hobby_type.id)
            )
        )
        if wanted != current:
            session.execute(delete(FitHobbyType).where(FitHobbyType.hobby_type_id == hobby_type.id))
            session.add_all(
                FitHobbyType(hobby_type_id=hobby_type.id, mbti_type=mbti, ranking=ranking)
                for ranking, mbti in wanted
            )
            counts["fit_hobby_types_replaced"] = counts.get("fit_hobby_types_replaced", 0) + 1

    latest = session.scalar(select(CatalogVersion).order_by(CatalogVersion.id.desc()).limit(1))
    changed = bool(counts)
    if latest is None or latest.content_sha256 != content_hash:
        session.add(
            CatalogVersion(
                content_sha256=content_hash, test_version=doc.test.version, source=source[:500]
            )
        )
        changed = True
    session.flush()
    return LoadResult(version=content_hash[:12], changed=changed, counts=counts)


def catalog_is_empty(session: Session) -> bool:
    return not session.scalar(select(func.count()).select_from(CatalogVersion))


def active_catalog_id(session: Session) -> int | None:
    """The id of the newest catalogue load; cheap enough to poll for changes."""
    return session.scalar(select(func.max(CatalogVersion.id)))


# ---- the in-memory snapshot ----


@dataclass(frozen=True)
class AnswerEntry:
    id: int
    number: int
    content: str


@dataclass(frozen=True)
class QuestionEntry:
    id: int
    number: int
    content: str
    answers: tuple[AnswerEntry, ...]


@dataclass(frozen=True)
class TestEntry:
    id: int
    version: int
    questions: tuple[QuestionEntry, ...]

    def answer_id(self, question_number: int, answer_number: int) -> int:
        return self.questions[question_number - 1].answers[answer_number - 1].id


@dataclass(frozen=True)
class HobbyEntry:
    id: int
    key: str  # originalName: the identity model labels refer to
    short_name: str
    summary: str
    description: str
    image_key: str
    content_url: str
    active: bool


@dataclass(frozen=True)
class HobbyTypeEntry:
    id: int
    name: str
    description: str
    mbti_type: str
    active: bool
    fit_mbti_types: tuple[str, ...]  # ranked, best first


@dataclass(frozen=True)
class Catalog:
    """An immutable snapshot; retired entries stay reachable by id for old rows."""

    catalog_id: int
    version: str
    active_test_version: int
    tests: dict[int, TestEntry]
    hobbies: dict[int, HobbyEntry]
    hobby_types: dict[int, HobbyTypeEntry]
    hobby_by_key: dict[str, HobbyEntry]  # active hobbies only
    type_by_mbti: dict[str, HobbyTypeEntry]  # active types only

    @property
    def active_test(self) -> TestEntry:
        return self.tests[self.active_test_version]

    @property
    def hobby_keys(self) -> frozenset[str]:
        return frozenset(self.hobby_by_key)


def read_catalog(session: Session) -> Catalog:
    """Read every catalogue row once (a few hundred rows) into a snapshot."""
    latest = session.scalar(select(CatalogVersion).order_by(CatalogVersion.id.desc()).limit(1))
    if latest is None:
        raise CatalogError("no catalogue is loaded; run `hollang catalog load FILE`")
    answers: dict[int, list[AnswerEntry]] = {}
    for answer in session.scalars(select(Answer).order_by(Answer.number)):
        answers.setdefault(answer.question_id, []).append(
            AnswerEntry(answer.id, answer.number, answer.content)
        )
    questions: dict[int, list[QuestionEntry]] = {}
    for question in session.scalars(select(Question).order_by(Question.number)):
        questions.setdefault(question.test_id, []).append(
            QuestionEntry(
                question.id, question.number, question.content, tuple(answers.get(question.id, ()))
            )
        )
    tests = {
        test.version: TestEntry(test.id, test.version, tuple(questions.get(test.id, ())))
        for test in session.scalars(select(Test))
    }
    hobbies = {
        hobby.id: HobbyEntry(
            id=hobby.id,
            key=hobby.original_name,
            short_name=hobby.short_name,
            summary=hobby.summary,
            description=hobby.description,
            image_key=hobby.image_key,
            content_url=hobby.content_url,
            active=hobby.active,
        )
        for hobby in session.scalars(select(Hobby))
    }
    fits: dict[int, list[str]] = {}
    for fit in session.scalars(select(FitHobbyType).order_by(FitHobbyType.ranking)):
        fits.setdefault(fit.hobby_type_id, []).append(fit.mbti_type)
    hobby_types = {
        row.id: HobbyTypeEntry(
            id=row.id,
            name=row.name,
            description=row.description,
            mbti_type=row.mbti_type,
            active=row.active,
            fit_mbti_types=tuple(fits.get(row.id, ())),
        )
        for row in session.scalars(select(HobbyType))
    }
    return Catalog(
        catalog_id=latest.id,
        version=latest.content_sha256[:12],
        active_test_version=latest.test_version,
        tests=tests,
        hobbies=hobbies,
        hobby_types=hobby_types,
        hobby_by_key={h.key: h for h in hobbies.values() if h.active},
        type_by_mbti={t.mbti_type: t for t in hobby_types.values() if t.active},
    )
