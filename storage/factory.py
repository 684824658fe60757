"""Pick the object store from the settings: S3 when a bucket is configured, else the local
folder under the data dir (the embedded default). boto3 is imported only when S3 is used."""

from __future__ import annotations

from pathlib import Path
from typing import Protocol

from storage.objectstore import LocalObjectStore, ObjectStore


class StoreSettings(Protocol):
    """The settings this needs (`server.settings.Settings` has them); storage stays
    independent of the server package."""

    @property
    def s3_bucket(self) -> str | None: ...
    @property
    def s3_prefix(self) -> str: ...
    @property
    def s3_endpoint_url(self) -> str | None: ...
    @property
    def s3_region(self) -> str | None: ...
    @property
    def s3_connect_timeout(self) -> float: ...
    @property
    def s3_read_timeout(self) -> float: ...
    @property
    def s3_max_attempts(self) -> int: ...
    @property
    def objects_dir(self) -> Path: ...


def object_store(settings: StoreSettings) -> ObjectStore:
    if not settings.s3_bucket:
        return LocalObjectStore(settings.objects_dir)
    from storage.s3 import S3ObjectStore

    return S3ObjectStore(
        settings.s3_bucket,
        prefix=settings.s3_prefix,
        endpoint_url=settings.s3_endpoint_url or None,
        region=settings.s3_region or None,
        connect_timeout=settings.s3_connect_timeout,
        read_timeout=settings.s3_read_timeout,
        max_attempts=settings.s3_max_attempts,
    )
