"""The pages that show the OpenAPI document, /docs (Swagger UI) and /redoc, with their
scripts and styles served from the package so they work offline. (The error schemas the
document shows live in `server.errors`.)"""

from __future__ import annotations

import os
from os import PathLike
from pathlib import Path

from fastapi import APIRouter
from fastapi.responses import HTMLResponse, Response
from fastapi.staticfiles import StaticFiles
from starlette.types import Receive, Scope, Send

# ---- the documentation pages, /docs and /redoc, served offline ----

STATIC = Path(__file__).resolve().parents[1] / "static"
ASSETS = "/docs/assets"
# Assets change only with a release; their paths carry no version, so a day, not a year.
ASSET_CACHE_CONTROL = "public, max-age=86400"
# Pinned, not guessed by `mimetypes`: the guess for .js differs between Python versions
# and /etc/mime.types, and `nosniff` makes a browser refuse a script of the wrong type.
_ASSET_TYPES = {".js": "text/javascript; charset=utf-8", ".css": "text/css; charset=utf-8"}

SWAGGER_UI_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hollang - Swagger UI</title>
<link rel="stylesheet" href="{ASSETS}/swagger-ui/swagger-ui.css">
<link rel="stylesheet" href="{ASSETS}/docs.css">
</head>
<body>
<div id="swagger-ui"></div>
<script src="{ASSETS}/swagger-ui/swagger-ui-bundle.js"></script>
<script src="{ASSETS}/swagger-init.js"></script>
</body>
</html>
"""
REDOC_HTML = f"""<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Hollang - ReDoc</title>
<link rel="stylesheet" href="{ASSETS}/docs.css">
</head>
<body>
<redoc spec-url="/openapi.json"></redoc>
<script src="{ASSETS}/redoc/redoc.standalone.js"></script>
</body>
</html>
"""
# Swagger UI's own page for OAuth2 flows, with its script from the package.
OAUTH2_REDIRECT_HTML = f"""<!doctype html>
<html lang="en-US">
<body>
<script src="{ASSETS}/swagger-ui/oauth2-redirect.js"></script>
</body>
</html>
"""


class _AssetRoute:
    """What metrics and the access log name an asset request by: the mount, not the file
    (a mount sets no `route` in the scope, so they said `<unmatched>`)."""

    path = f"{ASSETS}/{{path}}"


class DocsAssets(StaticFiles):
    """The vendored Swagger UI and ReDoc files (server/static/SOURCES.md), with a pinned
    Content-Type and a cache lifetime (every other answer is `no-store`)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        scope["route"] = _AssetRoute
        await super().__call__(scope, receive, send)

    def file_response(
        self,
        full_path: PathLike[str] | str,
        stat_result: os.stat_result,
        scope: Scope,
        status_code: int = 200,
    ) -> Response:
        response = super().file_response(full_path, stat_result, scope, status_code)
        content_type = _ASSET_TYPES.get(Path(full_path).suffix)
        if content_type is not None and "content-type" in response.headers:
            response.headers["content-type"] = content_type
        response.headers["cache-control"] = ASSET_CACHE_CONTROL
        return response


router = APIRouter(include_in_schema=False)
router.mount(ASSETS, DocsAssets(directory=STATIC), name="docs-assets")


@router.api_route("/docs", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def swagger_ui() -> HTMLResponse:
    """FastAPI's page loads Swagger UI from a CDN and starts it with an inline script;
    this one needs neither, so it works offline under a CSP of 'self' scripts."""
    return HTMLResponse(SWAGGER_UI_HTML)


@router.api_route("/docs/oauth2-redirect", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def swagger_ui_redirect() -> HTMLResponse:
    return HTMLResponse(OAUTH2_REDIRECT_HTML)


@router.api_route("/redoc", methods=["GET", "HEAD"], response_class=HTMLResponse)
async def redoc() -> HTMLResponse:
    return HTMLResponse(REDOC_HTML)
