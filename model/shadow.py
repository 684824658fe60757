"""Shadow scoring: a candidate model runs on the active model's live batches, never served.

The engine hands each batch to the `ShadowScorer` after the active model's callers have
their answers (`MicroBatcher`'s observer, scheduled with `call_soon`). The scorer gathers
those rows for up to `GATHER_SECONDS` (or until `max_batch_size` rows, the largest batch
validation proved), then runs them through the candidate at once and compares its top 1
and top 3 with the active model's, by hobby key (the two may order their labels
differently). Scoring each request's batch alone cost about 0.13 ms of CPU per request
on the event loop, which the next request of a busy connection waited behind (`make
bench`, section 6: p50 1.20x at concurrency 1); gathered, one run and one comparison
serve many requests.

Isolation: a shadow that raises, returns non-finite or misshapen outputs, or is slow never
touches serving. Failures are counted and reported. A batch the candidate ran faster than
the inline budget at validation runs on the event loop (a thread hand-off would cost more);
a slower one runs on the shadow's own thread, never on the inference thread, and while one
such run is in flight later batches are skipped (and counted) rather than queued, so a slow
candidate cannot build a backlog or take memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from model.engine import LoadedModel

log = logging.getLogger("hollang.model")
TOP = 3
GATHER_SECONDS = 0.05  # how long rows wait for company before the shadow scores them


class ShadowObserver(Protocol):
    """Where a scorer reports (the metrics module implements it)."""

    def scored(self, active: str, rows: int, top1: int, top3: int, seconds: float) -> None: ...

    def failed(self, active: str, rows: int) -> None: ...

    def skipped(self, rows: int) -> None: ...


@dataclass
class ShadowStats:
    """This worker's counts for one shadow (the metrics hold the sums over workers)."""

    rows: int = 0
    top1_agreements: int = 0
    top3_agreements: int = 0
    seconds: float = 0.0
    runs: int = 0
    failed_rows: int = 0
    skipped_rows: int = 0
    last_error: str | None = None


