"""The producer's durable outbox against real redis-server processes that go away.

Each test owns its server (with AOF on, so a restart keeps the data) because stopping the
suite's shared one would break the other tests.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import msgpack
import pytest
import redis

from memstream.producers import AsyncProducer, ConfigError, Producer, Receipt, keys
from memstream.producers.outbox import status
from memstream.projections.reader import AsyncReader
from memstream.workers.deploy import init
from tests.redis_server import RedisServer
from tests.workers_util import running_worker

PARTITIONS = 4
FAST = {"append_deadline_s": 0.3, "backoff_cap": 0.2}
"""Short deadlines: an append against the stopped server gives up (to the outbox) fast."""


@pytest.fixture
def server(tmp_path: Path) -> Iterator[RedisServer]:
    srv = RedisServer(tmp_path / "redis", "--appendonly", "yes", "--appendfsync", "always")
    init(redis.Redis(port=srv.port), partitions=PARTITIONS)
    yield srv
    if srv.proc.poll() is None:
        srv.stop()


def shut_down(srv: RedisServer) -> None:
    """SIGTERM, which Redis treats as ``SHUTDOWN``: it syncs its AOF and exits, as in an
    operator's restart. (redis-py's ``shutdown()`` spends seconds retrying the connection
    the server closed.)"""
    srv.stop()


def contents(srv: RedisServer, owner: str) -> list[str]:
    """The owner's log, as the message contents in log order."""
    client = redis.Redis(port=srv.port)
    rows = client.xrange(keys.log(keys.partition(owner, PARTITIONS), owner))
    client.close()
    return [msgpack.unpackb(fields[b"data"])["content"] for _, fields in rows]


