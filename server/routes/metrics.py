"""GET /metrics: Prometheus exposition of every worker's metrics (see server/metrics.py)."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from starlette.concurrency import run_in_threadpool

from server import metrics

router = APIRouter(tags=["operations"])


@router.get("/metrics", include_in_schema=False)
async def get_metrics(request: Request) -> Response:
    """Refreshes this worker's gauges first; the other workers' are at most a second old."""
    services = getattr(request.app.state, "services", None)
    if services is not None:
        metrics.sample(services)
    body, content_type = await run_in_threadpool(metrics.render)  # reads files: off the loop
    return Response(body, media_type=content_type)
