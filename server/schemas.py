"""Request and response bodies. JSON names are camelCase, generated from the Python names.

Requests validate everything the contract promises (see original-api.md and its **fix**
points): strict integers (no "1" or true for 1), ranges, each question exactly once, names
of 1..5 visible characters. The first-generation key `testResponseDetail` is accepted as an
alias of `testResponseDetails`.
"""

from __future__ import annotations

import unicodedata
from typing import Annotated, Generic, TypeVar

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictInt, field_validator
from pydantic.alias_generators import to_camel

NAME_MAX = 5
# Letters that render as nothing (Hangul fillers, a common trick for a "blank" Korean
# nickname) and combining grapheme joiners; format characters (Cf) are caught by category.
INVISIBLE = frozenset("\u115f\u1160\u3164\uffa0\u034f\u17b4\u17b5")
SATISFACTION_MIN, SATISFACTION_MAX = 1, 5
QUESTIONS = 12

T = TypeVar("T")


class Camel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


# ---- requests ----

QuestionNumber = Annotated[StrictInt, Field(ge=1, le=QUESTIONS)]
AnswerNumber = Annotated[StrictInt, Field(ge=1, le=2)]


class UserIn(Camel):
    name: str = Field(description="nickname, 1..5 characters after trimming spaces")

    @field_validator("name")
    @classmethod
    def _visible_name(cls, value: str) -> str:
        name = unicodedata.normalize("NFC", value).strip()
        if not name:
            raise ValueError("name must not be empty or only whitespace")
        if len(name) > NAME_MAX:
            raise ValueError(f"name must be at most {NAME_MAX} characters")
        if any(unicodedata.category(char)[0] == "C" or char in INVISIBLE for char in name):
            raise ValueError("name must not contain control or invisible characters")
        return name


class DetailIn(Camel):
    question_number: QuestionNumber
    answer_number: AnswerNumber


Details = Annotated[
    list[DetailIn],
    Field(
        min_length=QUESTIONS,
        max_length=QUESTIONS,
        validation_alias=AliasChoices("testResponseDetails", "testResponseDetail"),
        serialization_alias="testResponseDetails",
    ),
]


def _each_question_once(details: list[DetailIn]) -> list[DetailIn]:
    numbers = sorted(detail.question_number for detail in details)
    if numbers != list(range(1, QUESTIONS + 1)):
        raise ValueError("every question 1..12 must be answered exactly once")
    return details


class AnswersIn(Camel):
    """The 12 answers alone: the body of POST /predict."""

    test_response_details: Details

    _once = field_validator("test_response_details")(_each_question_once)

    def answers(self) -> dict[int, int]:
        return {d.question_number: d.answer_number for d in self.test_response_details}


class TestResponseIn(AnswersIn):
    user: UserIn


class SurveyHobbyIn(Camel):
    id: Annotated[StrictInt, Field(ge=1)]
    name: Annotated[str | None, Field(max_length=200)] = None
    satisfaction: Annotated[
        StrictInt,
        Field(ge=SATISFACTION_MIN, le=SATISFACTION_MAX, description="1 (not at all) .. 5 (very)"),
    ]


class SurveyIn(Camel):
    hobbies: Annotated[list[SurveyHobbyIn], Field(min_length=1, max_length=3)]

    @field_validator("hobbies")
    @classmethod
    def _distinct(cls, hobbies: list[SurveyHobbyIn]) -> list[SurveyHobbyIn]:
        if len({hobby.id for hobby in hobbies}) != len(hobbies):
            raise ValueError("each hobby may be rated once per survey")
        return hobbies


class SurveyRequest(Camel):
    survey: SurveyIn


# ---- responses ----


class Envelope(Camel, Generic[T]):
    code: str = "OK"
    message: str
    data: T


class AnswerOut(Camel):
    id: int
    number: int
    content: str


class QuestionOut(Camel):
    id: int
    number: int
    content: str
    image_url: str
    answers: list[AnswerOut]


class TestOut(Camel):
    id: int
    version: int
    questions: list[QuestionOut]


class TestData(Camel):
    test: TestOut


class IdOut(Camel):
    id: int


class UserOut(Camel):
    id: int
    name: str


class RecommendationCreated(Camel):
    id: int
    token: str = Field(
        description=(
            "owns the recommendation's survey: send it as X-Recommendation-Token; "
            "returned only here, never by a GET"
        )
    )


class TestResponseCreated(Camel):
    user: UserOut
    recommendation: RecommendationCreated


class CountOut(Camel):
    count: int


class CountData(Camel):
    test_response: CountOut


class HobbyTypeOut(Camel):
    id: int
    name: str
    description: str
    mbti_type: str
    image_url: str
    three_dimension_image_url: str


class FitHobbyTypeOut(HobbyTypeOut):
    ranking: int


class SharedHobbyOut(Camel):
    id: int
    original_name: str
    short_name: str
    name: str = Field(description="first-generation clients' name: same as shortName")
    summary: str
    description: str
    image_url: str
    ranking: int


class HobbyOut(SharedHobbyOut):
    content_url: str


class ScoresOut(Camel):
    score_e: int
    score_n: int
    score_f: int
    score_j: int


class SharedRecommendationOut(Camel):
    id: int
    user: UserOut
    hobby_type: HobbyTypeOut
    hobbies: list[SharedHobbyOut]


class RecommendationOut(Camel):
    id: int
    did_survey: bool
    user: UserOut
    hobby_type: HobbyTypeOut
    hobbies: list[HobbyOut]
    fit_hobby_types: list[FitHobbyTypeOut]
    scores: ScoresOut
    model_version: str


class RecommendationData(Camel):
    recommendation: RecommendationOut


class SharedRecommendationData(Camel):
    recommendation: SharedRecommendationOut


class RankedHobbyOut(Camel):
    id: int
    short_name: str
    name: str
    recommend_count: int
    image_url: str


class HobbiesData(Camel):
    hobbies: list[RankedHobbyOut]
    page: int
    size: int
    total_count: int


class PredictedHobbyOut(Camel):
    key: str
    id: int | None
    short_name: str | None
    name: str | None
    score: float | None = Field(
        description="the model's logit; null when a remote inference server ranked the hobbies"
    )
    ranking: int


class PredictionOut(Camel):
    scores: ScoresOut
    mbti_type: str
    hobbies: list[PredictedHobbyOut]
    model_version: str
