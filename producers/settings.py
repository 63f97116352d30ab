"""Typed settings: the only code that reads the environment.

``Settings.from_env()`` reads ``MEMSTREAM_*`` variables; ``Settings.from_url()`` starts from
a URL. ``rediss://`` turns TLS on; username and password serve ACL users.

The password is a secret: it is held as a :class:`~pydantic.SecretStr`, and a password
written into ``redis_url`` (``redis://user:pw@host``) is moved out of the URL into that
field when the settings are built, so neither ``repr``, ``str`` nor a log line shows it.

Every wait is bounded by default (see the timeout fields): a frozen or unreachable Redis
costs an append at most ``append_deadline_s`` and a read at most ``read_deadline_s``.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any, Literal
from urllib.parse import unquote, urlsplit, urlunsplit

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)

from .errors import ConfigError

DEFAULT_URL = "redis://localhost:6379/0"
ENV_PREFIX = "MEMSTREAM_"

Profile = Literal["development", "production"]
CLUSTER_SCHEMES = ("redis+cluster", "rediss+cluster")


class Settings(BaseModel):
    """Connection and client configuration. Immutable; build a new one to change it."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    redis_url: str = DEFAULT_URL
    username: str | None = None
    password: SecretStr | None = None
    """Never shown: ``repr`` prints ``**********``; read it with ``get_secret_value()``."""
    tls_ca_certs: str | None = None
    tls_certfile: str | None = None
    tls_keyfile: str | None = None
    tls_verify: bool = True
    socket_timeout: float = Field(default=3.0, gt=0)
    """Seconds one reply may take. A healthy Redis answers an append in well under a
    millisecond; 3 s rides out a fork or AOF-rewrite stall of a few hundred ms and stays
    above a worker's blocking read (``block_ms`` 1000 by default, which must stay below
    it), while a frozen server is noticed within 3 s instead of hanging the caller."""
    connect_timeout: float = Field(default=2.0, gt=0)
    """Seconds a TCP (or TLS) connect may take: long enough for one lost SYN to be sent
    again (Linux waits 1 s), short enough that a dead host fails within the deadline."""
    append_deadline_s: float = Field(default=5.0, gt=0, le=3600)
    """Wall time one ``append`` / ``append_many`` may take, every retry and reconnect
    included; past it the append raises :class:`RedisTimeoutError` (or the last error),
    or goes to the outbox when the producer has one. 5 s is one timed-out try plus a
    reconnect and a second try: it covers a dropped connection or a short restart, and
    stays below what an agent's turn can afford to stall."""
    read_deadline_s: float = Field(default=5.0, gt=0, le=3600)
    """The same bound for each reader call (one query, with its follow-up round trips)."""
    outbox_retention_s: int = Field(default=6 * 3600, ge=60)
    """How long an append may wait in a producer's outbox and still be flushed exactly
    once. The deployment's eid TTL (1 day by default) must be longer: a producer with an
    outbox refuses to append where it is not (see :mod:`.outbox`)."""
    retries: int = Field(default=20, ge=0, le=1000)
    """Most retries of one call within its deadline. Memstream retries, not redis-py:
    redis-py's own retries nest (each command retry re-runs a connect that retries on its
    own), which turned one append against a frozen Redis into a 255 s wait. 20 is more
    than the default deadline leaves room for, so the deadline is what ends the tries:
    an append rides out a Redis restart of up to ~5 s instead of failing after ~1.5 s."""
    backoff_base: float = Field(default=0.02, gt=0)
    backoff_cap: float = Field(default=2.0, gt=0)
    """Between tries, and between an outbox flusher's tries, memstream sleeps a uniform
    random time in [0, min(backoff_cap, backoff_base * 2**n)] (full jitter, so a fleet of
    producers does not reconnect in step). A 2 s cap bounds how long after Redis is
    back a waiting flusher notices."""
    max_connections: int = Field(default=64, ge=1)
    wait_replicas: int = Field(default=0, ge=0, le=16)
    """Replicas that must acknowledge each append before it returns (``WAIT``; see
    docs/operations.md, "Topologies"): 0 returns once the primary has it (replication is
    asynchronous, so a primary that dies at once can lose it), 1 or more makes an
    acknowledged append survive the failover of its primary, at the cost of a replica's
    round trip per call. Short of the count within ``wait_timeout_ms`` the append raises
    :class:`NotReplicatedError` (retried within the deadline, like a timeout)."""
    wait_timeout_ms: int = Field(default=1000, ge=1, le=60_000)
    """Most milliseconds one ``WAIT`` blocks (clipped to what is left of the deadline)."""
    cluster: bool = False
    """Talk to a Redis Cluster (docs/operations.md, "Topologies"): ``MEMSTREAM_CLUSTER=1``
    with any node's URL, or a ``redis+cluster://`` (``rediss+cluster://``) URL, which sets
    it. The client discovers every node from the one named."""
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

    # Embeddings (memstream.projections.embedders, docs/search.md): computed by the worker.
    # "wordllama" runs offline from the weights in its wheel; "openai" calls an
    # OpenAI-compatible /v1/embeddings endpoint; "none" turns semantic search off.
    embedder: Literal["none", "wordllama", "openai"] = "wordllama"
    embedder_url: str | None = None  # openai: the base URL, e.g. http://127.0.0.1:8080/v1
    embedder_model: str | None = None  # openai: the model name sent with each request
    embedder_api_key: SecretStr | None = None  # openai: sent as a bearer token
    embedder_batch: int = Field(default=64, ge=1, le=4096)
    embedder_timeout_s: float = Field(default=30.0, gt=0, le=600)
    # Messages are the hot stream: embedding each one cost the worker 0.40x its throughput
    # and took freshness p99 from 16 ms to 149 ms at 1,000/s (docs/benchmarks.md), so only
    # episodes, knowledge and skills get vectors unless a deployment asks for messages too.
    embed_messages: bool = False

    def __init__(self, **data: Any) -> None:
        try:
            super().__init__(**data)
        except ValidationError as e:
            raise config_error(e) from e

    def __repr_args__(self) -> Any:
        # The URL never holds the password (see _password_out_of_url); this is the belt
        # to those braces for a URL that could not be parsed.
        for name, value in super().__repr_args__():
            yield name, (redacted_url(value) if name == "redis_url" else value)

    @model_validator(mode="before")
    @classmethod
    def _password_out_of_url(cls, data: Any) -> Any:
        """Move ``redis://user:pw@host`` 's password into the secret field."""
        if not isinstance(data, dict) or not isinstance(data.get("redis_url"), str):
            return data
        url = data["redis_url"]
        parts = urlsplit(url)
        if parts.password is None:
            return data
        out = dict(data)
        if out.get("password") is None:
            out["password"] = unquote(parts.password)
        if out.get("username") is None and parts.username:
            out["username"] = unquote(parts.username)
        out["redis_url"] = redacted_url(url, drop=True)
        return out

    @model_validator(mode="before")
    @classmethod
    def _cluster_scheme(cls, data: Any) -> Any:
        """``redis+cluster://`` turns ``cluster`` on; the URL keeps its scheme."""
        if not isinstance(data, dict) or not isinstance(data.get("redis_url"), str):
            return data
        if urlsplit(data["redis_url"]).scheme in CLUSTER_SCHEMES:
            return {**data, "cluster": True}
        return data

    @field_validator("redis_url")
    @classmethod
    def _known_scheme(cls, url: str) -> str:
        scheme = urlsplit(url).scheme
        if scheme not in ("redis", "rediss", "unix", *CLUSTER_SCHEMES):
            raise ValueError(
                "must start with redis://, rediss://, unix:// or redis+cluster:// "
                "(rediss+cluster://)"
            )
        return url

    @property
    def tls(self) -> bool:
        return urlsplit(self.redis_url).scheme in ("rediss", "rediss+cluster")

    @property
    def node_url(self) -> str:
        """``redis_url`` with ``+cluster`` dropped from its scheme: what redis-py parses."""
        return self.redis_url.replace("+cluster://", "://", 1)

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
        return cls(**values)


def config_error(error: ValidationError) -> ConfigError:
    """Name the first failing field and its rule, without echoing a secret's value."""
    first = error.errors()[0]
    field = ".".join(str(part) for part in first["loc"]) or "settings"
    shown = "" if field == "password" else f" (got {first.get('input')!r})"
    if field == "redis_url":
        shown = f" (got {redacted_url(str(first.get('input')))!r})"
    more = f"; and {error.error_count() - 1} more" if error.error_count() > 1 else ""
    return ConfigError(f"invalid memstream setting {field}: {first['msg']}{shown}{more}")


def redacted_url(url: str, *, drop: bool = False) -> str:
    """``url`` with its password replaced by ``***`` (or removed when ``drop``)."""
    try:
        parts = urlsplit(url)
        if parts.password is None:
            return url
        user = parts.username or ""
        host = parts.netloc.rpartition("@")[2]
        secret = "" if drop else ":***"
        auth = f"{user}{secret}@" if user or not drop else ""
        return urlunsplit(parts._replace(netloc=auth + host))
    except ValueError:
        return "<unparsable URL>"
