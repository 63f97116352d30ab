"""Cluster mode itself: how it is chosen, ``init`` on every primary, and a recorded run
in which no command names keys of two slots."""

from __future__ import annotations

import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, cast

import pytest
import redis
from redis.cluster import RedisCluster

from memstream.producers import Producer, Settings, keys
from memstream.producers.connection import is_cluster, sync_client
from memstream.projections.reader import AsyncReader
from memstream.workers.cli import main
from memstream.workers.deploy import init
from tests.redis_cluster import RedisClusterNodes
from tests.workers_util import running_worker

_ARG = re.compile(rb'"((?:[^"\\]|\\.)*)"')
_ESCAPE = re.compile(rb"\\(x[0-9a-fA-F]{2}|.)")
_NAMED = {b"n": b"\n", b"r": b"\r", b"t": b"\t", b"a": b"\a", b"b": b"\b"}


def _unescape(raw: bytes) -> bytes:
    def one(m: re.Match[bytes]) -> bytes:
        code = m.group(1)
        if code.startswith(b"x") and len(code) == 3:
            return bytes([int(code[1:], 16)])
        return _NAMED.get(code, code)

    return _ESCAPE.sub(one, raw)


class Recorder:
    """MONITOR on every primary: each command the cluster ran, as its argument list."""

    def __init__(self, cluster: RedisClusterNodes) -> None:
        self.commands: list[list[bytes]] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._watch, args=(n.port,), daemon=True)
            for n in cluster.primaries()
        ]
        self._ready = threading.Barrier(len(self._threads) + 1)

    def _watch(self, port: int) -> None:
        client = redis.Redis(port=port, socket_timeout=0.2)
        conn = client.connection_pool.get_connection()
        conn.send_command("MONITOR")  # type: ignore[no-untyped-call]
        conn.read_response()
        self._ready.wait()
        while not self._stop.is_set():
            try:
                # Keep the connection through an idle read: by default redis-py drops it
                # on a timeout, and the next read would fail with "connection closed".
                line: Any = conn.read_response(disconnect_on_error=False)
            except redis.TimeoutError:
                continue
            raw = line if isinstance(line, bytes) else str(line).encode()
            self.commands.append([_unescape(a) for a in _ARG.findall(raw)])
        conn.disconnect()  # type: ignore[no-untyped-call]

    def __enter__(self) -> Recorder:
        for t in self._threads:
            t.start()
        self._ready.wait()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(5)


def _slots_of(probe: redis.Redis, command: list[bytes]) -> set[int]:
    """The slots of ``command``'s keys, as Redis itself finds them (COMMAND GETKEYS)."""
    try:
        found: Any = probe.command_getkeys(*command)
    except redis.ResponseError:
        return set()  # no key arguments (PING, CLIENT, FUNCTION LOAD, ...)
    return {int(probe.execute_command("CLUSTER", "KEYSLOT", k)) for k in found}  # type: ignore[no-untyped-call]


def _crossslot_errors(cluster: RedisClusterNodes) -> int:
    total = 0
    for node in cluster.primaries():
        with redis.Redis(port=node.port) as c:
            stats: Any = c.info("errorstats")
            total += int(stats.get("errorstat_CROSSSLOT", {}).get("count", 0))
    return total


@contextmanager
def _no_error_counts(cluster: RedisClusterNodes) -> Iterator[None]:
    for node in cluster.primaries():
        with redis.Redis(port=node.port) as c:
            c.config_resetstat()
    yield


def test_the_url_scheme_or_the_setting_selects_cluster_mode() -> None:
    assert Settings.from_url("redis+cluster://10.0.0.1:7000/0").cluster
    assert Settings.from_url("rediss+cluster://10.0.0.1:7000/0").tls
    env = {"MEMSTREAM_REDIS_URL": "redis://h:1/0", "MEMSTREAM_CLUSTER": "1"}
    assert Settings.from_env(env).cluster
    assert not Settings.from_url("redis://h:1/0").cluster
    assert Settings.from_url("redis+cluster://u:pw@h:1/0").node_url == "redis://u@h:1/0"


def test_init_loads_every_primary_writes_conf_in_each_slot_and_is_idempotent(
    redis_cluster: RedisClusterNodes,
) -> None:
    redis_cluster.flush()
    client = sync_client(Settings.from_url(redis_cluster.url))
    assert is_cluster(client)
    first = init(client, partitions=16)
    again = init(client, partitions=16)
    assert first == again
    libraries = set()
    for node in redis_cluster.primaries():
        with redis.Redis(port=node.port) as c:
            listed: Any = c.function_list()
            names = {dict(zip(lib[::2], lib[1::2], strict=True))[b"library_name"] for lib in listed}
            libraries.add(frozenset(names))
            assert b"memstream" in names or any(n.startswith(b"memstream") for n in names)
    assert len(libraries) == 1, "every primary holds the same libraries"
    owners: dict[str, int] = {}
    for p in range(16):
        node = cast(RedisCluster, client).get_node_from_key(keys.conf(p))  # type: ignore[no-untyped-call]
        with redis.Redis(host=node.host, port=node.port) as c:
            assert c.hget(keys.conf(p), "partitions") == b"16"  # served here, no MOVED
        owners[node.name] = owners.get(node.name, 0) + 1
    assert len(owners) == 3, "the 16 partitions spread over the three primaries"
    client.close()


