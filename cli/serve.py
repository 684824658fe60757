"""``hollang serve``: migrate and seed, then run the workers under our supervisor."""

from __future__ import annotations

import click


@click.command("serve")
@click.option("--host", default="127.0.0.1", show_default=True, envvar="HOLLANG_HOST")
@click.option("--port", default=8000, show_default=True, type=int, envvar="HOLLANG_PORT")
@click.option(
    "--workers",
    default=1,
    show_default=True,
    type=click.IntRange(1, 64),
    envvar="HOLLANG_WORKERS",
    help="Worker processes (the container image reads HOLLANG_WORKERS).",
)
@click.option("--no-migrate", is_flag=True, help="Do not migrate and seed the database first.")
def serve_command(host: str, port: int, workers: int, no_migrate: bool) -> None:
    """Serve the API (uvicorn with uvloop and httptools, bounded per connection).

    SIGTERM drains: new connections are refused, accepted requests and the batch queue
    finish (at most 30 s), then the process exits 0."""
    from cli.metrics_dir import metrics_directory

    # Before anything imports prometheus_client: the workers share metrics through files.
    with metrics_directory():
        from cli import supervisor
        from cli.context import prepare_database
        from server.protocol import GuardedHttpToolsProtocol
        from server.settings import Settings

        if not no_migrate:
            prepare_database(Settings())
        supervisor.run(
            "server.app:create_app",
            factory=True,
            host=host,
            port=port,
            workers=workers,
            loop="auto",
            http=GuardedHttpToolsProtocol,  # httptools, bounded per connection
            access_log=False,  # server.middleware logs one line per request instead
            log_config=None,  # uvicorn's own logs go through our (JSON) handler
            timeout_graceful_shutdown=30,
        )
