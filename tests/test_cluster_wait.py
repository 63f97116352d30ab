"""``Settings.wait_replicas``: an append returns only once a replica has it (``WAIT`` on
the connection that wrote), on one node with a replica and on a Cluster; sync and async.

A frozen replica (SIGSTOP) acknowledges nothing, so an append must raise
:class:`NotReplicatedError`: a ``WAIT`` sent on any other connection than the writing one
would return at once with the replica counted (that connection wrote nothing), so these
tests fail if the ``WAIT`` is not where the write was.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import AsyncProducer, Producer, keys
from memstream.producers.errors import NotReplicatedError
from memstream.producers.events import StateSaved
from memstream.workers.deploy import init
from tests.redis_cluster import RedisClusterNodes
from tests.redis_server import RedisServer

WAITED = {"wait_replicas": 1, "wait_timeout_ms": 200, "append_deadline_s": 1.0}


@pytest.fixture
def primary_and_replica(tmp_path: Path) -> Iterator[tuple[RedisServer, RedisServer]]:
    primary = RedisServer(tmp_path / "primary", "--repl-diskless-sync-delay", "0")
    replica = RedisServer(tmp_path / "replica", "--replicaof", "127.0.0.1", "0")
    with redis.Redis(port=replica.port) as c:
        c.replicaof("127.0.0.1", primary.port)
    with redis.Redis(port=primary.port) as c:
        init(c, partitions=4)
        c.wait(1, 5000)  # the replica has synced
    yield primary, replica
    replica.stop()
    primary.stop()


def _log_len(port: int, owner: str) -> int:
    with redis.Redis(port=port) as c:
        return int(c.xlen(keys.log(keys.partition(owner, 4), owner)))


def test_sync_append_waits_for_the_replica(
    primary_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = primary_and_replica
    with Producer.from_url(primary.url, **WAITED) as producer:
        receipt = producer.save_state("ada", {"v": 1})
        many = producer.append_many([("bob", e) for e in _states(3)])
    assert len(many) == 3
    with redis.Redis(port=replica.port) as c:  # acknowledged: the replica has it
        assert c.xrange(keys.log(receipt.partition, "ada"), receipt.log_id, receipt.log_id)
    replica.freeze()
    try:
        with Producer.from_url(primary.url, **WAITED) as producer:
            with pytest.raises(NotReplicatedError, match="0 of 1 replicas"):
                producer.append("ada", StateSaved(state={"v": 2}), eid="second")
            with pytest.raises(NotReplicatedError):
                producer.append_many([("bob", e) for e in _states(2)])
        # A new producer (new connections) retries the stored append: the eid makes it
        # write nothing, and the touch makes its WAIT count the earlier write.
        again = Producer.from_url(primary.url, **WAITED)
        with again, pytest.raises(NotReplicatedError):
            again.append("ada", StateSaved(state={"v": 2}), eid="second")
    finally:
        replica.thaw()
    with Producer.from_url(primary.url, **WAITED) as again:
        again.append("ada", StateSaved(state={"v": 2}), eid="second")
    assert _log_len(primary.port, "ada") == 2  # stored once, for all the tries
    with Producer.from_url(primary.url) as plain:  # the default waits for nobody
        replica.freeze()
        try:
            plain.save_state("ada", {"v": 3})
        finally:
            replica.thaw()


async def test_async_append_waits_for_the_replica(
    primary_and_replica: tuple[RedisServer, RedisServer],
) -> None:
    primary, replica = primary_and_replica
    async with AsyncProducer.from_url(primary.url, **WAITED) as producer:
        await producer.save_state("ada", {"v": 1})
        assert len(await producer.append_many([("bob", e) for e in _states(3)])) == 3
        replica.freeze()
        try:
            with pytest.raises(NotReplicatedError):
                await producer.save_state("ada", {"v": 2})
            with pytest.raises(NotReplicatedError):
                await producer.append_many([("bob", e) for e in _states(2)])
        finally:
            replica.thaw()
        await producer.save_state("ada", {"v": 3})


def _states(n: int) -> list[StateSaved]:
    return [StateSaved(state={"n": i}) for i in range(n)]


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    cluster = RedisClusterNodes(tmp_path, replicas=1)
    yield cluster
    cluster.stop()


def _replica_of(cluster: RedisClusterNodes, primary_port: int) -> RedisServer:
    for node in cluster.nodes:
        with redis.Redis(port=node.port) as c:
            repl = c.info("replication")
            if repl["role"] == "slave" and int(repl["master_port"]) == primary_port:
                return node
    raise RuntimeError(f"no replica of {primary_port}")


async def test_on_a_cluster_each_append_waits_for_its_shards_replica(
    replicated: RedisClusterNodes,
) -> None:
    url = replicated.url
    with Producer.from_url(url) as admin:
        init(admin.client, partitions=16)
        node = admin.client.get_node_from_key(keys.log(keys.partition("ada", 16), "ada"))  # type: ignore[attr-defined]
    others = [o for o in (f"agent{i}" for i in range(40))
              if admin_node(url, o) != node.port][:3]  # fmt: skip
    frozen = _replica_of(replicated, node.port)
    with Producer.from_url(url, **WAITED) as producer:
        async with AsyncProducer.from_url(url, **WAITED) as aproducer:
            producer.save_state("ada", {"v": 1})
            await aproducer.save_state("ada", {"v": 2})
            frozen.freeze()
            try:
                for o in others:  # other shards' replicas still answer
                    producer.save_state(o, {"v": 1})
                    await aproducer.save_state(o, {"v": 2})
                with pytest.raises(NotReplicatedError):
                    producer.save_state("ada", {"v": 3})
                with pytest.raises(NotReplicatedError):
                    await aproducer.save_state("ada", {"v": 3})
                with pytest.raises(NotReplicatedError):  # a batch over every shard
                    producer.append_many([(o, e) for o in ["ada", *others] for e in _states(1)])
            finally:
                frozen.thaw()
            await aproducer.append_many([(o, e) for o in ["ada", *others] for e in _states(2)])
            # A slot move under waited appends: ASK while its keys are on the target but the
            # slot not yet handed over, then MOVED to producers whose slot map is stale.
            slot = int(producer.client.keyslot(keys.log(keys.partition("ada", 16), "ada")))  # type: ignore[attr-defined]
            target = next(n.port for n in replicated.primaries() if n.port != node.port)
            ports = replicated.begin_move(slot, target)
            with redis.Redis(port=node.port) as src:
                every = src.execute_command("CLUSTER GETKEYSINSLOT", slot, 1000)
            replicated.migrate_keys(ports, *every)
            asked = [
                producer.save_state("ada", {"v": 4}),
                await aproducer.save_state("ada", {"v": 5}),
            ]
            with redis.Redis(port=target) as dst:  # they went there after an ASK
                stats: Any = dst.info("commandstats")
                assert int(stats["cmdstat_asking"]["calls"]) >= 2
            replicated.finish_move(slot, ports)
            moved = [
                producer.save_state("ada", {"v": 6}),
                await aproducer.save_state("ada", {"v": 7}),
            ]
    with redis.Redis(port=target) as dst:
        log = [
            entry_id.decode()
            for entry_id, _ in dst.xrange(keys.log(keys.partition("ada", 16), "ada"))
        ]
    assert [r.log_id for r in asked + moved] == log[-4:]


def admin_node(url: str, owner: str) -> int:
    with Producer.from_url(url) as p:
        node = p.client.get_node_from_key(keys.log(keys.partition(owner, 16), owner))  # type: ignore[attr-defined]
        return int(node.port)
