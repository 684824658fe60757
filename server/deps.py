"""Small dependencies routes declare in their signatures."""

from __future__ import annotations

import hmac
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from db.session import Database
from model.engine import ModelEngine
from server.catalog_view import CatalogCache
from server.errors import ApiError
from server.model_service import ModelService
from server.settings import Settings


@dataclass
class Services:
    """Everything a request may need, built once by the app's lifespan."""

    settings: Settings
    db: Database
    catalog: CatalogCache
    engine: ModelEngine
    models: ModelService
    started_at: float = field(default=0.0)


def get_services(request: Request) -> Services:
    services: Services = request.app.state.services
    return services


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
