"""POST /predict as a raw ASGI app: what Python and uvicorn cost, with no framework at all.

uvicorn --factory benchmarks.baselines.raw_asgi:create_app --workers 2 --port PORT
"""

from __future__ import annotations

from typing import Any

import orjson

from benchmarks.baselines.job import Job, answers_of

JSON = [(b"content-type", b"application/json")]


def create_app() -> Any:
    job = Job()

    async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        body = b""
        more = True
        while more:
            message = await receive()
            body += message.get("body", b"")
            more = message.get("more_body", False)
        status, payload = 404, b'{"code":"NOT_FOUND"}'
        if scope["path"] == "/health":
            status, payload = 200, b'{"status":"UP"}'
        elif scope["path"] == "/predict" and scope["method"] == "POST":
            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                parsed = None
            answers = answers_of(
                parsed.get("testResponseDetails") if isinstance(parsed, dict) else None
            )
            if answers is None:
                status, payload = 400, b'{"code":"BAD_REQUEST"}'
            else:
                status, payload = 200, orjson.dumps(job.predict(answers))
        await send({"type": "http.response.start", "status": status, "headers": JSON})
        await send({"type": "http.response.body", "body": payload})

    return app
