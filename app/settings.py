"""Settings read from ``COSTGRAPH_*`` environment variables and validated at start."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated

import platformdirs
from pydantic import Field, field_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict
from sqlalchemy.engine import make_url
from sqlalchemy.exc import ArgumentError


def _default_data_dir() -> Path:
    return platformdirs.user_data_path("costgraph")


class Settings(BaseSettings):
    """Everything an operator can set. Invalid values stop the process with a clear message."""

    model_config = SettingsConfigDict(env_prefix="COSTGRAPH_", extra="ignore")

    database_url: str | None = Field(
        default=None,
        description="postgresql://… of an existing server; unset starts an embedded one.",
    )
    broadcast_url: str = "memory://"
    data_dir: Path = Field(default_factory=_default_data_dir)
    issuer: str = "http://localhost:8000"
    audience: str = "costgraph"
    signing_key_path: Path | None = Field(
        default=None, description="PEM private key that signs tokens; default: in the data dir."
    )
    jwt_leeway_seconds: int = Field(default=30, ge=0, le=300)
    allowed_origins: Annotated[list[str], NoDecode] = Field(default_factory=list)
    graphql_ide: bool = False
    introspection: bool = False
    db_pool_size: int = Field(default=10, ge=1, le=200)
    statement_timeout_ms: int = Field(default=15_000, ge=100)
    lock_timeout_ms: int = Field(default=5_000, ge=10)
    max_batch_events: int = Field(default=1_000, ge=1, le=10_000)
    max_page_size: int = Field(default=200, ge=1, le=10_000)
    max_metadata_bytes: int = Field(default=8_192, ge=64)
    max_idempotency_key_length: int = Field(default=255, ge=8, le=1024)

    @field_validator("database_url")
    @classmethod
    def _check_database_url(cls, value: str | None) -> str | None:
        if value is None or value == "":
            return None
        scheme = value.split("://", 1)[0]
        if scheme not in {"postgresql", "postgres", "postgresql+asyncpg"}:
            raise ValueError(
                f"COSTGRAPH_DATABASE_URL must be a postgresql:// URL (got scheme {scheme!r})"
            )
        try:
            make_url(value)
        except ArgumentError as exc:
            raise ValueError(f"COSTGRAPH_DATABASE_URL is not a valid URL: {exc}") from exc
        return value

    @field_validator("broadcast_url")
    @classmethod
    def _check_broadcast_url(cls, value: str) -> str:
        scheme = value.split("://", 1)[0]
        if scheme not in {"memory", "redis", "rediss", "postgres", "postgresql"}:
            raise ValueError("COSTGRAPH_BROADCAST_URL must be memory://, redis://… or postgres://…")
        return value

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return [origin.strip() for origin in value.split(",") if origin.strip()]
        return value

    @property
    def key_dir(self) -> Path:
        return self.data_dir / "keys"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
