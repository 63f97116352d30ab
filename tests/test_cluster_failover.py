"""Failover on a real Cluster: SIGKILL a primary under load; the producer carries on once
its replica is promoted, and we count acknowledged appends that did not survive."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from memstream.producers import MemstreamError, Producer, Receipt, keys
from memstream.projections.reader import AsyncReader
from memstream.workers.deploy import init
from tests.redis_cluster import RedisClusterNodes
from tests.workers_util import running_worker


@pytest.fixture
def replicated(tmp_path: Path) -> Iterator[RedisClusterNodes]:
    """Three primaries with one replica each (a cluster of its own: the test kills one)."""
    cluster = RedisClusterNodes(tmp_path, replicas=1)
    yield cluster
    cluster.stop()


def _load(
    url: str, stop: threading.Event, acked: list[Receipt], failed: list[str], last: dict[str, int]
) -> None:
    with Producer.from_url(url) as producer:
        i = 0
        while not stop.is_set():
            owner = f"agent{i % 24}"
            try:
                acked.append(producer.save_state(owner, {"i": i}))
                last[owner] = i
            except MemstreamError as e:
                failed.append(type(e).__name__)
            i += 1


def _promoted(cluster: RedisClusterNodes, dead_port: int) -> bool:
    return len(cluster.primaries()) == 3 and all(n.port != dead_port for n in cluster.primaries())


async def test_producer_and_worker_recover_after_a_primary_is_killed(
    replicated: RedisClusterNodes,
) -> None:
    url = replicated.url
    with Producer.from_url(url) as admin:
        init(admin.client, partitions=16)
    victim = replicated.primaries()[1]  # not the node the URL names
    stop = threading.Event()
    acked: list[Receipt] = []
    failed: list[str] = []
    last: dict[str, int] = {}
    load = threading.Thread(target=_load, args=(url, stop, acked, failed, last), daemon=True)
    async with running_worker(url), AsyncReader.from_url(url) as reader:
        load.start()
        await asyncio.sleep(0.5)
        before_kill = len(acked)
        victim.kill()
        deadline = time.monotonic() + 20
        while not _promoted(replicated, victim.port):
            assert time.monotonic() < deadline, "no replica was promoted"
            await asyncio.sleep(0.1)
        at_promotion = len(acked)
        await asyncio.sleep(1.5)  # the producer keeps appending on the new primary
        stop.set()
        await asyncio.to_thread(load.join, 30)
        # The worker serves every partition again: each owner's state is its last append.
        final = {r.owner: r for r in acked}
        for owner, receipt in final.items():
            assert (await reader.wait(receipt, timeout=30)).applied
            assert await reader.state(owner) == {"i": last[owner]}
    assert before_kill > 0
    assert len(acked) > at_promotion, "appends succeed again after the promotion"
    client = replicated.client()
    lost = 0
    for receipt in acked:
        found = client.xrange(
            keys.log(receipt.partition, receipt.owner), receipt.log_id, receipt.log_id
        )
        lost += not found
    client.close()
    print(f"acknowledged {len(acked)}, lost {lost}, failed during failover {len(failed)}")
    # Replication is asynchronous: an append acknowledged by the killed primary in the
    # last moments before the kill may be missing (the figure goes to operations.md).
    assert lost <= len(acked) // 10
