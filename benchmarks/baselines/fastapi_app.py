"""POST /predict as a bare FastAPI route: what the framework itself costs.

A pydantic request model, orjson bytes out, no middleware, no dependencies:

    uvicorn --factory benchmarks.baselines.fastapi_app:create_app --workers 2 --port PORT
"""

from __future__ import annotations

from typing import Annotated

import orjson
from fastapi import FastAPI, Response
from pydantic import BaseModel, Field, StrictInt

from benchmarks.baselines.job import Job


class Detail(BaseModel):
    questionNumber: Annotated[StrictInt, Field(ge=1, le=12)]  # the JSON names, as written
    answerNumber: Annotated[StrictInt, Field(ge=1, le=2)]


class Answers(BaseModel):
    testResponseDetails: Annotated[list[Detail], Field(min_length=12, max_length=12)]


def create_app() -> FastAPI:
    app = FastAPI()
    job = Job()

    @app.get("/health")
    async def health() -> Response:
        return Response(b'{"status":"UP"}', media_type="application/json")

    @app.post("/predict")
    async def predict(body: Answers) -> Response:
        answers = {d.questionNumber: d.answerNumber for d in body.testResponseDetails}
        return Response(orjson.dumps(job.predict(answers)), media_type="application/json")

    return app
