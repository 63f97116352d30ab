"""Redis clients built from :class:`Settings`: retry policy, TLS and ACL in one place.

Replies stay RESP2 bytes everywhere (``decode_responses=False``) so that binary payloads
survive and every caller normalises reply shapes the same way.
"""

from __future__ import annotations

from typing import Any

import redis
import redis.asyncio
from redis.backoff import ExponentialWithJitterBackoff
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError

from .settings import Settings


def client_options(settings: Settings) -> dict[str, Any]:
    """Keyword arguments shared by the sync and async clients."""
    options: dict[str, Any] = {
        "socket_timeout": settings.socket_timeout,
        "socket_connect_timeout": settings.connect_timeout,
        "decode_responses": False,
        "protocol": 2,
        "max_connections": settings.max_connections,
        "health_check_interval": 30,
    }
    if settings.username is not None:
        options["username"] = settings.username
    if settings.password is not None:
        options["password"] = settings.password
    if settings.tls:
        options["ssl_cert_reqs"] = "required" if settings.tls_verify else "none"
        if settings.tls_ca_certs:
            options["ssl_ca_certs"] = settings.tls_ca_certs
        if settings.tls_certfile:
            options["ssl_certfile"] = settings.tls_certfile
        if settings.tls_keyfile:
            options["ssl_keyfile"] = settings.tls_keyfile
    return options


def _backoff(settings: Settings) -> ExponentialWithJitterBackoff:
    return ExponentialWithJitterBackoff(cap=settings.backoff_cap, base=settings.backoff_base)


RETRY_ON = (RedisConnectionError, RedisTimeoutError)
"""Retrying these is safe for appends: every append carries an ``eid`` that dedups it."""


def sync_client(settings: Settings) -> redis.Redis:
    from redis.retry import Retry

    retry = Retry(_backoff(settings), settings.retries, supported_errors=RETRY_ON)
    return redis.Redis.from_url(settings.redis_url, retry=retry, **client_options(settings))


def async_client(settings: Settings) -> redis.asyncio.Redis:
    from redis.asyncio.retry import Retry

    retry = Retry(_backoff(settings), settings.retries, supported_errors=RETRY_ON)
    return redis.asyncio.Redis.from_url(settings.redis_url, retry=retry, **client_options(settings))
