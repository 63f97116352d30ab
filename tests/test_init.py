from __future__ import annotations

import subprocess
import sys

import pytest
import redis

from memstream.producers import ConfigError, Producer, keys
from memstream.workers.cli import main
from memstream.workers.deploy import init, read_deployment


def test_init_writes_meta_conf_and_groups(r: redis.Redis) -> None:
    d = init(r, partitions=8, max_event_bytes=4096)
    assert r.hgetall(keys.META) == {
        b"partitions": b"8",
        b"version": b"1",
        b"max_event_bytes": b"4096",
        b"format": b"1",
    }
    for p in range(8):
        assert r.hget(keys.conf(p), "partitions") == b"8"
        groups = r.xinfo_groups(keys.feed(p))
        assert [g["name"] for g in groups] == [b"v1"]
    assert d == read_deployment(r)
    libraries = {
        dict(zip(lib[0::2], lib[1::2], strict=True))[b"library_name"] for lib in r.function_list()
    }
    assert {b"memstream", b"memstream_worker"} <= libraries


def test_init_is_idempotent_and_keeps_data(r: redis.Redis, redis_url: str) -> None:
    init(r, partitions=4)
    with Producer.from_url(redis_url) as producer:
        receipt = producer.append_message("alice", "s1", "user", "hi")
    before = r.xrange(keys.log(receipt.partition, "alice"))
    again = init(r)
    assert again.partitions == 4
    assert init(r, partitions=4).partitions == 4
    assert r.xrange(keys.log(receipt.partition, "alice")) == before


def test_init_refuses_to_change_partitions_with_data(r: redis.Redis, redis_url: str) -> None:
    init(r, partitions=4)
    with Producer.from_url(redis_url) as producer:
        producer.append_message("alice", "s1", "user", "hi")
    with pytest.raises(ConfigError, match="refusing to change partitions from 4 to 8"):
        init(r, partitions=8)
    assert read_deployment(r).partitions == 4


def test_init_may_change_partitions_while_empty(r: redis.Redis) -> None:
    init(r, partitions=4)
    assert init(r, partitions=8).partitions == 8
    assert r.exists(keys.conf(7)) == 1
    assert r.hget(keys.conf(0), "partitions") == b"8"


def test_cli_init_and_bad_partitions(
    r: redis.Redis, redis_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["init", "--redis-url", redis_url, "--partitions", "2"]) == 0
    assert "partitions=2" in capsys.readouterr().out
    assert main(["init", "--redis-url", redis_url, "--partitions", "0"]) == 1
    assert "partitions must be between" in capsys.readouterr().err


def test_cli_reads_url_from_environment(r: redis.Redis, redis_url: str) -> None:
    out = subprocess.run(
        [sys.executable, "-m", "memstream.workers.cli", "init"],
        env={"MEMSTREAM_REDIS_URL": redis_url, "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        check=True,
    )
    assert "partitions=16" in out.stdout
