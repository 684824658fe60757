"""The object store on S3 (or any S3-compatible server); the only module that imports boto3.

Retries and timeouts are botocore's (`standard` retry mode: exponential backoff with jitter
on throttling, 5xx and connection errors), so a replica whose S3 is down fails a call after
a bounded time and keeps serving; it never hangs on a dead endpoint.

Conditional writes use S3's own `If-Match` / `If-None-Match: *` on PutObject (S3 has
supported both since 2024), so the registry's compare-and-swap holds across machines, not
just across processes of one host. S3 answers a lost condition with 412 (or 409 when two
conditional writes race), and an `If-Match` on a missing key with 404: all three are
`PreconditionFailed` here.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
from boto3.exceptions import Boto3Error
from boto3.s3.transfer import TransferConfig
from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from storage.objectstore import (
    CHUNK_SIZE,
    ObjectNotFound,
    ObjectStoreError,
    ObjectStream,
    PreconditionFailed,
    StoredObject,
    check_key,
)

_MISSING = {"NoSuchKey", "404", "NotFound"}
_CONFLICT = {"PreconditionFailed", "412", "ConditionalRequestConflict", "409"}


class S3ObjectStore:
    """Objects under `prefix` in one bucket; a client per store (boto3 clients are thread-safe)."""

    def __init__(
        self,
        bucket: str,
        *,
        prefix: str = "",
        endpoint_url: str | None = None,
        region: str | None = None,
        connect_timeout: float = 2.0,
        read_timeout: float = 10.0,
        max_attempts: int = 3,
    ) -> None:
        self.bucket = bucket
        self.prefix = prefix.strip("/") + "/" if prefix.strip("/") else ""
        self.endpoint_url = endpoint_url
        config = Config(
            connect_timeout=connect_timeout,
            read_timeout=read_timeout,
            retries={"mode": "standard", "max_attempts": max_attempts},
            signature_version="s3v4",
            # S3-compatible servers (and moto) answer on one host: address buckets by path.
            s3={"addressing_style": "path" if endpoint_url else "auto"},
        )
        self._client: Any = boto3.session.Session().client(
            "s3", endpoint_url=endpoint_url, region_name=region, config=config
        )
        self._transfer = TransferConfig(
            multipart_threshold=16 * 1024 * 1024,
            multipart_chunksize=16 * 1024 * 1024,
            max_concurrency=2,
        )

    def describe(self) -> str:
        where = f" at {self.endpoint_url}" if self.endpoint_url else ""
        return f"s3://{self.bucket}/{self.prefix}{where}"

    def _key(self, key: str) -> str:
        return self.prefix + check_key(key)

    @contextlib.contextmanager
    def _errors(self, key: str, *, conditional: bool = False) -> Iterator[None]:
        try:
            yield
        except ClientError as exc:
            code = str(exc.response.get("Error", {}).get("Code", ""))
            if conditional and code in _CONFLICT | _MISSING:
                raise PreconditionFailed(f"{key} changed since it was read") from exc
            if code in _MISSING:
                raise ObjectNotFound(key) from None
            raise ObjectStoreError(f"S3 refused {key}: {code or exc}") from exc
        except (BotoCoreError, Boto3Error) as exc:
            raise ObjectStoreError(f"S3 request for {key} failed: {exc}") from exc

    def get(self, key: str) -> StoredObject:
        with self._errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
            data = response["Body"].read()
        return StoredObject(
            key=key,
            data=data,
            etag=str(response["ETag"]).strip('"'),
            content_type=response.get("ContentType", "application/octet-stream"),
        )

    def open(self, key: str) -> ObjectStream:
        with self._errors(key):
            response = self._client.get_object(Bucket=self.bucket, Key=self._key(key))
        body = response["Body"]

        def chunks() -> Iterator[bytes]:
            try:
                with self._errors(key):
                    yield from body.iter_chunks(CHUNK_SIZE)
            finally:
                body.close()

        return ObjectStream(
            key,
            int(response["ContentLength"]),
            response.get("ContentType", "application/octet-stream"),
            chunks(),
        )

    def put(
        self,
        key: str,
        data: bytes,
        *,
        content_type: str = "application/octet-stream",
        cache_control: str | None = None,
        if_match: str | None = None,
        if_none_match: bool = False,
    ) -> str:
        arguments: dict[str, Any] = {
            "Bucket": self.bucket,
            "Key": self._key(key),
            "Body": data,
            "ContentType": content_type,
        }
        if cache_control:
            arguments["CacheControl"] = cache_control
        if if_match is not None:
            arguments["IfMatch"] = f'"{if_match}"'
        if if_none_match:
            arguments["IfNoneMatch"] = "*"
        conditional = if_match is not None or if_none_match
        with self._errors(key, conditional=conditional):
            response = self._client.put_object(**arguments)
        return str(response["ETag"]).strip('"')

    def put_file(
        self,
        key: str,
        path: Path,
        *,
        content_type: str = "application/octet-stream",
        cache_control: str | None = None,
    ) -> None:
        extra = {"ContentType": content_type}
        if cache_control:
            extra["CacheControl"] = cache_control
        with self._errors(key):
            self._client.upload_file(
                str(path), self.bucket, self._key(key), ExtraArgs=extra, Config=self._transfer
            )

    def exists(self, key: str) -> bool:
        try:
            with self._errors(key):
                self._client.head_object(Bucket=self.bucket, Key=self._key(key))
        except ObjectNotFound:
            return False
        return True

    def list(self, prefix: str) -> Iterator[str]:
        paginator = self._client.get_paginator("list_objects_v2")
        with self._errors(prefix or "/"):
            for page in paginator.paginate(Bucket=self.bucket, Prefix=self.prefix + prefix):
                for item in page.get("Contents", []):
                    yield str(item["Key"])[len(self.prefix) :]

    def url(self, key: str, *, expires_in: int) -> str | None:
        with self._errors(key):
            url: str = self._client.generate_presigned_url(
                "get_object",
                Params={"Bucket": self.bucket, "Key": self._key(key)},
                ExpiresIn=expires_in,
            )
        return url
