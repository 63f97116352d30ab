"""The sync client's socket timeout follows the deadline in force, command by command:
clipped while a short deadline runs, back to ``socket_timeout`` after it."""

from __future__ import annotations

from typing import Any

import redis

from memstream.producers.connection import sync_client
from memstream.producers.deadline import deadline_scope
from memstream.producers.settings import Settings


def _timeout(client: redis.Redis) -> Any:
    conn: Any = client.connection_pool.get_connection()
    try:
        return conn._sock.gettimeout()
    finally:
        client.connection_pool.release(conn)


def test_socket_timeout_is_clipped_then_restored(redis_url: str) -> None:
    client = sync_client(Settings.from_url(redis_url, socket_timeout=2.5))
    client.ping()
    assert _timeout(client) == 2.5
    with deadline_scope(0.4):
        client.ping()
        clipped = _timeout(client)
        assert 0 < clipped <= 0.4
        client.ping()  # a second command re-arms it with what is left, not the first value
        assert _timeout(client) <= clipped
    client.ping()
    assert _timeout(client) == 2.5
    client.close()
