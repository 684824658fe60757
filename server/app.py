"""The application factory and its lifespan: build services, serve, drain, close."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

import server
from db.catalog import (
    Catalog,
    active_catalog_id,
    read_catalog,
)
from db.migrate import is_current
from db.session import Database
from db.write_batcher import SubmissionWriter
from model.engine import ModelEngine
from model.registry import ModelRegistry
from server import metrics
from server.catalog_view import CatalogCache
from server.deps import Services
from server.errors import install_error_handlers
from server.heap import freeze_startup_heap, observe_pauses
from server.images import ImageUrls
from server.inference_client import remote_inference
from server.lean import document_bodies
from server.logs import configure_logging
from server.middleware import install_body_limit, install_outer_middleware
from server.model_service import ModelService
from server.routes import install_routes
from server.settings import Settings
from storage.factory import object_store

log = logging.getLogger("hollang")


async def _every(interval: float, work: Callable[[], Awaitable[object]], what: str) -> None:
    """Run `work` every `interval` seconds; a failed round is logged and never ends the loop."""
    while True:
        await asyncio.sleep(interval)
        try:
            await work()
        except Exception:
            log.warning("%s failed", what, exc_info=True)


async def build_services(settings: Settings) -> Services:
    db = Database(
        settings.resolved_database_url,
        pool_size=settings.db_pool_size,
        max_overflow=settings.db_max_overflow,
    )
    if not await asyncio.to_thread(is_current, db.engine):
        db.dispose()
        raise RuntimeError(
            "the database schema is not at the newest migration: run `hollang db upgrade` "
            "(or start without --no-migrate)"
        )

    def read() -> Catalog:
        with db.read() as session:
            return read_catalog(session)

    def active_id() -> int | None:
        with db.read() as session:
            return active_catalog_id(session)

    catalog = await asyncio.to_thread(
        CatalogCache,
        read,
        active_id,
        ImageUrls.from_setting(settings.image_base_url),
    )
    engine = ModelEngine(settings.batch)
    metrics.observe_engine(engine)
    objects = object_store(settings)
    registry = ModelRegistry(objects)
    models = ModelService(
        engine, registry, settings.resolved_model_path, lambda: catalog.catalog, settings.sandbox
    )
    await models.start()
    return Services(
        settings=settings,
        db=db,
        catalog=catalog,
        engine=engine,
        models=models,
        objects=objects,
        writes=SubmissionWriter(db, settings.write_batch, metrics.WRITE_BATCH_SIZE.observe),
        started_at=time.time(),
        inference=remote_inference(settings, lambda: catalog.catalog),
    )


def create_app(settings: Settings | None = None) -> FastAPI:
    configure_logging()
    settings = settings or Settings()

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        services = await build_services(settings)
        app.state.services = services
        tasks = [
            asyncio.create_task(
                _every(settings.model_poll_interval, services.models.follow, "model pointer poll")
            ),
            asyncio.create_task(
                _every(
                    settings.catalog_poll_interval,
                    lambda: asyncio.to_thread(services.catalog.refresh),
                    "catalogue refresh",
                )
            ),
            asyncio.create_task(metrics.keep_sampling(services)),
        ]
        metrics.reap_dead_workers()
        log.debug("froze %d start-up objects out of the collector", freeze_startup_heap())
        stop_observing_pauses = observe_pauses(metrics.observe_gc_pause)
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            await services.engine.close()
            await services.writes.close()  # writes and commits every queued submission
            if services.inference is not None:
                await services.inference.close()
            services.db.dispose()
            stop_observing_pauses()
            metrics.fold_version_metrics()  # the rows answered while draining
            metrics.worker_exited()

    app = FastAPI(
        title="Hollang",
        version=server.__version__,
        description="Hobby recommendations from a 12-question personality test.",
        lifespan=lifespan,
        # /docs and /redoc are server/routes/docs.py's: FastAPI's load their UI from a CDN.
        docs_url=None,
        redoc_url=None,
        # Our own Prometheus metrics and access log observe every request; FastAPI's
        # built-in OpenTelemetry would be a second, unused observer on every request.
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    install_error_handlers(app)
    install_body_limit(app, settings)
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "OPTIONS"],
            allow_headers=["Content-Type", "Authorization", "Idempotency-Key", "X-Request-ID"],
            expose_headers=["X-Request-ID", "Idempotent-Replayed"],
            max_age=600,
        )
    install_routes(app, with_admin=settings.admin_token is not None)
    install_outer_middleware(app)
    document_bodies(app)
    return app
