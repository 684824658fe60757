"""The one settings object, read from the environment (prefix ``HOLLANG_``) at start-up."""

from __future__ import annotations

from functools import cached_property
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from model.batcher import BatchSettings

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
    model_poll_interval: float = Field(default=2.0, gt=0, description="seconds")
    catalog_poll_interval: float = Field(default=10.0, gt=0, description="seconds")
    max_model_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    db_pool_size: int = Field(default=10, ge=1)
    db_max_overflow: int = Field(default=20, ge=0)

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

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
    def batch(self) -> BatchSettings:
        return BatchSettings(
            max_batch_size=self.max_batch_size,
            max_queue_delay=self.max_queue_delay_ms / 1000,
            max_queue_size=self.max_queue_size,
        )
