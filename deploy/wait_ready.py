#!/usr/bin/env python3
"""Poll a Hollang readiness URL until it answers 200 "ready" or a deadline passes.

One prober for every place that asks "is it ready?": the image's HEALTHCHECK (a single
probe), CodeDeploy's ValidateService hook and the CI docker check (a bounded wait). It
uses only the standard library because it runs on bare instances and in the slim image.
Exit status: 0 ready, 1 not ready in time.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.request


def probe(url: str, timeout: float) -> str | None:
    """None when ready, else why not."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read() or b"{}").get("message", "")
        except ValueError:
            message = ""
        return f"HTTP {exc.code} {message}".strip()
    except (OSError, ValueError) as exc:
        return f"{type(exc).__name__}: {exc}"
    if body.get("data", {}).get("status") != "UP":
        return f"unexpected answer: {body}"
    return None


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("url", nargs="?", help="readiness URL (default: see --port-from-env)")
    parser.add_argument(
        "--port-from-env",
        action="store_true",
        help="probe http://127.0.0.1:$HOLLANG_PORT/health/ready (port 8000 if unset)",
    )
    parser.add_argument("--timeout", type=float, default=60, help="seconds; 0 = probe once")
    parser.add_argument("--interval", type=float, default=1, help="seconds between probes")
    args = parser.parse_args(argv)
    url = args.url
    if url is None:
        if not args.port_from_env:
            parser.error("give a URL or --port-from-env")
        url = f"http://127.0.0.1:{os.environ.get('HOLLANG_PORT', '8000')}/health/ready"

    deadline = time.monotonic() + args.timeout
    while True:
        reason = probe(url, timeout=min(5.0, max(args.timeout, 1.0)))
        if reason is None:
            print(f"ready: {url}")
            return 0
        if time.monotonic() >= deadline:
            print(f"NOT READY after {args.timeout:g}s: {url}: {reason}", file=sys.stderr)
            return 1
        time.sleep(args.interval)


if __name__ == "__main__":
    sys.exit(main())
