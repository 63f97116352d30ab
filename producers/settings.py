"""Typed settings: the only code that reads the environment.

``Settings.from_env()`` reads ``MEMSTREAM_*`` variables; ``Settings.from_url()`` starts from
a URL. ``rediss://`` turns TLS on; username and password serve ACL users.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, field_validator

from .errors import ConfigError

DEFAULT_URL = "redis://localhost:6379/0"
ENV_PREFIX = "MEMSTREAM_"

Profile = Literal["development", "production"]


class Settings(BaseModel):
    """Connection and client configuration. Immutable; build a new one to change it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str = DEFAULT_URL
    username: str | None = None
    password: str | None = None
    tls_ca_certs: str | None = None
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_verify: bool = True
    socket_timeout: float = Field(default=5.0, gt=0)
    connect_timeout: float = Field(default=5.0, gt=0)
    retries: int = Field(default=6, ge=0, le=100)
    backoff_base: float = Field(default=0.02, gt=0)
    backoff_cap: float = Field(default=2.0, gt=0)
    max_connections: int = Field(default=64, ge=1)
    cluster: bool = False
    profile: Profile = "development"
    redact_emails: bool = False

    # Projections: caps and TTLs by memory type. A TTL is measured from the event's time;
    # None keeps entries until cleared or forgotten.
    history_cap: int = Field(default=100, ge=1, le=100_000)
    history_ttl_s: int | None = Field(default=None, ge=1)
    state_ttl_s: int | None = Field(default=None, ge=1)
    session_ttl_s: int | None = Field(default=None, ge=1)
    working_ttl_s: int = Field(default=3600, ge=1)
    working_cap: int = Field(default=1000, ge=1, le=100_000)
    episode_ttl_s: int | None = Field(default=30 * 86400, ge=1)
    knowledge_ttl_s: int | None = Field(default=90 * 86400, ge=1)
    skill_ttl_s: int | None = Field(default=180 * 86400, ge=1)
    pattern_ttl_s: int | None = Field(default=None, ge=1)
    tensor_cap: int = Field(default=10_000, ge=1, le=10_000_000)  # states kept per owner+kind

    # Cold tier (memstream.tiering, docs/tiering.md): where segments go, and the policy.
    archive_url: str | None = None
    s3_endpoint_url: str | None = None
    tier_older_than_s: int | None = Field(default=7 * 86400, ge=0)
    tier_keep_last: int | None = Field(default=None, ge=0)

    @field_validator("redis_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return url

    @property
    def tls(self) -> bool:
        return urlsplit(self.redis_url).scheme == "rediss"

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Settings:
        return cls(redis_url=url, **options)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None, **overrides: Any) -> Settings:
        """Read ``MEMSTREAM_<FIELD>`` for every field; explicit ``overrides`` win."""
        env = os.environ if environ is None else environ
        values: dict[str, Any] = {}
        for name in cls.model_fields:
            raw = env.get(ENV_PREFIX + name.upper())
            if raw is not None and raw != "":
                values[name] = raw
        values.update({k: v for k, v in overrides.items() if v is not None})
        try:
            return cls.model_validate(values)
        except ValueError as e:
            raise ConfigError(f"invalid memstream settings: {e}") from e
