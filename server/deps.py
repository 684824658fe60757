"""Small dependencies routes declare in their signatures."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

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

_bearer = HTTPBearer(auto_error=False)


def require_admin(
    services: ServicesDep,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
) -> None:
    """Bearer `HOLLANG_ADMIN_TOKEN`, compared in constant time."""
    token = services.settings.admin_token
    supplied = credentials.credentials if credentials else ""
    if token is None or not hmac.compare_digest(
        supplied.encode(), token.get_secret_value().encode()
    ):
        raise ApiError(
            401,
            "A valid admin bearer token is required.",
            headers={"WWW-Authenticate": "Bearer"},
        )
