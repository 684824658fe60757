"""What the storage tests share: S3 servers (moto, in-process and as a killable process),
the two stores under test, and model files."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3
import httpx
import numpy as np

from model.modelfile import ModelFile, ModelMetadata, build_mlp
from server.settings import Settings
from storage.factory import object_store
from storage.objectstore import ObjectStore
from tests.helpers import free_port, make_settings

ROOT = Path(__file__).resolve().parents[1]
BUNDLED = ROOT / "model" / "bundled" / "default.onnx"
LABELS: tuple[str, ...] = ModelFile.read(BUNDLED).metadata.labels
AWS_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
}
STORES = ["local", "s3"]


@dataclass
class StoreUnderTest:
    """One object store (a local folder or a fresh bucket) and how to point the service at
    it, in-process (`settings`) and in a subprocess (`env`)."""

    kind: str
    data_dir: Path
    overrides: dict[str, Any] = field(default_factory=dict)

    @property
    def env(self) -> dict[str, str]:
        env = {"HOLLANG_DATA_DIR": str(self.data_dir), **AWS_ENV}
        for name, value in self.overrides.items():
            env[f"HOLLANG_{name.upper()}"] = str(value)
        return env

    def settings(self, database_url: str, **more: Any) -> Settings:
        return make_settings(self.data_dir, database_url, **{**self.overrides, **more})

    @property
    def store(self) -> ObjectStore:
        return object_store(Settings(data_dir=self.data_dir, **self.overrides))


def new_bucket(endpoint: str, name: str | None = None) -> str:
    name = name or f"hollang-{secrets.token_hex(6)}"
    client = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    client.create_bucket(Bucket=name)
    return name


def s3_store(data_dir: Path, endpoint: str, bucket: str | None = None) -> StoreUnderTest:
    overrides = {
        "s3_bucket": bucket or new_bucket(endpoint),
        "s3_prefix": "hollang-test",
        "s3_endpoint_url": endpoint,
        "s3_connect_timeout": 1.0,
        "s3_read_timeout": 5.0,
        "s3_max_attempts": 2,
    }
    return StoreUnderTest("s3", data_dir, overrides)


class MotoProcess:
    """A moto S3 server in its own process, so stopping it really closes every connection
    (an in-process server's keep-alive threads would go on answering)."""

    def __init__(self, port: int | None = None) -> None:
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        moto = Path(sys.executable).with_name("moto_server")
        self._process = subprocess.Popen(
            [str(moto), "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={**os.environ, **AWS_ENV},
        )
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.get(f"{self.url}/moto-api/", timeout=1)
                return
            except httpx.HTTPError:
                if self._process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError("moto_server did not start") from None
                time.sleep(0.1)

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(timeout=10)
            self._process = None


def model_bytes(version: str, seed: int, labels: tuple[str, ...] = LABELS) -> bytes:
    """A valid 4-16-len(labels) MLP: the same arguments give the same bytes."""
    rng = np.random.default_rng(seed)
    layers = [
        (rng.normal(size=(16, 4)), rng.normal(size=16)),
        (rng.normal(size=(len(labels), 16)), rng.normal(size=len(labels))),
    ]
    return build_mlp(layers, ModelMetadata(model_version=version, labels=labels))


def wait_for(check: Any, deadline_seconds: float, what: str, interval: float = 0.05) -> Any:
    """Poll `check()` until it returns something truthy; fail with `what` at the deadline."""
    deadline = time.monotonic() + deadline_seconds
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {deadline_seconds}s waiting for {what}")
        time.sleep(interval)


def chunks(stream: Iterator[bytes]) -> bytes:
    return b"".join(stream)
