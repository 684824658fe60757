"""The database part of readiness, answered within a second however loaded the service is.

`Database.check` needs a pooled connection and, after a failed write, one write: under 100
writers the pool is taken and a write waits for locks, and a dead server costs a connect
timeout. So the check runs in its own thread, one at a time; a readiness request waits at
most `BUDGET` for it and otherwise reports the last finished result.
"""

from __future__ import annotations

import asyncio

from db.session import Database

BUDGET = 0.5  # seconds a readiness request waits for a fresh database check


class DatabaseReadiness:
    def __init__(self, db: Database) -> None:
        self.db = db
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
        self.last = self.db.check()
        return self.last
