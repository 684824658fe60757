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

Per model version (`hollang_model_*{version}`, recorded by `VersionMetrics` after a batch's
callers have their answers) and per shadow (`hollang_shadow_*`, by `ShadowMetrics`). A
scrape shows a version's series only while a live worker holds that version, as its active
model or its shadow (`hollang_model_active` / `hollang_model_shadow` above 0): counters of
a version no worker holds any more are history, not state, and keeping them made every
scrape grow with every version ever served. `held_versions_only` does that filtering at
scrape time, so it holds across workers (whose files keep what they once wrote).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
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
from prometheus_client.metrics_core import Metric
from prometheus_client.registry import Collector

from batching.adaptive import BatchStats
from server.settings import MULTIPROC_ENV

if TYPE_CHECKING:
    from model.engine import LoadedModel, ModelEngine
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
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)
INFERENCE_BUCKETS = (0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.1, 1.0)
BATCH_SIZE = Histogram(
    "hollang_inference_batch_size",
    "Rows per model run of the micro-batcher.",
    buckets=BATCH_BUCKETS,
)
WRITE_BATCH_SIZE = Histogram(
    "hollang_write_batch_size",
    "Submissions per committed write transaction of the write batcher.",
    buckets=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)
INFERENCE = Histogram(
    "hollang_inference_seconds",
    "Time of one batched model run, including the hand-off to the inference thread.",
    buckets=INFERENCE_BUCKETS,
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
MODEL_SHADOW = Gauge(
    "hollang_model_shadow",
    "1 for each model version a live worker scores as its shadow (never served).",
    ["version"],
    multiprocess_mode="livemax",
)
MODEL_PREDICTIONS = Counter(
    "hollang_model_predictions",
    "Inputs answered (rows run), by model version.",
    ["version"],
)
MODEL_BATCH_SIZE = Histogram(
    "hollang_model_batch_size",
    "Rows per model run, by model version.",
    ["version"],
    buckets=BATCH_BUCKETS,
)
MODEL_INFERENCE = Histogram(
    "hollang_model_inference_seconds",
    "Time of one batched model run (with the hand-off to the inference thread), by version.",
    ["version"],
    buckets=INFERENCE_BUCKETS,
)
MODEL_RECOMMENDED = Counter(
    "hollang_model_recommended",
    "How often each hobby was in a model's top 3, by model version and hobby key.",
    ["version", "hobby"],
)
MODEL_NONFINITE = Counter(
    "hollang_model_nonfinite_outputs",
    "Output rows holding NaN or infinity (their batch was refused: 503), by model version.",
    ["version"],
)
MODEL_SWAPS = Counter("hollang_model_swaps", "Models installed by a worker (start-up included).")
MODEL_REFUSED = Counter(
    "hollang_model_refused_loads",
    "Model files a worker refused to load (validation failed), by what they were to be.",
    ["role"],
)
SHADOW_ROWS = Counter(
    "hollang_shadow_rows",
    "Live inputs the shadow model scored, by shadow version and active version.",
    ["shadow", "active"],
)
SHADOW_TOP1 = Counter(
    "hollang_shadow_top1_agreements",
    "Of those, inputs whose best hobby is the active model's best.",
    ["shadow", "active"],
)
SHADOW_TOP3 = Counter(
    "hollang_shadow_top3_agreements",
    "Of those, inputs given the active model's three hobbies (in any order).",
    ["shadow", "active"],
)
SHADOW_FAILED = Counter(
    "hollang_shadow_failed_rows",
    "Live inputs the shadow model failed on (raised, non-finite or misshapen outputs).",
    ["shadow", "active"],
)
SHADOW_SKIPPED = Counter(
    "hollang_shadow_skipped_rows",
    "Live inputs not scored because the shadow was still busy with an earlier batch.",
    ["shadow"],
)
SHADOW_INFERENCE = Histogram(
    "hollang_shadow_inference_seconds",
    "Time of one shadow model run, by shadow version.",
    ["shadow"],
    buckets=INFERENCE_BUCKETS,
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


FOLD_ROWS = 65_536  # rows a version gathers before it folds them without waiting for a sample
_UNFOLDED: set[VersionMetrics] = set()  # versions with rows not yet in their counters


class VersionMetrics:
    """One model version's series; the engine's batch observer for that model. Runs after
    the batch's callers were answered (see `MicroBatcher`). The labelled children are bound
    once, at the swap.

    The histograms are observed per batch. The counts of rows and of recommended hobbies are
    gathered and folded into their counters by the worker's sampler (every second, and
    before each scrape this worker answers: `fold_version_metrics`), in one numpy pass over
    all the rows: counting each batch's top 3 when it ran cost 20 µs of CPU per batch of
    one, a tenth of a /predict (`benchmarks/profile_requests.py`)."""

    def __init__(self, model: LoadedModel) -> None:
        version = model.version
        self._rows = MODEL_PREDICTIONS.labels(version)
        self._sizes = MODEL_BATCH_SIZE.labels(version)
        self._seconds = MODEL_INFERENCE.labels(version)
        self._nonfinite = MODEL_NONFINITE.labels(version)
        self._hobbies = [MODEL_RECOMMENDED.labels(version, label) for label in model.labels]
        self._top = min(3, len(model.labels))
        self._gathered: list[np.ndarray] = []
        self._gathered_rows = 0

    def batch_done(self, inputs: np.ndarray, outputs: np.ndarray, seconds: float) -> None:
        rows = len(outputs)
        self._sizes.observe(rows)
        self._seconds.observe(seconds)
        self._gathered.append(outputs)
        self._gathered_rows += rows
        if self._gathered_rows == rows:
            _UNFOLDED.add(self)
        elif self._gathered_rows >= FOLD_ROWS:
            self.fold()

    def fold(self) -> None:
        """Count the gathered rows and their top hobbies into the counters."""
        rows, gathered = self._gathered_rows, self._gathered
        if not rows:
            return
        self._gathered, self._gathered_rows = [], 0
        outputs = gathered[0] if len(gathered) == 1 else np.concatenate(gathered)
        self._rows.inc(rows)
        if self._top < len(self._hobbies):
            top = np.argpartition(-outputs, self._top - 1, axis=1)[:, : self._top]
        else:
            top = np.broadcast_to(np.arange(len(self._hobbies)), (rows, len(self._hobbies)))
        counts = np.bincount(top.ravel(), minlength=len(self._hobbies))
        for index in np.flatnonzero(counts).tolist():
            self._hobbies[index].inc(int(counts[index]))

    def batch_refused(self, rows: int, nonfinite_rows: int) -> None:
        if nonfinite_rows:
            self._nonfinite.inc(nonfinite_rows)


class ShadowMetrics:
    """A shadow scorer's series, for one shadow version."""

    def __init__(self, version: str) -> None:
        self.version = version
        self._seconds = SHADOW_INFERENCE.labels(version)
        self._skipped = SHADOW_SKIPPED.labels(version)
        self._by_active: dict[str, tuple[Counter, Counter, Counter]] = {}

    def _series(self, active: str) -> tuple[Counter, Counter, Counter]:
        series = self._by_active.get(active)
        if series is None:
            labels = (self.version, active)
            series = (
                SHADOW_ROWS.labels(*labels),
                SHADOW_TOP1.labels(*labels),
                SHADOW_TOP3.labels(*labels),
            )
            self._by_active[active] = series
        return series

    def scored(self, active: str, rows: int, top1: int, top3: int, seconds: float) -> None:
        counted, first, three = self._series(active)
        counted.inc(rows)
        first.inc(top1)
        three.inc(top3)
        self._seconds.observe(seconds)

    def failed(self, active: str, rows: int) -> None:
        SHADOW_FAILED.labels(self.version, active).inc(rows)

    def skipped(self, rows: int) -> None:
        self._skipped.inc(rows)


def fold_version_metrics() -> None:
    """Put every version's gathered rows into its counters (see `VersionMetrics`)."""
    while _UNFOLDED:
        _UNFOLDED.pop().fold()


def observe_engine(engine: ModelEngine) -> None:
    """Make the engine record batch metrics; call before its first model is installed
    (every batcher takes the engine's stats object when the model is swapped in)."""
    engine.stats = ObservedBatchStats()
    engine.observer_for = VersionMetrics


class _Sampler:
    """Copies one worker's in-memory state into the gauges and counters above."""

    def __init__(self) -> None:
        self.rejected = 0
        self.failed = 0
        self.bad_outputs = 0
        self.swaps = 0
        self.model: str | None = None
        self.shadow: str | None = None

    def sample(self, services: Services) -> None:
        fold_version_metrics()
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
        engine = services.engine
        if engine.swaps > self.swaps:
            MODEL_SWAPS.inc(engine.swaps - self.swaps)
            self.swaps = engine.swaps
        self.model = _mark(MODEL_ACTIVE, self.model, engine.model.version if engine.model else None)
        self.shadow = _mark(
            MODEL_SHADOW, self.shadow, engine.shadow.version if engine.shadow else None
        )
        pool = services.db.engine.pool
        checked_out, size = getattr(pool, "checkedout", None), getattr(pool, "size", None)
        if callable(checked_out) and callable(size):
            POOL_CHECKED_OUT.set(checked_out())
            POOL_SIZE.set(size())


def _forget(sampler: _Sampler) -> None:
    """The app stops: the versions it held are no longer held (for an app in a process that
    goes on, as in tests; a worker that exits leaves the live gauges anyway)."""
    fold_version_metrics()
    sampler.model = _mark(MODEL_ACTIVE, sampler.model, None)
    sampler.shadow = _mark(MODEL_SHADOW, sampler.shadow, None)


def _mark(gauge: Gauge, was: str | None, now: str | None) -> str | None:
    """Move a version marker: the old version's series drops to 0 (which a scrape hides:
    a multiprocess file keeps what was written, and prometheus_client cannot remove a
    child there, only warn on stderr that it did not), the new one is 1."""
    if now != was:
        if was is not None:
            gauge.labels(was).set(0)
            if multiproc_dir() is None:
                gauge.remove(was)
        if now is not None:
            gauge.labels(now).set(1)
    return now


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
        sampler = _SAMPLERS.pop(id(services), None)
        if sampler is not None:
            _forget(sampler)


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


def _source() -> Collector:
    """Every worker's samples, summed (or this process's, alone)."""
    if multiproc_dir() is None:
        return REGISTRY
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)  # type: ignore[no-untyped-call]
    return registry


class HeldVersionsOnly(Collector):
    """`source` without the series of model versions no live worker holds (see above).

    A sample's `version` must be held as active model or shadow, its `active` as active
    model, its `shadow` as shadow: so a promoted candidate's shadow series go too."""

    def __init__(self, source: Collector) -> None:
        self._source = source

    def collect(self) -> Iterable[Metric]:
        return held_versions_only(list(self._source.collect()))


def held_versions_only(families: list[Metric]) -> Iterator[Metric]:
    held: dict[str, set[str]] = {"active": set(), "shadow": set()}
    for family in families:
        role = _MARKERS.get(family.name)
        if role is not None:
            held[role].update(s.labels["version"] for s in family.samples if s.value > 0)
    allowed = {"version": held["active"] | held["shadow"], **held}
    for family in families:
        kept = [
            sample
            for sample in family.samples
            if all(
                value in allowed[name] for name, value in sample.labels.items() if name in allowed
            )
        ]
        if len(kept) != len(family.samples):
            family.samples = kept
        yield family


_MARKERS = {"hollang_model_active": "active", "hollang_model_shadow": "shadow"}


def render() -> tuple[bytes, str]:
    """The exposition of every worker's metrics, held versions only."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(HeldVersionsOnly(_source()))
    return generate_latest(registry), CONTENT_TYPE_LATEST


def shadow_summary(shadow: str, active: str) -> dict[str, Any]:
    """How the shadow compares with the active model over every live worker's samples, for
    GET /admin/model (one worker answers it; the metrics files hold all of them)."""
    totals: dict[str, float] = {}
    for family in _source().collect():
        for sample in family.samples:
            labels = sample.labels
            if labels.get("shadow") != shadow or labels.get("active", active) != active:
                continue
            totals[sample.name] = totals.get(sample.name, 0.0) + sample.value
    rows = int(totals.get("hollang_shadow_rows_total", 0))
    runs = int(totals.get("hollang_shadow_inference_seconds_count", 0))
    seconds = totals.get("hollang_shadow_inference_seconds_sum", 0.0)
    return {
        "comparedWith": active,
        "rows": rows,
        "top1Agreement": totals.get("hollang_shadow_top1_agreements_total", 0) / rows
        if rows
        else None,
        "top3Agreement": totals.get("hollang_shadow_top3_agreements_total", 0) / rows
        if rows
        else None,
        "runs": runs,
        "meanRunSeconds": seconds / runs if runs else None,
        "failedRows": int(totals.get("hollang_shadow_failed_rows_total", 0)),
        "skippedRows": int(totals.get("hollang_shadow_skipped_rows_total", 0)),
    }
