"""Run uvicorn for `hollang serve`, with a graceful stop on SIGTERM (or Ctrl-C).

What uvicorn does by itself on SIGTERM, in each worker: stop listening, let every request
already read finish (bounded by `timeout_graceful_shutdown`), close idle keep-alive
connections, then run the lifespan shutdown, where `ModelEngine.close` drains the batch
queue. Two gaps, closed here:

- With `--workers N` the supervisor keeps its own copy of the listening socket open while
  the workers drain, so the kernel keeps accepting connections nobody will serve: they hang,
  then are reset. `DrainingMultiprocess` closes it first, so new connections are refused.
- After a graceful stop uvicorn re-raises the signal with its default action, so the
  process dies "killed by SIGTERM" instead of exiting 0. We handle the re-raise.

And with several workers, a worker that cannot start (a stale schema, say) stops the
supervisor as it should, but its exit status was 0; it is 3 here, as with one worker.
"""

from __future__ import annotations

import signal
import sys
from typing import Any

import uvicorn
from uvicorn.supervisors import Multiprocess

STARTUP_FAILURE = 3  # uvicorn's exit code when the app could not start


class DrainingMultiprocess(Multiprocess):
    """Stop listening before telling the workers to drain."""

    def terminate_all(self) -> None:
        for sock in self.sockets:
            sock.close()
        super().terminate_all()


def run(app: str, *, workers: int, **options: Any) -> None:
    """Serve the factory `app` and return once a graceful stop completed."""
    config = uvicorn.Config(app, workers=workers, **options)
    if workers > 1:
        supervisor = DrainingMultiprocess(config, sockets=[config.bind_socket()])
        supervisor.run()
        # uvicorn's supervisor stops when a worker cannot start, but still exits 0.
        if any(process.exitcode == STARTUP_FAILURE for process in supervisor.processes):
            sys.exit(STARTUP_FAILURE)
        return
    server = uvicorn.Server(config)

    def stop(_signum: int, _frame: object) -> None:
        # Outside uvicorn's own handlers: before it starts (stop when it does) and the
        # re-raise after its graceful shutdown (nothing left to do: exit normally).
        server.should_exit = True

    for handled in (signal.SIGTERM, signal.SIGINT):
        signal.signal(handled, stop)
    server.run()
    if not server.started:
        sys.exit(STARTUP_FAILURE)
