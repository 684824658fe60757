"""One module per resource; each route parses, calls one function, returns a schema.

`install_routes` is the one place that puts them on the app. It adds each module's routes
to the app's own router, flat, instead of `app.include_router`: FastAPI (0.165) serves an
included router through a lazily built `_IncludedRouter` level that every request walks,
which cost 9 µs a request, and every route tried before the matching one costs too (19 µs
behind 25 routes: benchmarks/framework_costs.py). The router tries routes in order, so the
busiest come first.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI

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


def install_routes(app: FastAPI, *, with_admin: bool) -> None:
    """Every public route, and the admin routes when `with_admin` (a token is set)."""
    for router in (*PUBLIC, *ADMIN) if with_admin else PUBLIC:
        app.router.routes.extend(router.routes)
