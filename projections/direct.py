"""One command (or a few) on a connection the blocking reader keeps: how most reads reach
Redis.

redis-py's ``execute_command`` takes a pooled connection and gives it back for every
command: a lock each way, an idle-socket poll (``can_read``), event dispatch and
observability records. For a one-command read of 20 history messages that was about a
third of the round trip (docs/benchmarks.md). :class:`Direct` keeps the last connection
it used and sends the next command on it: it sends and parses exactly as
``execute_command`` does (``send_command`` then the client's ``parse_response``, so reply
callbacks, health checks and the deadline's clipped timeouts still apply), and a
connection that fails in any way is disconnected and given back to the pool, never kept.
A plan of a few commands (``history()``'s window and its session's life record) is sent
the same way, in one write (``execute_many``): a redis-py pipeline costs about as much
again as the read.

It only serves a plain :class:`redis.Redis` on a connection pool; a Cluster client keeps
``execute_command`` (its routing and redirects live there). :class:`AsyncDirect` is its
asyncio twin, for ``AsyncReader``: on a connected connection it sends and reads through
:mod:`.async_wire` (one timer for the exchange instead of redis-py's one per operation).
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import redis
import redis.asyncio
from redis.exceptions import ResponseError

from . import async_wire

DIRECT_MANY = 4
"""Commands a plan may have to go through ``execute_many`` rather than a pipeline: the
few of a hot read; a larger plan (search's windows) keeps the pipeline's batching."""

MAX_KEPT = 1
"""Connections kept out of the pool at most: one serves a reader used from one thread
(the common case) without holding back more of the pool from its other users."""


class Direct:
    """Sends single commands for ``client``'s pool on a kept connection."""

    def __init__(self, client: redis.Redis) -> None:
        self.client = client
        self.pool: Any = client.connection_pool
        self._kept: list[Any] = []
        self._pid = os.getpid()

    @staticmethod
    def serves(client: Any) -> bool:
        """Whether ``client`` is a plain pooled client (not a Cluster, nor a client bound
        to one connection, nor a pool of one connection) that :class:`Direct` can serve."""
        pool = getattr(client, "connection_pool", None)
        return (
            isinstance(client, redis.Redis)
            and getattr(client, "connection", None) is None
            and isinstance(pool, redis.ConnectionPool)
            # A pool of one: the kept connection would be the pool's only one.
            and pool.max_connections > MAX_KEPT
        )

    def execute(self, *args: Any, **options: Any) -> Any:
        """The parsed reply of the command ``args`` (``options`` go to the reply parser,
        as they go to ``execute_command``'s). An error reply raises its ResponseError and
        leaves the connection in use; any other failure disconnects it."""
        if self._pid != os.getpid():
            self._kept, self._pid = [], os.getpid()  # a fork: the parent's sockets are not ours
        kept = self._kept
        try:
            conn = kept.pop()  # atomic: threads never share a connection
        except IndexError:
            conn = self.pool.get_connection()
        try:
            conn.send_command(*args)
            reply = self.client.parse_response(conn, args[0], **options)  # type: ignore[no-untyped-call]
        except ResponseError:
            self._keep(conn)  # the error reply was read whole: the connection is in step
            raise
        except BaseException:
            conn.disconnect()
            self.pool.release(conn)
            raise
        self._keep(conn)
        return reply

    def execute_many(
        self, commands: Sequence[tuple[Any, ...]], options: Sequence[Any]
    ) -> list[Any]:
        """The parsed replies of ``commands`` (``options[i]`` for command ``i``), sent in
        one write on the kept connection: a small pipeline without the pipeline's
        machinery. An error reply is returned in its place, as a pipeline's
        ``raise_on_error=False`` does; any other failure disconnects the connection."""
        if self._pid != os.getpid():
            self._kept, self._pid = [], os.getpid()
        try:
            conn = self._kept.pop()
        except IndexError:
            conn = self.pool.get_connection()
        replies: list[Any] = []
        try:
            conn.send_packed_command(conn.pack_commands(commands))
            for command, opts in zip(commands, options, strict=True):
                try:
                    replies.append(self.client.parse_response(conn, command[0], **opts))  # type: ignore[no-untyped-call]
                except ResponseError as e:
                    replies.append(e)  # read whole: the next reply follows in step
        except BaseException:
            conn.disconnect()
            self.pool.release(conn)
            raise
        self._keep(conn)
        return replies

    def _keep(self, conn: Any) -> None:
        if len(self._kept) < MAX_KEPT:
            self._kept.append(conn)
        else:
            self.pool.release(conn)

    def give_back(self) -> None:
        """Return the kept connections to the pool (before closing it, or when the pool
        has none left for another caller)."""
        while self._kept:
            try:
                conn = self._kept.pop()
            except IndexError:
                return
            self.pool.release(conn)

    def close(self) -> None:
        """Disconnect the kept connections and give them back."""
        while self._kept:
            try:
                conn = self._kept.pop()
            except IndexError:
                return
            conn.disconnect()
            self.pool.release(conn)


class AsyncDirect:
    """:class:`Direct` for an asyncio ``client``: the same kept connection, for the tasks
    of one event loop. A task cancelled mid-read (the read deadline is an
    ``asyncio.timeout``) leaves its connection disconnected and given back."""

    def __init__(self, client: redis.asyncio.Redis) -> None:
        self.client = client
        self.pool: Any = client.connection_pool
        self._kept: list[Any] = []

    @staticmethod
    def serves(client: Any) -> bool:
        """:meth:`Direct.serves` for an asyncio client."""
        pool = getattr(client, "connection_pool", None)
        return (
            isinstance(client, redis.asyncio.Redis)
            and not client.single_connection_client
            and isinstance(pool, redis.asyncio.ConnectionPool)
            and pool.max_connections > MAX_KEPT
        )

    async def execute(self, *args: Any, **options: Any) -> Any:
        """:meth:`Direct.execute`, awaited."""
        try:
            conn = self._kept.pop()
        except IndexError:
            conn = await self.pool.get_connection()
        try:
            if async_wire.serves(conn, (options,)):
                (reply,) = await async_wire.exchange(self.client, conn, (args,))
                if isinstance(reply, ResponseError):
                    raise reply
            else:
                await conn.send_command(*args)
                reply = await self.client.parse_response(conn, args[0], **options)
        except ResponseError:
            await self._keep(conn)
            raise
        except BaseException:
            await conn.disconnect(nowait=True)
            await self.pool.release(conn)
            raise
        await self._keep(conn)
        return reply

    async def execute_many(
        self, commands: Sequence[tuple[Any, ...]], options: Sequence[Any]
    ) -> list[Any]:
        """:meth:`Direct.execute_many`, awaited."""
        try:
            conn = self._kept.pop()
        except IndexError:
            conn = await self.pool.get_connection()
        replies: list[Any] = []
        try:
            if async_wire.serves(conn, options):
                replies = await async_wire.exchange(self.client, conn, commands)
            else:
                await conn.send_packed_command(conn.pack_commands(commands))
                for command, opts in zip(commands, options, strict=True):
                    try:
                        replies.append(await self.client.parse_response(conn, command[0], **opts))
                    except ResponseError as e:
                        replies.append(e)
        except BaseException:
            await conn.disconnect(nowait=True)
            await self.pool.release(conn)
            raise
        await self._keep(conn)
        return replies

    async def _keep(self, conn: Any) -> None:
        if len(self._kept) < MAX_KEPT:
            self._kept.append(conn)
        else:
            await self.pool.release(conn)

    async def give_back(self) -> None:
        """:meth:`Direct.give_back`, awaited."""
        while self._kept:
            await self.pool.release(self._kept.pop())

    async def aclose(self) -> None:
        """Disconnect the kept connections and give them back."""
        while self._kept:
            conn = self._kept.pop()
            await conn.disconnect()
            await self.pool.release(conn)
