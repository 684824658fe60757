"""The HTTP layer: FastAPI app, routes, schemas, errors, settings and the CLI."""

__version__ = "0.1.0"
