"""One module per resource; each route parses, calls one function, returns a schema.

This is the router aggregator: `PUBLIC` and `ADMIN` list every module's router in the
order the app tries them, and `install_routes` is the one place that puts them on the app.

It copies each route into the app's own router, flat, instead of `app.include_router`:
FastAPI (0.165) serves an included router through a lazily built `_IncludedRouter` level
that every request walks, which cost 9 µs a request, and every route tried before the
matching one costs too (19 µs behind 25 routes: benchmarks/framework_costs.py). The router
tries routes in order, so the busiest come first. A copy (not the module's route object) is
built by the app's router, so its dependencies answer to this app's
`dependency_overrides`, and two apps in one process never share a route.
"""

from __future__ import annotations

import inspect
from typing import Any

from fastapi import APIRouter, FastAPI
from fastapi.routing import APIRoute
from starlette.routing import BaseRoute

from server.routes import (
    admin,
    docs,
    health,
    hobbies,
    images,
    metrics,
    predict,
    recommendations,
    test_responses,
    tests,
)

PUBLIC: tuple[APIRouter, ...] = (
    predict.router,
    health.live_router,
    tests.router,
    test_responses.router,
    recommendations.router,
    health.router,
    hobbies.router,
    images.router,
    metrics.router,
    docs.router,
)
ADMIN: tuple[APIRouter, ...] = (admin.router, images.admin_router)

# Every option `add_api_route` takes is an attribute of the route it built (a name missing
# from a route fails loudly in `getattr`, at start-up).
_ROUTE_OPTIONS = tuple(
    name
    for name, parameter in inspect.signature(APIRouter.add_api_route).parameters.items()
    if parameter.kind is inspect.Parameter.KEYWORD_ONLY and name != "route_class_override"
)


def install_routes(app: FastAPI, *, with_admin: bool) -> None:
    """Every public route, and the admin routes when `with_admin` (a token is set)."""
    for router in (*PUBLIC, *ADMIN) if with_admin else PUBLIC:
        for route in router.routes:
            _copy_route(app, route)


def _copy_route(app: FastAPI, route: BaseRoute) -> None:
    if not isinstance(route, APIRoute):
        app.router.routes.append(route)
        return
    options: dict[str, Any] = {name: getattr(route, name) for name in _ROUTE_OPTIONS}
    app.router.add_api_route(
        route.path, route.endpoint, route_class_override=type(route), **options
    )
