"""Redis clients built from :class:`Settings`: timeouts, TLS and ACL in one place.

Replies stay RESP2 bytes everywhere (``decode_responses=False``) so that binary payloads
survive and every caller normalises reply shapes the same way.

redis-py does not retry here (``Retry(NoBackoff(), 0)``): its retries nest, each command
retry re-running a connect that retries on its own, so with 6 retries and a 5 s socket
timeout one append against a frozen Redis waited 255 s. Retrying is memstream's job,
within a deadline (:mod:`.deadline`). The sync connections also clip their socket timeouts
to the deadline in force (:class:`_Clipped`), so a try started near the end of a deadline
cannot outlast it.
"""

from __future__ import annotations

import time
from typing import Any, cast

import redis
import redis.asyncio
from redis.backoff import NoBackoff

from .deadline import current_deadline
from .errors import ConfigError
from .packer import faster
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
        options["password"] = settings.password.get_secret_value()
    if settings.tls:
        options["ssl_cert_reqs"] = "required" if settings.tls_verify else "none"
        if settings.tls_ca_certs:
            options["ssl_ca_certs"] = settings.tls_ca_certs
        if settings.tls_certfile:
            options["ssl_certfile"] = settings.tls_certfile
        if settings.tls_keyfile:
            options["ssl_keyfile"] = settings.tls_keyfile
    return options


MIN_TIMEOUT_S = 0.001
"""A clipped timeout never reaches 0, which a socket would read as non-blocking."""


def _clip(value: float | None) -> float | None:
    end = current_deadline()
    if end is None:
        return value
    left = max(end - time.monotonic(), MIN_TIMEOUT_S)
    return left if value is None else min(value, left)


class _Clipped:
    """Mixin for redis-py's sync connections: both timeouts shrink to what is left of the
    current deadline, and each command re-arms the socket's timeout before it is sent,
    so the reads that follow (the reply, a reconnect's handshake) are clipped too."""

    _socket_timeout: float | None
    _socket_connect_timeout: float | None
    _sock: Any
    _command_packer: Any

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._command_packer = faster(self._command_packer)

    @property
    def socket_timeout(self) -> float | None:
        return _clip(self._socket_timeout)

    @socket_timeout.setter
    def socket_timeout(self, value: float | None) -> None:
        self._socket_timeout = value

    @property
    def socket_connect_timeout(self) -> float | None:
        return _clip(self._socket_connect_timeout)

    @socket_connect_timeout.setter
    def socket_connect_timeout(self, value: float | None) -> None:
        self._socket_connect_timeout = value

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        sock = self._sock
        if sock is not None:
            # settimeout is a system call even when the value is unchanged, which it is
            # for every command while the deadline is further off than socket_timeout.
            now, clipped = sock.gettimeout(), self.socket_timeout
            if now not in (0, clipped):
                sock.settimeout(clipped)
        super().send_packed_command(command, check_health)  # type: ignore[misc]


class ClippedConnection(_Clipped, redis.Connection):
    pass


class ClippedSSLConnection(_Clipped, redis.SSLConnection):
    pass


class ClippedUnixConnection(_Clipped, redis.UnixDomainSocketConnection):
    pass


CLIPPED: dict[type[Any], type[Any]] = {
    redis.Connection: ClippedConnection,
    redis.SSLConnection: ClippedSSLConnection,
    redis.UnixDomainSocketConnection: ClippedUnixConnection,
}


def sync_client(settings: Settings) -> redis.Redis:
    """A blocking client without driver retries, whose timeouts honour deadlines.

    In cluster mode (``settings.cluster``) a :class:`redis.cluster.RedisCluster` built
    from any node's URL: it serves the same command methods, routes each key to its
    slot's primary, and runs the node-wide commands (FUNCTION LOAD, SCAN) on every
    primary. It is typed as ``redis.Redis`` so every caller keeps one type."""
    if settings.cluster:
        return cast(redis.Redis, _sync_cluster(settings))
    try:
        pool = redis.ConnectionPool.from_url(
            settings.redis_url, retry=redis.retry.Retry(NoBackoff(), 0), **client_options(settings)
        )
    except ValueError as e:
        # redis-py parses the URL here: a non-numeric port, an unknown query option.
        raise ConfigError(f"invalid memstream setting redis_url: {e}") from e
    pool.connection_class = CLIPPED.get(pool.connection_class, pool.connection_class)
    return redis.Redis(connection_pool=pool)


