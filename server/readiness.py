"""The slow parts of readiness, answered within a second however loaded the service is.

`Database.check` needs a pooled connection and, after a failed write, one write: under 100
writers the pool is taken and a write waits for locks, and a dead server costs a connect
timeout. Listing the image store is a network call on S3. So each check runs in its own
thread, one at a time; a readiness request waits at most `BUDGET` for it and otherwise
reports the last finished result.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable

from db.catalog import Catalog
from db.session import Database
from server.images import missing_images
from storage.objectstore import ObjectStore, ObjectStoreError

BUDGET = 0.5  # seconds a readiness request waits for a fresh check
SHOWN = 10  # missing images named in the answer; the rest are counted
log = logging.getLogger("hollang.readiness")


class BackgroundCheck:
    """A blocking check returning 'ok' or the reason, run off the event loop."""

    def __init__(self, check: Callable[[], str]) -> None:
        self.check = check
        self.last = "not checked yet"
        self._running: asyncio.Future[str] | None = None

    async def status(self) -> str:
        """'ok' or the reason, fresh when the check finishes within BUDGET, else the last."""
        if self._running is None or self._running.done():
            self._running = asyncio.get_running_loop().run_in_executor(None, self._check)
        try:
            return await asyncio.wait_for(asyncio.shield(self._running), BUDGET)
        except TimeoutError:
            return self.last

    def _check(self) -> str:
        self.last = self.check()
        return self.last


class DatabaseReadiness(BackgroundCheck):
    def __init__(self, db: Database) -> None:
        super().__init__(db.check)
        self.db = db


class ImageReadiness(BackgroundCheck):
    """Which of the catalogue's image URLs would be a 404: a catalogue loaded without its
    images says so here. Reported, never a reason to be unready (a missing picture does not
    stop recommendations). Placeholders count only when URLs point at this service: a CDN
    (`HOLLANG_IMAGE_BASE_URL`) sees the bucket alone."""

    def __init__(
        self, catalog: Callable[[], Catalog], store: ObjectStore, *, bundled: bool
    ) -> None:
        super().__init__(self._missing)
        self.catalog = catalog
        self.store = store
        self.bundled = bundled

    def _missing(self) -> str:
        try:
            missing = missing_images(self.catalog(), self.store, bundled=self.bundled)
        except ObjectStoreError as exc:
            log.warning("could not list the image store: %s", exc)
            return "unknown: the image store did not answer"
        if not missing:
            return "ok"
        shown = ", ".join(key.removeprefix("images/") for key in missing[:SHOWN])
        more = f" and {len(missing) - SHOWN} more" if len(missing) > SHOWN else ""
        return f"missing {len(missing)}: {shown}{more}"