class ShadowScorer:
    """Scores the active model's batches with `model` and counts how often they agree."""

    def __init__(
        self,
        model: LoadedModel,
        *,
        max_inline_seconds: float,
        max_batch_size: int,
        observer: ShadowObserver | None = None,
    ) -> None:
        self.model = model
        self.stats = ShadowStats()
        self._observer = observer
        self._inline_rows = model.rows_within(max_inline_seconds, max_batch_size)
        self._max_rows = max_batch_size
        # Rows answered by `_gathered_for`, waiting to be scored together (see `score`).
        self._gathered: list[tuple[np.ndarray, np.ndarray]] = []
        self._gathered_rows = 0
        self._gathered_for: LoadedModel | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._executor: ThreadPoolExecutor | None = None
        self._in_flight = False
        self._closed = False
        # Per active model: shadow output index -> active output index (-1: unknown there).
        self._mapping: tuple[LoadedModel, np.ndarray] | None = None

    @property
    def version(self) -> str:
        return self.model.version

    def score(self, active: LoadedModel, inputs: np.ndarray, outputs: np.ndarray) -> None:
        """Take `inputs` (the rows `active` answered with `outputs`) to run the candidate on
        with the rows of other batches: within `GATHER_SECONDS`, or at once when they make
        a batch of `max_batch_size` (never a larger one, which validation did not run)."""
        if self._closed:
            return
        rows = len(inputs)
        if self._gathered and (
            active is not self._gathered_for or self._gathered_rows + rows > self._max_rows
        ):
            self.flush()
        self._gathered.append((inputs, outputs))
        self._gathered_rows += rows
        self._gathered_for = active
        if self._gathered_rows >= self._max_rows:
            self.flush()
        elif self._timer is None:
            self._timer = asyncio.get_running_loop().call_later(GATHER_SECONDS, self.flush)

    def flush(self) -> None:
        """Score the gathered rows now."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        active, gathered = self._gathered_for, self._gathered
        self._gathered, self._gathered_rows, self._gathered_for = [], 0, None
        if not gathered or active is None or self._closed:
            return
        if len(gathered) == 1:
            inputs, outputs = gathered[0]
        else:
            inputs = np.concatenate([rows for rows, _ in gathered])
            outputs = np.concatenate([answers for _, answers in gathered])
        self._run(active, inputs, outputs)

    def _run(self, active: LoadedModel, inputs: np.ndarray, outputs: np.ndarray) -> None:
        """Run the candidate on the event loop, or on its own thread if it is slow."""
        rows = len(inputs)
        if rows <= self._inline_rows:
            started = time.perf_counter()
            try:
                shadow_outputs = self.model.run(inputs)
            except Exception as exc:  # a candidate's failure is reported, never raised
                self._failed(active, rows, exc)
                return
            self._compare(active, outputs, shadow_outputs, time.perf_counter() - started)
            return
        if self._in_flight:
            self.stats.skipped_rows += rows
            if self._observer is not None:
                self._observer.skipped(rows)
            return
        if self._executor is None:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="shadow")
        self._in_flight = True
        loop = asyncio.get_running_loop()
        started = time.perf_counter()
        future = self._executor.submit(self.model.run, inputs)

        def done(finished: Future[np.ndarray]) -> None:
            seconds = time.perf_counter() - started
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile: drop it
                loop.call_soon_threadsafe(self._finish, active, outputs, finished, seconds)

        future.add_done_callback(done)

    def _finish(
        self,
        active: LoadedModel,
        outputs: np.ndarray,
        finished: Future[np.ndarray],
        seconds: float,
    ) -> None:
        self._in_flight = False
        if self._closed:
            return
        try:
            shadow_outputs = finished.result()
        except Exception as exc:
            self._failed(active, len(outputs), exc)
            return
        self._compare(active, outputs, shadow_outputs, seconds)

    def _compare(
        self,
        active: LoadedModel,
        outputs: np.ndarray,
        shadow_outputs: np.ndarray,
        seconds: float,
    ) -> None:
        rows = len(outputs)
        width = len(self.model.labels)
        if shadow_outputs.shape != (rows, width) or not np.isfinite(shadow_outputs).all():
            shape = "x".join(map(str, shadow_outputs.shape))
            self._failed(active, rows, ValueError(f"outputs {shape}, or not all finite"))
            return
        mapping = self._mapping_for(active)
        active_top = np.argsort(-outputs, axis=1, kind="stable")[:, :TOP]
        shadow_top = mapping[np.argsort(-shadow_outputs, axis=1, kind="stable")[:, :TOP]]
        top1 = int((active_top[:, 0] == shadow_top[:, 0]).sum())
        same3 = np.sort(active_top, axis=1) == np.sort(shadow_top, axis=1)
        top3 = int(same3.all(axis=1).sum())
        stats = self.stats
        stats.rows += rows
        stats.top1_agreements += top1
        stats.top3_agreements += top3
        stats.seconds += seconds
        stats.runs += 1
        if self._observer is not None:
            self._observer.scored(active.version, rows, top1, top3, seconds)

    def _mapping_for(self, active: LoadedModel) -> np.ndarray:
        if self._mapping is None or self._mapping[0] is not active:
            position = {label: index for index, label in enumerate(active.labels)}
            mapping = np.array([position.get(label, -1) for label in self.model.labels])
            self._mapping = (active, mapping)
        return self._mapping[1]

    def _failed(self, active: LoadedModel, rows: int, exc: Exception) -> None:
        text = str(exc).strip().splitlines()
        message = text[0][:300] if text else type(exc).__name__
        if self.stats.last_error is None:
            log.warning("shadow model %s failed on live rows: %s", self.version, message)
        self.stats.failed_rows += rows
        self.stats.last_error = message
        if self._observer is not None:
            self._observer.failed(active.version, rows)

    def close(self) -> None:
        """Stop scoring; gathered rows are dropped (counted as skipped), and a run in flight
        finishes on its thread and is dropped."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._gathered_rows:
            self.stats.skipped_rows += self._gathered_rows
            if self._observer is not None:
                self._observer.skipped(self._gathered_rows)
        self._gathered, self._gathered_rows, self._gathered_for = [], 0, None
        self._closed = True
        if self._executor is not None:
            self._executor.shutdown(wait=False)