def async_client(settings: Settings) -> redis.asyncio.Redis:
    """An asyncio client without driver retries; deadlines are ``asyncio.timeout`` scopes.

    In cluster mode a :class:`redis.asyncio.cluster.RedisCluster` (see :func:`sync_client`)."""
    from redis.asyncio.retry import Retry

    if settings.cluster:
        return cast(redis.asyncio.Redis, _async_cluster(settings))
    try:
        return redis.asyncio.Redis.from_url(
            settings.redis_url, retry=Retry(NoBackoff(), 0), **client_options(settings)
        )
    except ValueError as e:
        raise ConfigError(f"invalid memstream setting redis_url: {e}") from e


CLUSTER_RETRIES = 3
"""Tries the cluster client itself makes after a connection error, each after refreshing
the slot map from the nodes still up: that is how an append finds the replica promoted
in place of a dead primary. The per-node connections keep redis-py's retries off, so
these do not nest; memstream's deadline still bounds the whole call."""


def is_cluster(client: Any) -> bool:
    """Whether ``client`` is a Redis Cluster client (sync or asyncio)."""
    import redis.asyncio.cluster
    import redis.cluster

    return isinstance(client, (redis.cluster.RedisCluster, redis.asyncio.cluster.RedisCluster))


def _cluster_options(settings: Settings) -> dict[str, Any]:
    options = client_options(settings)
    # health checks would PING each node's idle connections on a timer of their own
    options.pop("health_check_interval")
    return options


def _sync_cluster(settings: Settings) -> Any:
    from redis.backoff import ExponentialBackoff
    from redis.cluster import RedisCluster

    options = _cluster_options(settings)
    scheme_tls = settings.tls
    try:
        client = RedisCluster.from_url(
            settings.node_url,
            retry=redis.retry.Retry(ExponentialBackoff(cap=0.5, base=0.05), CLUSTER_RETRIES),
            **options,
        )
    except ValueError as e:
        raise ConfigError(f"invalid memstream setting redis_url: {e}") from e
    except redis.RedisError as e:
        from .driver import translate_driver_error

        raise translate_driver_error(e, settings) from e
    clipped = CLIPPED[redis.SSLConnection if scheme_tls else redis.Connection]
    for node in client.get_nodes():  # type: ignore[no-untyped-call]
        _clip_node(node, clipped)
    client.nodes_manager.connection_kwargs["connection_class"] = clipped
    client.nodes_manager.connection_kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)
    return client


def _clip_node(node: Any, clipped: type[Any]) -> None:
    conn = getattr(node, "redis_connection", None)
    if conn is not None:
        pool = conn.connection_pool
        pool.connection_class = clipped
        pool.connection_kwargs["retry"] = redis.retry.Retry(NoBackoff(), 0)


def _async_cluster(settings: Settings) -> Any:
    from redis.asyncio.cluster import RedisCluster
    from redis.asyncio.retry import Retry
    from redis.backoff import ExponentialBackoff

    try:
        return RedisCluster.from_url(
            settings.node_url,
            retry=Retry(ExponentialBackoff(cap=0.5, base=0.05), CLUSTER_RETRIES),
            **_cluster_options(settings),
        )
    except ValueError as e:
        raise ConfigError(f"invalid memstream setting redis_url: {e}") from e


def subscriber_client(settings: Settings) -> redis.asyncio.Redis:
    """An asyncio client for sharded pub/sub: no retries at all, so a lost subscription
    is seen (and its missed messages accounted for) instead of silently resubscribed.
    On a Cluster its ``pubsub()`` sends each SSUBSCRIBE to the shard owning the channel."""
    from redis.asyncio.retry import Retry

    if settings.cluster:
        from redis.asyncio.cluster import RedisCluster

        try:
            return cast(
                redis.asyncio.Redis,
                RedisCluster.from_url(
                    settings.node_url, retry=Retry(NoBackoff(), 0), **_cluster_options(settings)
                ),
            )
        except ValueError as e:
            raise ConfigError(f"invalid memstream setting redis_url: {e}") from e
    return redis.asyncio.Redis.from_url(
        settings.redis_url, retry=Retry(NoBackoff(), 0), **client_options(settings)
    )


async def open_pubsub(client: redis.asyncio.Redis) -> Any:
    """``client.pubsub()``, after a Cluster client has learnt the slot map: its pub/sub
    routes each SSUBSCRIBE by the channel's slot, and a client that has sent nothing yet
    knows no slot."""
    if is_cluster(client):
        await client.initialize()
    return client.pubsub()


async def next_message(pubsub: Any, timeout: float) -> dict[str, Any] | None:
    """The next pub/sub message or None after ``timeout`` s. A Cluster's pub/sub keeps one
    connection per shard and reads sharded messages with ``get_sharded_message``."""
    sharded = getattr(pubsub, "get_sharded_message", None)
    if sharded is not None:
        message: Any = await sharded(timeout=timeout)
    else:
        message = await pubsub.get_message(timeout=timeout)
    return cast("dict[str, Any] | None", message)