def test_cli_on_a_cluster_init_status_stats(
    redis_cluster: RedisClusterNodes, capsys: pytest.CaptureFixture[str]
) -> None:
    redis_cluster.flush()
    url = redis_cluster.url
    assert main(["init", "--redis-url", url]) == 0
    assert main(["init", "--redis-url", url]) == 0
    with Producer.from_url(url) as producer:
        for i in range(20):
            producer.save_state(f"owner{i}", {"v": i})
    assert main(["status", "--redis-url", url]) == 6  # every feed read; no live worker yet
    assert main(["stats", "owner3", "--redis-url", url]) == 0
    out = capsys.readouterr().out
    assert "Traceback" not in out


def test_redis_cli_reads_a_log_through_any_node(redis_cluster: RedisClusterNodes) -> None:
    redis_cluster.flush()
    with Producer.from_url(redis_cluster.url) as producer:
        init(producer.client, partitions=16)
        producer.save_state("ada", {"v": 1})
    cli = shutil.which("redis-cli")
    assert cli is not None
    p = keys.partition("ada", 16)
    for node in redis_cluster.primaries():  # -c follows MOVED from whichever node
        out = subprocess.run(
            [cli, "-c", "-p", str(node.port), "XLEN", keys.log(p, "ada")],
            capture_output=True, text=True, check=True, timeout=10,
        ).stdout  # fmt: skip
        assert out.strip() == "1"


async def test_no_command_names_keys_of_two_slots(redis_cluster: RedisClusterNodes) -> None:
    """Appends, a worker, reads, the read cache, subscriptions, forget and status, while
    MONITOR records every command on every primary."""
    redis_cluster.flush()
    url = redis_cluster.url
    owners = [f"agent{i}" for i in range(12)]
    with _no_error_counts(redis_cluster), Recorder(redis_cluster) as rec:
        assert main(["init", "--redis-url", url]) == 0
        with Producer.from_url(url) as producer:
            async with running_worker(url), AsyncReader.from_url(url, cache=True) as reader:
                lasts = []
                for o in owners:
                    producer.start_session(o, "s1")
                    producer.append_message(o, "s1", "user", f"hello from {o}")
                    lasts.append(producer.save_state(o, {"o": o}))
                # Owners sit in different partitions (slots): each is applied on its own.
                for last in lasts:
                    assert (await reader.wait(last, timeout=20)).applied
                for o in owners:
                    assert await reader.state(o) == {"o": o}
                    assert [m["content"] for m in await reader.history(o, "s1")] == [
                        f"hello from {o}"
                    ]
        assert main(["forget", owners[0], "--yes", "--redis-url", url]) == 0
        assert main(["stats", owners[1], "--redis-url", url]) == 0
        assert main(["status", "--redis-url", url]) == 6  # the worker has stopped
    assert len(rec.commands) > 100, "the recorder saw the run"
    probe = RedisCluster.from_url(url.replace("+cluster", ""))
    node = probe.get_random_node().redis_connection  # type: ignore[no-untyped-call]
    assert node is not None
    assert len(_slots_of(node, [b"MGET", b"{1}a", b"{2}b"])) == 2, "the check can fail"
    assert any(len(_slots_of(node, c)) == 1 for c in rec.commands if c[:1] == [b"FCALL"])
    multi = [c for c in rec.commands if c and len(_slots_of(node, c)) > 1]
    probe.close()
    assert multi == []
    assert _crossslot_errors(redis_cluster) == 0


async def test_a_write_on_a_torn_asyncio_connection_counts_as_a_lost_connection() -> None:
    """What redis-py's asyncio cluster leaks when its soft reset (``aclose()``) tears a
    connection another task is writing to: the write meets ``_writer`` None."""
    from redis.asyncio.connection import Connection

    from memstream.producers.driver import is_torn_connection, is_transient

    torn = Connection()  # never connected: its writer is None, as after a disconnect
    with pytest.raises(AttributeError) as caught:
        await torn._send_packed_command([b"PING\r\n"])
    assert "writelines" in str(caught.value)
    assert is_torn_connection(caught.value) and is_transient(caught.value)
    writer: Any = None
    with pytest.raises(AttributeError) as ours:  # our own bug: not a lost connection
        writer.writelines([b"PING\r\n"])
    assert not is_torn_connection(ours.value) and not is_transient(ours.value)
