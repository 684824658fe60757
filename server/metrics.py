"""Prometheus metrics: what every worker records, and how /metrics reads them all.

Under `hollang serve` each worker writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR``
(set up by `cli.metrics_dir` before any worker imports prometheus_client), and
/metrics sums the files of every worker, so one scrape of any worker sees the whole
service. Without that variable (tests' in-process servers) the process's own registry is
served.

Counters and histograms are recorded where things happen: requests by the observing
middleware (`server.middleware`), batches by `ObservedBatchStats`, which the engine fills
in place of its plain `BatchStats`, and write batches by the write batcher's `observe`
callback (`WRITE_BATCH_SIZE.observe`). Gauges (queue depth, pool usage, active model) are
sampled every second by each worker and again by the worker that answers a scrape.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    REGISTRY,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from model.batcher import BatchStats
from server.settings import MULTIPROC_ENV

if TYPE_CHECKING:
    from model.engine import ModelEngine
    from server.deps import Services

log = logging.getLogger("hollang.metrics")
SAMPLE_INTERVAL = 1.0  # seconds between a worker's gauge samples
UNMATCHED = "<unmatched>"  # route label of requests that matched no route (bounded labels)

REQUESTS = Counter(
    "hollang_http_requests",
    "HTTP requests answered, by method, route template and status.",
    ["method", "route", "status"],
)
LATENCY = Histogram(
    "hollang_http_request_duration_seconds",
    "Time to answer an HTTP request, by method, route template and status.",
    ["method", "route", "status"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0),
)
BATCH_SIZE = Histogram(
    "hollang_inference_batch_size",
    "Rows per model run of the micro-batcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096),
)
WRITE_BATCH_SIZE = Histogram(
    "hollang_write_batch_size",
    "Submissions per committed write transaction of the write batcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
INFERENCE = Histogram(
    "hollang_inference_seconds",
    "Time of one batched model run, including the hand-off to the inference thread.",
    buckets=(0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0),
)
REJECTED = Counter(
    "hollang_inference_rejected",
    "Inferences refused because the queue was full (answered 503).",
)
FAILED_BATCHES = Counter("hollang_inference_failed_batches", "Model runs that raised.")
BAD_OUTPUT_BATCHES = Counter(
    "hollang_inference_bad_output_batches",
    "Model runs refused for non-finite outputs or a wrong row count (callers got 503).",
)
QUEUE_DEPTH = Gauge(
    "hollang_inference_queue_depth",
    "Inputs waiting for the model, summed over live workers.",
    multiprocess_mode="livesum",
)
MODEL_ACTIVE = Gauge(
    "hollang_model_active",
    "1 for each model version a live worker serves.",
    ["version"],
    multiprocess_mode="livemax",
)
POOL_CHECKED_OUT = Gauge(
    "hollang_db_pool_checked_out",
    "Database connections in use, summed over live workers.",
    multiprocess_mode="livesum",
)
POOL_SIZE = Gauge(
    "hollang_db_pool_size",
    "Configured database pool size (without overflow), summed over live workers.",
    multiprocess_mode="livesum",
)


GC_PAUSE = Histogram(
    "hollang_gc_pause_seconds",
    "Pauses of the cyclic garbage collector in the workers, by generation.",
    ["generation"],
    buckets=(0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1),
)
_GC_SERIES = tuple(GC_PAUSE.labels(str(generation)) for generation in range(3))


def observe_gc_pause(generation: int, seconds: float) -> None:
    _GC_SERIES[generation].observe(seconds)


METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
_REQUEST_SERIES: dict[tuple[str, str, int], tuple[Counter, Histogram]] = {}


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count and time one answered request. The labelled children are looked up once per
    (method, route, status) and kept: `labels()` takes a lock and builds a key tuple of
    strings on every call, which was a tenth of the middleware's cost. Bounded, like the
    label values themselves (methods x route templates x statuses)."""
    key = (method if method in METHODS else "other", route, status)
    series = _REQUEST_SERIES.get(key)
    if series is None:
        labels = (key[0], route, str(status))
        series = REQUESTS.labels(*labels), LATENCY.labels(*labels)
        _REQUEST_SERIES[key] = series
    series[0].inc()
    series[1].observe(seconds)


