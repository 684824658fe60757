"""Keep the cyclic garbage collector off the request path.

A loaded worker holds a large heap of long-lived objects (FastAPI, pydantic, SQLAlchemy,
ONNX Runtime, botocore and their modules). CPython's full (generation-2) collection walks
all of it: 16-66 ms on this machine, and those pauses were most of the p99 of /predict.
Requests themselves make almost no reference cycles.

So once the app is built, each worker collects once and moves every surviving object to
the permanent generation with `gc.freeze()` (the technique Instagram published for their
forked workers): later collections only walk what was allocated since, which is small and
short-lived. The collector stays on, so a cycle a request does make is still reclaimed.
The first threshold is raised from 700 to `YOUNG_THRESHOLD` allocations: young collections
happen a tenth as often, and each still walks only young objects, so each stays short.
Undoing the freeze in every worker took /predict's p99 from 16 to 52 ms at 16 connections
and from 38 to 94 ms at 64 (README, Benchmarks: the experiment and its command).
"""

from __future__ import annotations

import gc
import time
from collections.abc import Callable

YOUNG_THRESHOLD = 7_000
OLDER_THRESHOLDS = (10, 10)  # CPython's defaults for generations 1 and 2


def freeze_startup_heap() -> int:
    """Collect, then exclude everything alive now from future collections; returns the
    number of objects frozen. Call once per worker, after start-up, before serving."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(YOUNG_THRESHOLD, *OLDER_THRESHOLDS)
    return gc.get_freeze_count()


def observe_pauses(record: Callable[[int, float], None]) -> Callable[[], None]:
    """Call `record(generation, seconds)` after every collection in this process, so the
    pauses this module is about are visible in production (/metrics), not only in a
    benchmark. Returns the function that stops it."""
    started = [0.0]

    def callback(phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            started[0] = time.perf_counter()
        else:
            record(info["generation"], time.perf_counter() - started[0])

    gc.callbacks.append(callback)
    return lambda: gc.callbacks.remove(callback)
