"""moto's S3-compatible server for the local compose stack, with the API's bucket made.

moto starts empty; creating the bucket here, before the health check can pass, lets the
API start only once its bucket exists, with no one-shot init container.
"""

from __future__ import annotations

import os
import signal
import threading

import boto3
from moto.server import ThreadedMotoServer

PORT = 5000


def main() -> None:
    server = ThreadedMotoServer(ip_address="0.0.0.0", port=PORT)
    server.start()
    bucket = os.environ.get("HOLLANG_S3_BUCKET", "hollang-local")
    client = boto3.client(
        "s3",
        endpoint_url=f"http://127.0.0.1:{PORT}",
        region_name="us-east-1",
        aws_access_key_id="local",
        aws_secret_access_key="local",
    )
    client.create_bucket(Bucket=bucket)
    print(f"moto S3 on :{PORT}, bucket {bucket}", flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    server.stop()


if __name__ == "__main__":
    main()
