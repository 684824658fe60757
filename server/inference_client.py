"""Remote inference: ask an original-style inference server instead of the in-process model.

The original service called a Flask/PyTorch "inferring server" over HTTP for every test
response. With `HOLLANG_INFERENCE_URL` set we do the same, which is both the migration path
for operators still running that server and the baseline the benchmarks compare against.

Protocol: ``POST {url}/test-responses`` with the JSON list of the 12
``{"questionNumber", "answerNumber"}`` items, sorted by question. Two answers are accepted:

- second generation: ``{"hobbyType": {"mbtiType", "scores": {"scoreE", "scoreN", "scoreF",
  "scoreJ"}}, "hobbies": [{"name", "ranking"}]}``;
- first generation: ``{"hobbyType": {"name": "ENFJ"}, "hobbies": [{"name"}, ...]}`` in rank
  order, without scores: we count them locally with `model.scoring`.

Hobby names are catalogue ``originalName`` keys. One pooled HTTP client per worker; every
call has one total deadline (`HOLLANG_INFERENCE_TIMEOUT`, covering the wait for a pooled
connection too). A server that is down, slow, or answers anything but the protocol is a
503 with Retry-After, raised before anything is written.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping
from typing import Annotated

import httpx
import orjson
from pydantic import BaseModel, Field, StrictInt, ValidationError

from db.catalog import Catalog
from model.scoring import mbti_from_scores, scores_from_answers
from server.errors import ApiError
from server.model_service import RankedKey, Recommendation
from server.settings import Settings

log = logging.getLogger("hollang.inference")

RETRY_AFTER = "2"
_Score = Annotated[StrictInt, Field(ge=0, le=3)]


class InferenceUnavailable(ApiError):
    """The inference server could not give a usable answer; the client may retry."""

    def __init__(self, message: str) -> None:
        super().__init__(503, message, headers={"Retry-After": RETRY_AFTER})


class _Scores(BaseModel):
    scoreE: _Score  # camelCase: the wire names
    scoreN: _Score
    scoreF: _Score
    scoreJ: _Score


class _HobbyType(BaseModel):
    mbtiType: str | None = None
    name: str | None = None  # first generation: the MBTI code
    scores: _Scores | None = None


class _Hobby(BaseModel):
    name: Annotated[str, Field(min_length=1)]
    ranking: StrictInt | None = None


class _Answer(BaseModel):
    hobbyType: _HobbyType
    hobbies: Annotated[list[_Hobby], Field(min_length=1, max_length=1000)]


class RemoteInference:
    """A `Recommender` backed by an original-style inference server."""

    def __init__(
        self,
        url: str,
        catalog: Callable[[], Catalog],
        *,
        timeout: float = 2.0,
        max_connections: int = 32,
    ) -> None:
        self.endpoint = url.rstrip("/") + "/test-responses"
        self.timeout = timeout
        self._catalog = catalog
        limits = httpx.Limits(
            max_connections=max_connections, max_keepalive_connections=max_connections
        )
        self._client = httpx.AsyncClient(
            timeout=timeout,
            # retries=1 re-dials a refused/failed connect once; it never resends a request.
            transport=httpx.AsyncHTTPTransport(limits=limits, retries=1),
            headers={"Content-Type": "application/json"},
        )
        netloc = httpx.URL(url).netloc.decode("ascii", "replace")
        self.model_version = f"remote:{netloc}"[:64]

    async def recommend(self, answers: Mapping[int, int]) -> Recommendation:
        local_scores = scores_from_answers(answers)  # validates the answers, too
        body = orjson.dumps(
            [{"questionNumber": q, "answerNumber": a} for q, a in sorted(answers.items())]
        )
        answer = await self._ask(body)
        # In remote mode the server is the authority: its scores and type are what we store.
        if answer.hobbyType.scores is not None:
            s = answer.hobbyType.scores
            scores = (s.scoreE, s.scoreN, s.scoreF, s.scoreJ)
        else:
            scores = local_scores
        mbti = answer.hobbyType.mbtiType or answer.hobbyType.name
        if mbti is None and answer.hobbyType.scores is not None:
            mbti = mbti_from_scores(scores)
        if mbti is None or not _is_mbti(mbti):
            raise self._garbled("its hobby type is not an MBTI code")
        keys = self._ranked_names(answer.hobbies)
        catalog = self._catalog()
        return Recommendation(
            scores=scores,
            mbti_type=mbti,
            ranked=tuple(RankedKey(key, None) for key in keys),
            hobby_keys=tuple(key for key in keys if key in catalog.hobby_by_key),
            catalog=catalog,
            model_version=self.model_version,
        )

    async def _ask(self, body: bytes) -> _Answer:
        try:
            async with asyncio.timeout(self.timeout):
                response = await self._client.post(self.endpoint, content=body)
        except (TimeoutError, httpx.TimeoutException):
            log.warning("inference server %s did not answer in %.1f s", self.endpoint, self.timeout)
            raise InferenceUnavailable(
                "The inference server did not answer in time; retry shortly."
            ) from None
        except httpx.HTTPError as exc:
            log.warning("inference server %s unreachable: %s", self.endpoint, exc)
            raise InferenceUnavailable(
                "The inference server is unavailable; retry shortly."
            ) from None
        if response.status_code != 200:
            raise self._garbled(f"it answered HTTP {response.status_code}")
        try:
            return _Answer.model_validate_json(response.content)
        except ValidationError as exc:
            raise self._garbled(f"its answer does not follow the protocol: {exc}") from None

    def _ranked_names(self, hobbies: list[_Hobby]) -> list[str]:
        """Names best first: by `ranking` when every hobby has one, else in list order."""
        rankings = [hobby.ranking for hobby in hobbies]
        if all(r is None for r in rankings):
            names = [hobby.name for hobby in hobbies]
        elif sorted(r for r in rankings if r is not None) == list(range(1, len(hobbies) + 1)):
            names = [hobby.name for hobby in sorted(hobbies, key=lambda h: h.ranking or 0)]
        else:
            raise self._garbled("its hobby rankings are not 1..n")
        if len(set(names)) != len(names):
            raise self._garbled("it named a hobby twice")
        return names

    def _garbled(self, why: str) -> InferenceUnavailable:
        log.warning("inference server %s: %s", self.endpoint, why[:500])
        return InferenceUnavailable("The inference server gave an unusable answer; retry shortly.")

    async def close(self) -> None:
        await self._client.aclose()


def _is_mbti(code: str) -> bool:
    return len(code) == 4 and all(
        letter in pair for letter, pair in zip(code, ("EI", "NS", "FT", "JP"), strict=True)
    )


def remote_inference(settings: Settings, catalog: Callable[[], Catalog]) -> RemoteInference | None:
    """The configured remote inference client, or None to use the in-process model."""
    if settings.inference_url is None:
        return None
    log.info("recommendations come from the inference server at %s", settings.inference_url)
    return RemoteInference(
        settings.inference_url,
        catalog,
        timeout=settings.inference_timeout,
        max_connections=settings.inference_max_connections,
    )
