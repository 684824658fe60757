"""The one logging set-up, used by the CLI and by every server process."""

from __future__ import annotations

import logging


def configure_logging() -> None:
    """INFO logs (model swaps, catalogue changes) in every process, including uvicorn's
    worker processes, which do not inherit the CLI's set-up. A no-op when already set."""
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
        )
