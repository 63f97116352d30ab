"""Appends that wait for replicas (``Settings.wait_replicas``): the append, then ``WAIT
numreplicas timeout``, on one connection of the primary that owns the append's slot.

``WAIT`` counts only the writes made on its own connection, so it must follow the
``FCALL`` on the same one. A single node's pipeline is one connection. On a Cluster
neither client's cluster pipeline can promise that: a keyless ``WAIT`` is routed apart
from the ``FCALL``, and a command redirected by ``MOVED``/``ASK`` is re-sent alone on
another connection, behind the pipeline's back. So here each node's share is sent on
that node's own connection (sync: the node's ``redis.Redis``; asyncio: the node's
``execute_pipeline``, one connection for the batch), and ``MOVED``/``ASK``/``TRYAGAIN``
are followed here, a hop at a time, every hop with its own ``WAIT``.

A retried append (the eid already stored by an earlier try, maybe on a connection that
then broke) writes nothing, and a ``WAIT`` on a connection that wrote nothing returns at
once. So once a try may have written, or when the caller chose the eid, the reply is
followed by a *touch*: ``SET <eid key> <its own value> XX KEEPTTL``, a write that changes
nothing but enters the replication stream after the stored event; ``WAIT`` after it
covers that event. The producer ACL already grants ``SET`` on eid keys; ``WAIT`` must be
added to it (docs/operations.md).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import redis
import redis.asyncio
from redis import exceptions as rx

from . import keys
from .connection import is_cluster
from .core import Planned, Prepared, command
from .deadline import current_deadline
from .driver import NotReplicated
from .many import Call, spread
from .settings import Settings

MAX_HOPS = 8
"""Redirections followed within one try (redis-py follows 16): a slot moves once."""


@dataclass
class WaitState:
    """Per append call, across its tries: whether an earlier write may be what the
    reply names (then a touch precedes the ``WAIT``)."""

    earlier: bool = False
    refresh: bool = False
    """A try failed: learn the slot map again before the next (a dead primary's
    replica may have been promoted), as the cluster client does on its own paths."""


@dataclass(frozen=True)
class Waited:
    """One command, a key naming its slot, and the touch to make from its reply."""

    key: str
    command: tuple[Any, ...]
    touch: Callable[[Any], tuple[Any, ...] | None]


def _touch(partition: int, owner: str, eid: str | None, ids: Any) -> tuple[Any, ...] | None:
    if eid is None or not isinstance(ids, list | tuple) or len(ids) != 2:
        return None
    log_id, feed_id = (i.decode() if isinstance(i, bytes) else str(i) for i in ids)
    value = f"{log_id} {feed_id}"
    return ("SET", keys.eid(partition, owner, eid), value, "XX", "KEEPTTL")


def for_append(plan: Planned) -> Waited:
    """The waited form of one ``ms_append``."""
    return Waited(
        keys.log(plan.partition, plan.owner),
        plan.command,
        lambda reply: _touch(plan.partition, plan.owner, plan.eid, reply),
    )


def for_call(call: Call, prepared: Sequence[Prepared]) -> Waited:
    """The waited form of one ``ms_append_many`` call: its touch rewrites the eid of the
    first event it stored (one write after all of them on that primary covers them)."""

    def touch(reply: Any) -> tuple[Any, ...] | None:
        for i, one in zip(call.indexes, spread(call, reply), strict=True):
            if not isinstance(one, redis.RedisError):
                p = prepared[i]
                return _touch(call.partition, p.owner, p.eid, one)
        return None

    return Waited(keys.feed(call.partition), call.command, touch)


def _wait_args(settings: Settings) -> tuple[Any, ...]:
    timeout_ms = settings.wait_timeout_ms
    end = current_deadline()
    if end is not None:  # WAIT must return before the socket's clipped timeout
        timeout_ms = max(1, min(timeout_ms, int((end - time.monotonic()) * 1000) - 50))
    return ("WAIT", settings.wait_replicas, timeout_ms)


REDIRECTS = (rx.AskError, rx.TryAgainError)  # MovedError is an AskError


class _Send:
    """One try of :func:`send` / :func:`asend`: the replies so far, and the items sent
    next with ``ASKING`` to the node named (a target client or node) in ``asked``."""

    def __init__(self, items: Sequence[Waited], settings: Settings, state: WaitState) -> None:
        self.items, self.settings, self.state = items, settings, state
        self.replies: list[Any] = [None] * len(items)
        self.todo = list(range(len(items)))
        self.asked: dict[int, Any] = {}
        self.timeout_ms = settings.wait_timeout_ms

    def commands(self, group: list[int]) -> list[tuple[Any, ...]]:
        """``group``'s commands, then ``WAIT`` unless touches will precede it."""
        out: list[tuple[Any, ...]] = []
        for i in group:
            if i in self.asked:
                out.append(("ASKING",))
            out.append(self.items[i].command)
        return out if self.state.earlier else [*out, self.wait]

    def took(self, group: list[int], out: list[Any]) -> list[tuple[Any, ...]] | None:
        """Record ``group``'s replies (``out``: those of :meth:`commands`); return the
        touches to send before a ``WAIT`` that counts, or None when ``out``'s own
        ``WAIT`` counts (checked here) or nothing was written."""
        at = 0
        for i in group:
            at += i in self.asked  # skip ASKING's +OK
            self.replies[i] = out[at]
            at += 1
            self.asked.pop(i, None)
        touches = [t for i in group if (t := self.items[i].touch(self.replies[i])) is not None]
        if self.state.earlier:
            return touches or None  # no touch: nothing of the group was stored
        if not all(isinstance(self.replies[i], REDIRECTS) for i in group):
            self.check(out[-1])
        return None

    def check(self, acked: Any) -> None:
        if isinstance(acked, Exception):
            raise acked
        if int(acked) < self.settings.wait_replicas:
            raise NotReplicated(int(acked), self.settings.wait_replicas, self.timeout_ms)

    @property
    def wait(self) -> tuple[Any, ...]:
        """``WAIT`` with what is left of the deadline (and kept for the message)."""
        args = _wait_args(self.settings)
        self.timeout_ms = int(args[2])
        return args

    def redirected(self) -> tuple[bool, list[tuple[int, Any]], bool]:
        """After a hop: whether to refresh the slot map, the ``(item, (host, port))`` to
        send next with ``ASKING``, and whether to pause (``TRYAGAIN``)."""
        self.todo = [i for i in self.todo if isinstance(self.replies[i], REDIRECTS)]
        moved = any(isinstance(self.replies[i], rx.MovedError) for i in self.todo)
        ask = [(i, (e.host, e.port)) for i in self.todo
               if type(e := self.replies[i]) is rx.AskError]  # fmt: skip
        pause = any(isinstance(self.replies[i], rx.TryAgainError) for i in self.todo)
        return moved, ask, pause


