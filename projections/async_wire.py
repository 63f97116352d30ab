"""One exchange (a few commands out, their replies in) on an asyncio redis-py connection,
under one timer.

redis-py's asyncio connection bounds every socket operation by ``socket_timeout`` on its
own: ``send_packed_command`` runs the write in ``asyncio.wait_for`` (a task per command on
Python 3.11) and ``read_response`` enters an ``asyncio.timeout`` per reply. For
``history()``'s window and life record that was three timers, about 35 µs of a 0.3 ms
read on the shared machine (docs/benchmarks.md), and its pure-Python packer 8 µs more.
:func:`exchange` packs with hiredis (:func:`memstream.producers.packer.pack_many`),
writes, and reads every reply under one ``socket_timeout`` timer: a write of a few
commands never waits (it is below the transport's high-water mark), so the timer bounds
the wait for the replies as the per-reply timers did. A timeout or socket error is raised
as redis-py raises it (``TimeoutError``, ``ConnectionError``); the caller disconnects.

It serves only a connection that is connected and commands sent without parser options
(:func:`serves`); anything else keeps redis-py's own path.
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Sequence
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import ResponseError
from redis.exceptions import TimeoutError as RedisTimeoutError

from memstream.producers.packer import pack_many


def serves(conn: Any, options: Sequence[dict[str, Any]]) -> bool:
    """Whether :func:`exchange` can run on ``conn`` for commands sent with ``options``:
    a connected redis-py asyncio connection (the first command of a new one goes through
    redis-py, which connects it), and no parser options (``NEVER_DECODE`` and the like
    change how redis-py reads a reply)."""
    return getattr(conn, "_writer", None) is not None and not any(options)


async def exchange(client: Any, conn: Any, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """The replies of ``commands`` sent on ``conn`` (``client``'s: its reply callbacks
    apply), in one write, an error reply in its place as a ResponseError."""
    loop = asyncio.get_running_loop()
    interval = conn.health_check_interval
    if interval and loop.time() > conn.next_health_check:
        await conn.check_health()  # an idle connection is PINGed first, as redis-py does
    packed = pack_many(commands, conn.pack_command)
    parser = conn._parser
    callbacks = client.response_callbacks
    replies: list[Any] = []
    try:
        async with asyncio.timeout(conn.socket_timeout):
            writer = conn._writer
            writer.write(packed)
            await writer.drain()
            for command in commands:
                reply = await parser.read_response()
                if not isinstance(reply, ResponseError):
                    callback = callbacks.get(command[0])
                    if callback is not None:
                        reply = callback(reply)
                        if inspect.isawaitable(reply):
                            reply = await reply
                replies.append(reply)
    except TimeoutError:
        raise RedisTimeoutError(f"Timeout reading from {conn._host_error()}") from None
    except OSError as e:
        raise RedisConnectionError(f"Error while reading from {conn._host_error()}: {e}") from e
    if interval:
        conn.next_health_check = loop.time() + interval
    return replies