class ObservedBatchStats(BatchStats):
    """The engine's counters, also recorded as histograms as each batch completes."""

    def record(self, size: int, seconds: float) -> None:
        super().record(size, seconds)
        BATCH_SIZE.observe(size)
        INFERENCE.observe(seconds)


def observe_engine(engine: ModelEngine) -> None:
    """Make the engine record batch metrics; call before its first model is installed
    (every batcher takes the engine's stats object when the model is swapped in)."""
    engine.stats = ObservedBatchStats()


class _Sampler:
    """Copies one worker's in-memory state into the gauges and counters above."""

    def __init__(self) -> None:
        self.rejected = 0
        self.failed = 0
        self.bad_outputs = 0
        self.model: str | None = None

    def sample(self, services: Services) -> None:
        stats = services.engine.stats
        if stats.rejected > self.rejected:
            REJECTED.inc(stats.rejected - self.rejected)
        if stats.failed_batches > self.failed:
            FAILED_BATCHES.inc(stats.failed_batches - self.failed)
        if stats.bad_output_batches > self.bad_outputs:
            BAD_OUTPUT_BATCHES.inc(stats.bad_output_batches - self.bad_outputs)
        self.rejected, self.failed = stats.rejected, stats.failed_batches
        self.bad_outputs = stats.bad_output_batches
        QUEUE_DEPTH.set(services.engine.queue_depth)
        model = services.engine.model
        version = model.version if model is not None else None
        if version != self.model:
            if self.model is not None:
                MODEL_ACTIVE.labels(self.model).set(0)
            if version is not None:
                MODEL_ACTIVE.labels(version).set(1)
            self.model = version
        pool = services.db.engine.pool
        checked_out, size = getattr(pool, "checkedout", None), getattr(pool, "size", None)
        if callable(checked_out) and callable(size):
            POOL_CHECKED_OUT.set(checked_out())
            POOL_SIZE.set(size())


_SAMPLERS: dict[int, _Sampler] = {}


def sample(services: Services) -> None:
    """Refresh this worker's gauges now (one sampler per app, keyed by its services)."""
    _SAMPLERS.setdefault(id(services), _Sampler()).sample(services)


async def keep_sampling(services: Services) -> None:
    """The worker's background task: sample every `SAMPLE_INTERVAL` seconds until cancelled."""
    try:
        while True:
            try:
                sample(services)
            except Exception:
                log.warning("metrics sample failed", exc_info=True)
            await asyncio.sleep(SAMPLE_INTERVAL)
    finally:
        _SAMPLERS.pop(id(services), None)


def multiproc_dir() -> Path | None:
    value = os.environ.get(MULTIPROC_ENV)
    return Path(value) if value else None


_PID_FILE = re.compile(r"gauge_live\w*?_(\d+)\.db")


def reap_dead_workers() -> None:
    """Drop the live gauges of workers that died without saying so (killed, crashed), so
    a restarted worker's queue and pool are not counted twice. Called as a worker starts."""
    directory = multiproc_dir()
    if directory is None:
        return
    for pid in {int(m[1]) for f in directory.glob("gauge_live*") if (m := _PID_FILE.match(f.name))}:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            multiprocess.mark_process_dead(pid)  # type: ignore[no-untyped-call]
        except PermissionError:  # alive, another user's
            continue


def worker_exited() -> None:
    """A worker's last act: its live gauges leave the sums (its counters stay)."""
    if multiproc_dir() is not None:
        with contextlib.suppress(OSError):
            multiprocess.mark_process_dead(os.getpid())  # type: ignore[no-untyped-call]


def render() -> tuple[bytes, str]:
    """The exposition of every worker's metrics (or of this process's, alone)."""
    if multiproc_dir() is None:
        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return generate_latest(registry), CONTENT_TYPE_LATEST