def _one(reply: Any) -> Any:
    if isinstance(reply, Exception):
        raise reply
    return reply


def rows(batch: Sequence[Any], partitions: int) -> list[Waited]:
    """The waited form of outbox rows (``owner``, ``eid``, ``args``) being flushed."""
    out = []
    for row in batch:
        p = keys.partition(row.owner, partitions)
        out.append(for_append(Planned(row.owner, p, command(row.owner, p, row.args), row.eid)))
    return out


# ---- blocking -----------------------------------------------------------------------


def send(
    client: redis.Redis, items: Sequence[Waited], settings: Settings, state: WaitState
) -> list[Any]:
    """Send ``items`` and wait for ``settings.wait_replicas`` replicas; the replies (a
    refusal as its ``ResponseError``) in order. Raises :class:`NotReplicated` when too
    few replicas acknowledged, and connection errors as they come."""
    run = _Send(items, settings, state)
    cluster: Any = client if is_cluster(client) else None
    try:
        if cluster is not None and state.refresh:
            cluster.nodes_manager.initialize()
            state.refresh = False
        for _ in range(MAX_HOPS):
            groups: dict[Any, list[int]] = {}
            for i in run.todo:
                target = run.asked.get(i) or (
                    _node_client(cluster, cluster.get_node_from_key(items[i].key))
                    if cluster else client
                )  # fmt: skip
                groups.setdefault(target, []).append(i)
            for target, group in groups.items():
                _round_sync(run, target, group)
            moved, ask, pause = run.redirected()
            if not run.todo:
                break
            for i, (host, port) in ask:
                node = cluster.get_node(host, port)
                if node is None:
                    moved = True
                else:
                    run.asked[i] = _node_client(cluster, node)
            if moved:
                cluster.nodes_manager.initialize()
            if pause:
                time.sleep(0.05)
        if run.todo:
            raise rx.TryAgainError(f"the slot kept moving over {MAX_HOPS} redirections")
        return run.replies
    except BaseException:
        state.earlier = state.refresh = True
        raise


