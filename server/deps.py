"""Small dependencies routes declare in their signatures.

Each narrow dependency (`DatabaseDep`, `CatalogDep`, `RecommenderDep`, ...) is one attribute
read of the services the lifespan built, so a route's signature says what it uses and a
test can replace one piece with `app.dependency_overrides`. They take the `Request` and
not `ServicesDep`: FastAPI solves a sub-dependency on every request before it consults
its cache, so a chain through one shared dependency would cost a solve per link.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Path, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from db.recommendations import NotFound, StoredRecommendation, load_recommendation
from db.session import Database
from db.write_batcher import SubmissionWriter
from model.engine import ModelEngine
from server.catalog_view import CatalogCache
from server.errors import ApiError
from server.inference_client import RemoteInference
from server.model_service import ModelService, Recommender
from server.readiness import DatabaseReadiness, ImageReadiness
from server.settings import Settings
from storage.objectstore import ObjectStore


@dataclass
class Services:
    """Everything a request may need, built once by the app's lifespan."""

    settings: Settings
    db: Database
    catalog: CatalogCache
    engine: ModelEngine
    models: ModelService
    objects: ObjectStore
    writes: SubmissionWriter
    started_at: float = field(default=0.0)
    inference: RemoteInference | None = None  # set by HOLLANG_INFERENCE_URL
    readiness: DatabaseReadiness = field(init=False)
    image_readiness: ImageReadiness = field(init=False)

    def __post_init__(self) -> None:
        self.readiness = DatabaseReadiness(self.db)
        bundled = self.settings.bundled_images and not self.settings.image_base_url
        self.image_readiness = ImageReadiness(
            lambda: self.catalog.catalog, self.objects, bundled=bundled
        )

    @property
    def recommender(self) -> Recommender:
        """The remote inference server when one is configured, else the in-process model."""
        return self.inference or self.models


def services_of(request: Request) -> Services:
    """The app's services, for the few hot routes that skip dependency injection: solving
    even this one async dependency costs CPU on every request (benchmarks/framework_costs.py)."""
    services: Services = request.app.state.services
    return services


async def get_services(request: Request) -> Services:
    """Async although it does no I/O: FastAPI runs a plain `def` dependency in its thread
    pool, a hand-off that cost every request more than its own work (see README,
    Benchmarks)."""
    return services_of(request)


ServicesDep = Annotated[Services, Depends(get_services)]


# Async although none does I/O, for the reason `get_services` gives.
async def get_database(request: Request) -> Database:
    return services_of(request).db


async def get_catalog(request: Request) -> CatalogCache:
    return services_of(request).catalog


async def get_recommender(request: Request) -> Recommender:
    return services_of(request).recommender


async def get_submission_writer(request: Request) -> SubmissionWriter:
    return services_of(request).writes


async def get_settings(request: Request) -> Settings:
    return services_of(request).settings


async def get_model_service(request: Request) -> ModelService:
    return services_of(request).models


DatabaseDep = Annotated[Database, Depends(get_database)]
CatalogDep = Annotated[CatalogCache, Depends(get_catalog)]
RecommenderDep = Annotated[Recommender, Depends(get_recommender)]
SubmissionWriterDep = Annotated[SubmissionWriter, Depends(get_submission_writer)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
ModelServiceDep = Annotated[ModelService, Depends(get_model_service)]

RecommendationId = Annotated[int, Path(alias="id", ge=1, le=2**63 - 1)]


def stored_recommendation(
    recommendation_id: RecommendationId, db: DatabaseDep
) -> StoredRecommendation:
    """The recommendation the path names, or the 404 envelope. A plain `def`: FastAPI runs
    it on its thread pool, so the database read never blocks the event loop. Through
    `DatabaseDep` (one solve more than reading the request) so that overriding the
    database reaches this read too."""
    try:
        with db.read_connection() as connection:
            return load_recommendation(connection, recommendation_id)
    except NotFound:
        raise ApiError(404, f"Recommendation {recommendation_id} does not exist.") from None


StoredRecommendationDep = Annotated[StoredRecommendation, Depends(stored_recommendation)]

_bearer = HTTPBearer(auto_error=False)


def require_admin(
    settings: SettingsDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer `HOLLANG_ADMIN_TOKEN`, compared in constant time."""
    token = settings.admin_token
    supplied = credentials.credentials if credentials else ""
    if token is None or not hmac.compare_digest(
        supplied.encode(), token.get_secret_value().encode()
    ):
        raise ApiError(
            401,
            "A valid admin bearer token is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
