"""The one settings object, read from the environment (prefix ``HOLLANG_``) at start-up."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from batching.adaptive import BatchSettings
from model.sandbox import SandboxLimits

# Submissions waiting for the writer beyond this get 503: far more than any pool drains in
# the clients' patience, so only a database that stopped answering reaches it.
WRITE_QUEUE_SIZE = 4096
# Where prometheus_client's multiprocess mode keeps the workers' samples: `hollang serve`
# sets it (cli.metrics_dir) before any worker imports prometheus_client (server.metrics).
MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUNDLED_MODEL = Path(__file__).resolve().parent.parent / "model" / "bundled" / "default.onnx"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="HOLLANG_", env_file=None, extra="ignore")

    data_dir: Path = Path("./var")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: a SQLite file in the data dir"
    )
    model_path: Path | None = Field(
        default=None, description="initial model file; default: the bundled model"
    )
    cors_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    image_base_url: str | None = Field(
        default=None, description="where image URLs point, e.g. a CDN; default: this service"
    )
    admin_token: SecretStr | None = None

    max_batch_size: int = Field(default=64, ge=1, le=4096)
    max_queue_delay_ms: float = Field(default=0.5, ge=0, le=100)
    max_queue_size: int = Field(default=2048, ge=1)
    max_inline_us: float = Field(
        default=200, ge=0, le=100_000, description="batches faster than this skip the thread"
    )
    # The write batcher (db/write_batcher.py): submissions that arrive together share one
    # transaction. Waited only while more keep arriving, as for inference.
    write_max_batch: int = Field(default=64, ge=1, le=1024)
    write_max_delay_ms: float = Field(default=2.0, ge=0, le=100)
    model_poll_interval: float = Field(default=2.0, gt=0, description="seconds")
    catalog_poll_interval: float = Field(default=10.0, gt=0, description="seconds")
    max_model_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # Model validation runs in a child process (model/sandbox.py) within these bounds.
    model_validation_memory_mb: int = Field(default=512, ge=128, description="RLIMIT_AS")
    model_validation_timeout: float = Field(default=30.0, gt=0, le=600, description="seconds")
    # A batch slower than this at any size refuses the model: 64 rows in 50 ms caps a
    # worker at ~1,300 inferences/s, and a longer run holds the one inference thread.
    model_max_batch_ms: float = Field(default=50.0, gt=0, le=10_000)
    max_body_bytes: int = Field(
        default=64 * 1024, ge=1024, description="largest request body outside /admin uploads"
    )
    # Few connections per worker, no overflow: with more, concurrent submissions wait inside
    # InnoDB on the hobbies' counter rows, the tail grows and, on a busy machine, throughput
    # collapses; here they wait their turn instead (README, Benchmarks).
    db_pool_size: int = Field(default=4, ge=1)
    db_max_overflow: int = Field(default=0, ge=0)
    # Bounds on what one client connection can hold (server/protocol.py; README, "Hostile
    # traffic"). The timeouts are deadlines, not idle gaps: a head must be whole within
    # header_timeout of its first byte, the body within body_timeout more.
    max_header_bytes: int = Field(
        default=32 * 1024, ge=1024, description="largest request line + headers, else 431"
    )
    header_timeout: float = Field(
        default=10.0, gt=0, description="seconds from a request's first byte to its headers' end"
    )
    body_timeout: float = Field(
        default=15.0, gt=0, description="seconds more for the body, after the head's deadline"
    )
    max_pipelined_requests: int = Field(default=16, ge=1, description="queued per connection")
    max_connections: int = Field(
        default=1000, ge=1, description="per worker; past it a connection gets 503"
    )
    survey_token: bool = Field(
        default=True, description="surveys need the recommendation's X-Recommendation-Token"
    )
    inference_url: str | None = Field(
        default=None, description="an original-style inference server to call instead"
    )
    inference_timeout: float = Field(default=2.0, gt=0, le=30, description="seconds")
    inference_max_connections: int = Field(default=32, ge=1)

    # Objects (storage/factory.py): S3 when a bucket is set, else <data dir>/objects.
    s3_bucket: str | None = Field(default=None, description="default: the local folder")
    s3_prefix: str = ""
    s3_endpoint_url: str | None = Field(default=None, description="S3-compatible server")
    s3_region: str | None = Field(default=None, description="default: the AWS chain's")
    s3_connect_timeout: float = Field(default=2.0, gt=0, description="seconds")
    s3_read_timeout: float = Field(default=10.0, gt=0, description="seconds")
    s3_max_attempts: int = Field(default=3, ge=1, le=10, description="botocore retries")
    image_url_expiry: int = Field(default=3600, ge=60, description="presigned URL seconds")
    max_image_bytes: int = Field(default=5 * 1024 * 1024, ge=1024)
    bundled_images: bool = Field(
        default=True,
        description="answer GET /images/... from the bundled catalogue's placeholders "
        "when the store has no such image",
    )

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @field_validator("inference_url", mode="before")
    @classmethod
    def _empty_url_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @field_validator("admin_token", mode="before")
    @classmethod
    def _empty_token_is_none(cls, value: object) -> object:
        return None if value == "" else value

    @cached_property
    def resolved_database_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'hollang.db').resolve()}"

    @property
    def resolved_model_path(self) -> Path:
        return self.model_path or BUNDLED_MODEL

    @property
    def objects_dir(self) -> Path:
        return self.data_dir / "objects"

    @property
    def write_batch(self) -> BatchSettings:
        return BatchSettings(
            max_batch_size=self.write_max_batch,
            max_queue_delay=self.write_max_delay_ms / 1000,
            max_queue_size=WRITE_QUEUE_SIZE,
        )

    @property
    def batch(self) -> BatchSettings:
        return BatchSettings(
            max_batch_size=self.max_batch_size,
            max_queue_delay=self.max_queue_delay_ms / 1000,
            max_queue_size=self.max_queue_size,
            max_inline_seconds=self.max_inline_us / 1e6,
        )

    @property
    def sandbox(self) -> SandboxLimits:
        return SandboxLimits(
            memory_mb=self.model_validation_memory_mb,
            timeout=self.model_validation_timeout,
            max_batch_size=self.max_batch_size,
            max_batch_ms=self.model_max_batch_ms,
        )