def one(client: redis.Redis, plan: Planned, settings: Settings, state: WaitState) -> Any:
    """The reply of one ``ms_append``, sent and waited for; a refusal raises."""
    return _one(send(client, [for_append(plan)], settings, state)[0])


def calls(
    client: redis.Redis, trip: Sequence[Call], prepared: Sequence[Prepared],
    settings: Settings, state: WaitState,
) -> list[Any]:  # fmt: skip
    """The replies of one round trip of ``ms_append_many`` calls, waited for."""
    return send(client, [for_call(c, prepared) for c in trip], settings, state)


def _node_client(cluster: Any, node: Any) -> redis.Redis:
    conn: redis.Redis = node.redis_connection or cluster.get_redis_connection(node)
    return conn


def _pipe_sync(target: redis.Redis, commands: list[tuple[Any, ...]]) -> list[Any]:
    pipe = target.pipeline(transaction=False)
    for c in commands:
        pipe.execute_command(*c)  # type: ignore[no-untyped-call]
    out: list[Any] = pipe.execute(raise_on_error=False)
    return out


def _round_sync(run: _Send, target: redis.Redis, group: list[int]) -> None:
    touches = run.took(group, _pipe_sync(target, run.commands(group)))
    if touches is not None:
        run.check(_pipe_sync(target, [*touches, run.wait])[-1])


# ---- asyncio ------------------------------------------------------------------------


async def asend(
    client: redis.asyncio.Redis, items: Sequence[Waited], settings: Settings, state: WaitState
) -> list[Any]:
    """The asyncio twin of :func:`send`."""
    run = _Send(items, settings, state)
    cluster: Any = client if is_cluster(client) else None
    try:
        await _aslots(cluster, state)
        for _ in range(MAX_HOPS):
            groups: dict[Any, list[int]] = {}
            for i in run.todo:
                target = run.asked.get(i) or (
                    cluster.get_node_from_key(items[i].key) if cluster else client
                )
                groups.setdefault(target, []).append(i)
            for target, group in groups.items():
                await _round_async(run, target, cluster, group)
            moved, ask, pause = run.redirected()
            if not run.todo:
                break
            for i, (host, port) in ask:
                node = cluster.get_node(host=host, port=port)
                moved = moved or node is None
                if node is not None:
                    run.asked[i] = node
            if moved:
                await cluster.nodes_manager.initialize()
            if pause:
                await asyncio.sleep(0.05)
        if run.todo:
            raise rx.TryAgainError(f"the slot kept moving over {MAX_HOPS} redirections")
        return run.replies
    except BaseException:
        state.earlier = state.refresh = True
        raise


async def _aslots(cluster: Any, state: WaitState) -> None:
    """A cluster client that has sent nothing knows no slot; one whose last try failed
    learns the map again."""
    if cluster is not None:
        await cluster.initialize()
        if state.refresh:
            await cluster.nodes_manager.initialize()
            state.refresh = False


async def _round_async(run: _Send, target: Any, cluster: Any, group: list[int]) -> None:
    touches = run.took(group, await _pipe_async(target, cluster, run.commands(group)))
    if touches is not None:
        run.check((await _pipe_async(target, cluster, [*touches, run.wait]))[-1])


async def aone(
    client: redis.asyncio.Redis, plan: Planned, settings: Settings, state: WaitState
) -> Any:
    """The asyncio twin of :func:`one`."""
    return _one((await asend(client, [for_append(plan)], settings, state))[0])


async def acalls(
    client: redis.asyncio.Redis, trip: Sequence[Call], prepared: Sequence[Prepared],
    settings: Settings, state: WaitState,
) -> list[Any]:  # fmt: skip
    """The asyncio twin of :func:`calls`."""
    return await asend(client, [for_call(c, prepared) for c in trip], settings, state)


async def _pipe_async(target: Any, cluster: Any, commands: list[tuple[Any, ...]]) -> list[Any]:
    """``commands`` on one connection: a node's ``execute_pipeline`` on a Cluster (no
    rerouting, no redirection followed), a plain pipeline on one node."""
    if cluster is not None:
        from redis.asyncio.cluster import PipelineCommand

        stack = [PipelineCommand(n, *c) for n, c in enumerate(commands)]
        await target.execute_pipeline(stack)
        return [c.result for c in stack]
    pipe = target.pipeline(transaction=False)
    for c in commands:
        pipe.execute_command(*c)
    out: list[Any] = await pipe.execute(raise_on_error=False)
    return out
