"""The per-run directory where the workers of one `hollang serve` share their metrics.

prometheus_client picks its storage when it is first imported, so the directory must be
in the environment before that: `hollang serve` calls `metrics_directory()` first thing,
and the workers it spawns inherit the variable. Files of an earlier run would be summed
into this one's, so the directory starts empty and is removed when the server stops.
This module imports nothing of prometheus_client on purpose.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from server.settings import MULTIPROC_ENV


@contextmanager
def metrics_directory() -> Iterator[Path]:
    """An empty metrics directory for this run, exported in `PROMETHEUS_MULTIPROC_DIR`.

    An operator's own directory (the variable already set) is emptied and kept; otherwise a
    fresh temporary one is created and removed at the end.
    """
    given = os.environ.get(MULTIPROC_ENV)
    if given:
        directory = Path(given)
        directory.mkdir(parents=True, exist_ok=True)
        for stale in directory.glob("*.db"):
            stale.unlink()
        yield directory
        return
    directory = Path(tempfile.mkdtemp(prefix="hollang-metrics-"))
    os.environ[MULTIPROC_ENV] = str(directory)
    try:
        yield directory
    finally:
        os.environ.pop(MULTIPROC_ENV, None)
        shutil.rmtree(directory, ignore_errors=True)