def drained(path: Path, timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while status(path):
        assert time.monotonic() < deadline, f"outbox not flushed: {status(path)}"
        time.sleep(0.02)


def test_append_while_stopped_is_kept_then_flushed_in_order_once(
    server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.db"
    with Producer.from_url(server.url, outbox=str(path), **FAST) as producer:
        first = producer.append_message("alice", "s1", "user", "m0")
        assert not first.pending and first.eid
        shut_down(server)
        receipts = [producer.append_message("alice", "s1", "user", f"m{i}") for i in range(1, 6)]
        assert all(r.pending and r.log_id == "" and r.eid for r in receipts)
        assert len({r.eid for r in receipts}) == 5
        assert receipts[0].outbox == str(path)
        (only,) = status(path)
        assert (only.owner, only.pending) == ("alice", 5)
        server.start()
        drained(path)
    assert contents(server, "alice") == [f"m{i}" for i in range(6)]


def test_interleaved_owners_keep_their_order(server: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    owners = ["ann", "bob", "cat"]
    with Producer.from_url(server.url, outbox=str(path), **FAST) as producer:
        producer.append_message("dan", "s1", "user", "direct")
        shut_down(server)
        for i in range(10):
            for owner in owners:
                assert producer.append_message(owner, "s1", "user", f"{i}").pending
        server.start()
        # Appends made while the flush runs queue behind each owner's outboxed ones.
        for i in range(10, 40):
            for owner in owners:
                producer.append_message(owner, "s1", "user", f"{i}")
        # An owner with nothing outboxed is not held up once the flusher has seen Redis
        # back (until then every append queues: that is the outage rule).
        deadline = time.monotonic() + 10
        while producer._outbox is not None and producer._outbox.outage:
            assert time.monotonic() < deadline, "the flusher never saw Redis come back"
            time.sleep(0.01)
        assert not producer.append_message("dan", "s1", "user", "again").pending
        drained(path)
    for owner in owners:
        assert contents(server, owner) == [str(i) for i in range(40)], owner


def test_eid_ttl_shorter_than_retention_is_refused(server: RedisServer, tmp_path: Path) -> None:
    init(redis.Redis(port=server.port), eid_ttl=600)
    producer = Producer.from_url(server.url, outbox=str(tmp_path / "o.db"))
    with producer, pytest.raises(ConfigError, match="eid TTL"):
        producer.append_message("alice", "s1", "user", "hi")
    with Producer.from_url(
        server.url, outbox=str(tmp_path / "o2.db"), outbox_retention_s=300
    ) as producer:
        assert not producer.append_message("alice", "s1", "user", "hi").pending


def test_one_process_per_outbox_file(server: RedisServer, tmp_path: Path) -> None:
    path = str(tmp_path / "outbox.db")
    with Producer.from_url(server.url, outbox=path), pytest.raises(ConfigError, match="in use"):
        Producer.from_url(server.url, outbox=path)


CHILD = """
import sys, time
from memstream.producers import Producer
url, path, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
producer = Producer.from_url(url, outbox=path, append_deadline_s=0.3, backoff_cap=0.1)
for i in range(n):
    assert producer.append_message("crash", "s1", "user", str(i)).pending
print("stored", flush=True)
time.sleep(120)
"""


def _child(server: RedisServer, path: Path, n: int) -> subprocess.Popen[str]:
    child = subprocess.Popen(
        [sys.executable, "-c", CHILD, server.url, str(path), str(n)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None and child.stdout.readline().strip() == "stored"
    return child


def _kill(child: subprocess.Popen[str]) -> None:
    child.send_signal(signal.SIGKILL)
    child.wait()
    assert child.stdout is not None
    child.stdout.close()


def test_crash_with_pending_entries_then_a_new_producer_flushes(
    server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.db"
    shut_down(server)
    child = _child(server, path, 30)
    _kill(child)
    assert sum(o.pending for o in status(path)) == 30
    server.start()
    with Producer.from_url(server.url, outbox=str(path), **FAST):
        drained(path)
    assert contents(server, "crash") == [str(i) for i in range(30)]


def test_crash_mid_flush_writes_nothing_twice(server: RedisServer, tmp_path: Path) -> None:
    path, n = tmp_path / "outbox.db", 3000
    shut_down(server)
    child = _child(server, path, n)
    server.start()
    client = redis.Redis(port=server.port)
    log_key = keys.log(keys.partition("crash", PARTITIONS), "crash")
    deadline = time.monotonic() + 20
    while client.xlen(log_key) == 0:  # the child's flusher has started sending
        assert time.monotonic() < deadline, "the child never flushed"
        time.sleep(0.001)
    _kill(child)
    # Typically the first batch is in Redis and not yet marked sent: all are sent again.
    left, stored = sum(o.pending for o in status(path)), client.xlen(log_key)
    with Producer.from_url(server.url, outbox=str(path), **FAST):
        drained(path)
    assert contents(server, "crash") == [str(i) for i in range(n)], f"{left} left, {stored} stored"
    client.close()


def test_outbox_status_command(server: RedisServer, tmp_path: Path) -> None:
    path = tmp_path / "outbox.db"
    with Producer.from_url(server.url, outbox=str(path), **FAST) as producer:
        shut_down(server)
        for owner, n in (("ann", 3), ("bob", 1)):
            for i in range(n):
                producer.append_message(owner, "s1", "user", str(i))
    cli = [sys.executable, "-m", "memstream.workers.cli", "outbox", "status", str(path)]
    out = subprocess.run([*cli, "--json"], capture_output=True, text=True, check=True)
    doc = json.loads(out.stdout)
    assert doc["pending"] == 4 and doc["oldest_age_s"] >= 0
    assert {o["owner"]: o["pending"] for o in doc["owners"]} == {"ann": 3, "bob": 1}
    text = subprocess.run(cli, capture_output=True, text=True, check=True).stdout
    assert "4 pending appends" in text and "ann" in text and "bob" in text
    missing = subprocess.run(
        [*cli[:-1], str(tmp_path / "nope.db")], capture_output=True, text=True, check=False
    )
    assert missing.returncode == 1 and "no such file" in missing.stderr
    assert "Traceback" not in missing.stderr


async def test_wait_on_a_pending_receipt_waits_for_flush_and_apply(
    server: RedisServer, tmp_path: Path
) -> None:
    path = tmp_path / "outbox.db"
    producer = AsyncProducer.from_url(server.url, outbox=str(path), **FAST)
    reader = AsyncReader.from_url(server.url)
    try:
        await producer.append_message("alice", "s1", "user", "before")
        shut_down(server)
        receipt = await producer.append_message("alice", "s1", "user", "during")
        assert receipt.pending
        server.start()
        async with running_worker(server.url):
            result = await reader.wait(receipt, timeout=20)
            assert result.applied
            history = await reader.history("alice", "s1")
        assert [m["content"] for m in history] == ["before", "during"]
    finally:
        await producer.aclose()
        await reader.aclose()


async def test_wait_on_a_pending_receipt_times_out_while_redis_is_down(
    server: RedisServer, tmp_path: Path
) -> None:
    from memstream.projections.wait import WaitTimeoutError

    path = tmp_path / "outbox.db"
    producer = AsyncProducer.from_url(server.url, outbox=str(path), **FAST)
    reader = AsyncReader.from_url(server.url, read_deadline_s=0.3)
    try:
        await producer.append_message("alice", "s1", "user", "before")
        await reader.state("alice")
        shut_down(server)
        receipt = await producer.append_message("alice", "s1", "user", "during")
        assert isinstance(receipt, Receipt) and receipt.pending
        started = time.monotonic()
        with pytest.raises(WaitTimeoutError):
            await reader.wait(receipt, timeout=1.0)
        assert time.monotonic() - started < 2.0
    finally:
        await producer.aclose()
        await reader.aclose()


def test_append_many_while_stopped_is_kept_whole(server: RedisServer, tmp_path: Path) -> None:
    from memstream.producers import Append, MessageAppended

    path = tmp_path / "outbox.db"

    def batch(lo: int, hi: int) -> list[Append]:
        return [
            Append(o, MessageAppended(role="user", content=str(i)), "s1")
            for i in range(lo, hi)
            for o in ("ann", "bob")
        ]

    with Producer.from_url(server.url, outbox=str(path), **FAST) as producer:
        assert not any(r.pending for r in producer.append_many(batch(0, 3)))
        shut_down(server)
        receipts = producer.append_many(batch(3, 6))
        assert len(receipts) == 6 and all(r.pending for r in receipts)
        server.start()
        producer.append_many(batch(6, 9))  # queued behind, or sent after the flush
        drained(path)
    for owner in ("ann", "bob"):
        assert contents(server, owner) == [str(i) for i in range(9)]


async def test_a_row_redis_refuses_is_reported_and_does_not_block(
    server: RedisServer, tmp_path: Path
) -> None:
    from memstream.producers import AppendRejectedError

    init(redis.Redis(port=server.port), max_event_bytes=64)
    shut_down(server)  # the producer never learns max_event_bytes before the outage
    path = tmp_path / "outbox.db"
    producer = AsyncProducer.from_url(server.url, outbox=str(path), **FAST)
    reader = AsyncReader.from_url(server.url)
    try:
        big = await producer.append_message("alice", "s1", "user", "x" * 200)
        small = await producer.append_message("alice", "s1", "user", "ok")
        assert big.pending and small.pending
        server.start()
        with pytest.raises(AppendRejectedError, match="max_event_bytes"):
            await reader.wait(big, timeout=10)
        async with running_worker(server.url):
            assert (await reader.wait(small, timeout=10)).applied
        assert contents(server, "alice") == ["ok"]
    finally:
        await producer.aclose()
        await reader.aclose()


def test_rows_older_than_the_eid_ttl_are_sent_with_a_loud_error(
    server: RedisServer, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    import sqlite3

    path = tmp_path / "outbox.db"
    shut_down(server)
    with Producer.from_url(server.url, outbox=str(path), **FAST) as producer:
        assert producer.append_message("old", "s1", "user", "0").pending
    db = sqlite3.connect(path)
    db.execute("UPDATE entries SET created = created - 2 * 86400")  # older than 1 day
    db.commit()
    db.close()
    server.start()
    producer = Producer.from_url(server.url, outbox=str(path), **FAST)
    with caplog.at_level("ERROR", "memstream.outbox"), producer:
        drained(path)
    assert contents(server, "old") == ["0"]
    assert any("older than the eid TTL" in r.getMessage() for r in caplog.records)


def test_the_outbox_is_imported_only_when_asked_for() -> None:
    code = "import sys, memstream.producers as m; m.Producer; print('sqlite3' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
