"""The roles of docs/security.md as real Redis users (ACL SETUSER on the test server):
each role's allowed operations work, the forbidden ones fail, and a producer cannot change
another owner's projections through anything it is allowed to run."""

from __future__ import annotations

import logging
import re
import shlex
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import Producer, keys
from memstream.producers.events import SkillExecuted
from memstream.projections.reader import AsyncReader
from memstream.workers.deploy import init
from memstream.workers.replay import replay_all
from memstream.workers.replay_owner import replay_owner
from tests.redis_server import RedisServer
from tests.workers_util import running_worker

DOC = Path(__file__).parent.parent / "docs" / "security.md"
ROLES = ("producer", "producer-acme", "reader", "worker", "operator")
TENANT, VICTIM = "acme.bot", "bob"


def acl_lines() -> dict[str, str]:
    found = re.findall(r"^ACL SETUSER (\S+) .*$", DOC.read_text(), re.M)
    lines = {m.group(1): m.group(0) for m in re.finditer(r"^ACL SETUSER (\S+) .*$",
                                                          DOC.read_text(), re.M)}  # fmt: skip
    assert sorted(found) == sorted(ROLES)
    return lines


@pytest.fixture
def users(r: redis.Redis, redis_server: RedisServer) -> Iterator[dict[str, str]]:
    """Every role as a user with the documented rules; role -> URL."""
    call: Any = r.execute_command
    urls = {}
    for role, line in acl_lines().items():
        words = shlex.split(line.replace("CHANGE-ME", f"pw-{role}"))
        call(*words)
        urls[role] = f"redis://{role}:pw-{role}@127.0.0.1:{redis_server.port}/0"
    yield urls
    for role in ROLES:
        call("ACL", "DELUSER", role)


def _as(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def _denied(client: redis.Redis, *command: Any) -> None:
    call: Any = client.execute_command
    with pytest.raises((redis.exceptions.NoPermissionError, redis.ResponseError)) as caught:
        call(*command)
    assert "NOPERM" in str(caught.value) or "permission" in str(caught.value).lower()


def _skill(producer: Producer, owner: str, ok: bool = True) -> Any:
    return producer.append(owner, SkillExecuted(name="s", success=ok, duration_s=1.0))


async def test_roles_work_end_to_end(
    r: redis.Redis, redis_url: str, users: dict[str, str], caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="memstream")
    init(_as(users["operator"]), partitions=16)
    with Producer.from_url(users["producer"]) as producer:
        first = _skill(producer, VICTIM)
        again = producer.append(VICTIM, SkillExecuted(name="s", success=True), eid="e-1")
        assert producer.append(VICTIM, SkillExecuted(name="s", success=True), eid="e-1") == again
    async with (
        running_worker(users["worker"]),
        AsyncReader.from_url(users["reader"]) as reader,
    ):  # fmt: skip
        assert (await reader.wait(again, timeout=20)).applied
        assert (await reader.wait(first, timeout=20)).applied
        stats = await reader.skill_stats(VICTIM, "s")
    assert stats["executions"] == 2
    # The worker role may wake its own blocked reads (else it falls back to short blocks).
    assert "CLIENT UNBLOCK is not allowed" not in caplog.text
    assert r.xlen(keys.dlq(keys.partition(VICTIM, 16))) == 0
    operator = _as(users["operator"])
    replay_owner(operator, VICTIM)
    replay_all(operator, catchup_timeout_s=5, grace_s=0.0)


def test_forbidden_operations_fail(r: redis.Redis, redis_url: str, users: dict[str, str]) -> None:
    init(r, partitions=16)
    p = keys.partition(VICTIM, 16)
    log, feed, projection = keys.log(p, VICTIM), keys.feed(p), keys.Projection(p, 1)
    with Producer.from_url(users["producer"]) as producer:
        receipt = _skill(producer, VICTIM)
    prod, reader, worker = _as(users["producer"]), _as(users["reader"]), _as(users["worker"])
    stats = projection.key("skill_stats", VICTIM, "s")
    command: tuple[Any, ...]
    for command in (
        ("FCALL", "ms_write", 1, stats, b"\x90"),
        ("FCALL", "ms_apply", 1, feed, "v1", b"\x90"),
        ("FCALL_RO", "ms_fetch", 1, log, b"\x90"),
        ("XRANGE", log, "-", "+"), ("XREVRANGE", log, "+", "-"), ("DEL", log),
        ("XTRIM", log, "MAXLEN", 0),
        ("HSET", stats, "runs", 99), ("GET", keys.SIGNING_KEY), ("FUNCTION", "LIST"),
        ("XACK", feed, "v1", receipt.feed_id), ("HSET", keys.conf(p), "signed", "0"),
    ):  # fmt: skip
        _denied(prod, *command)
    for command in (
        ("XADD", log, "*", "a", "b"), ("FCALL", "ms_append", 2, log, feed, "type", "a.b",
                                        "data", "{}"),
        ("XRANGE", log, "-", "+"), ("GET", keys.SIGNING_KEY), ("HSET", stats, "runs", 1),
        ("FUNCTION", "LIST", "WITHCODE"),
    ):  # fmt: skip
        _denied(reader, *command)
    for command in (
        ("FUNCTION", "LOAD", "REPLACE", "#!lua name=x\nredis.register_function('x', "
                                        "function() return 1 end)"),
        ("FUNCTION", "FLUSH"), ("FLUSHALL",), ("CONFIG", "SET", "appendonly", "no"),
        ("ACL", "LIST"), ("KEYS", "*"), ("SET", "other:key", "x"),
    ):  # fmt: skip
        _denied(worker, *command)
    # A user who may FCALL anything and write projection keys, but is no worker: the
    # internal functions refuse it before any write.
    call: Any = r.execute_command
    call("ACL", "SETUSER", "sneaky", "on", ">pw", "resetkeys", "-@all", "+fcall", "+@write",
         "+@read", "~ms:{*}:v*")  # fmt: skip
    sneaky = redis.Redis.from_url(users["operator"].replace("operator:pw-operator", "sneaky:pw"))
    with pytest.raises(redis.ResponseError, match="needs the worker role"):
        sneaky.execute_command("FCALL", "ms_write", 1, stats, b"\x90")  # type: ignore[no-untyped-call]
    call("ACL", "DELUSER", "sneaky")


async def test_a_tenant_producer_cannot_touch_another_owner(
    r: redis.Redis, redis_url: str, users: dict[str, str]
) -> None:
    init(r, partitions=16, require_signed=True)
    p = keys.partition(VICTIM, 16)
    with Producer.from_url(users["producer"]) as producer:
        victim = [_skill(producer, VICTIM) for _ in range(3)]
    async with running_worker(users["worker"]), AsyncReader.from_url(users["reader"]) as reader:
        assert (await reader.wait(victim[-1], timeout=20)).applied
        before = await reader.skill_stats(VICTIM, "s")

    tenant = _as(users["producer-acme"])
    log, feed = keys.log(p, VICTIM), keys.feed(p)
    # Everything the tenant's rights let it try against bob:
    _denied(tenant, "FCALL", "ms_append", 2, log, feed, "type", "skill.executed", "data", "{}")
    _denied(tenant, "XADD", log, "*", "type", "skill.executed", "data", "{}")
    for receipt in victim:  # copies of bob's pointers
        tenant.xadd(feed, {"o": VICTIM, "l": receipt.log_id})
    tenant.xadd(feed, {"o": VICTIM, "l": "9999999999999-0"}, id="9999999999990-0")
    tenant.hset(keys.heads(p), VICTIM, "9999999999999-0")  # a forged head
    # Its own log, written around ms_append: a pointer of its own id, and an orphan.
    tp = keys.partition(TENANT, 16)
    with Producer.from_url(users["producer-acme"]) as producer:
        mine = _skill(producer, TENANT)
        raw = {"type": "skill.executed", "v": "1", "ct": "json",
               "data": '{"name":"s","success":true,"duration_s":1.0}'}  # fmt: skip
        added: Any = tenant.xadd(keys.log(tp, TENANT), raw)
        forged = added.decode()
        tenant.xadd(keys.feed(tp), {"o": TENANT, "l": forged}, id=forged)
        tenant.xadd(keys.log(tp, TENANT), raw)  # no pointer at all
        last = _skill(producer, TENANT)
    assert mine.log_id == mine.feed_id

    async with running_worker(users["worker"]), AsyncReader.from_url(users["reader"]) as reader:
        assert (await reader.wait(last, timeout=20)).applied
        after = await reader.skill_stats(VICTIM, "s")
        tenant_live = await reader.skill_stats(TENANT, "s")
    assert after == before
    assert tenant_live["executions"] == 2  # the forged entry is not applied
    rows: Any = [*r.xrange(keys.dlq(p)), *r.xrange(keys.dlq(tp))]
    reasons = [f[b"reason"].decode() for _, f in rows]
    assert sum("own pointer" in x for x in reasons) == 3, reasons
    assert any("not written by ms_append" in x for x in reasons), reasons

    operator = _as(users["operator"])
    replay_owner(operator, VICTIM)  # the forged head does not move the fence
    replay_all(operator, catchup_timeout_s=5, grace_s=0.0)
    replay_owner(operator, TENANT)
    async with AsyncReader.from_url(users["reader"]) as reader:
        assert await reader.skill_stats(VICTIM, "s") == before
        assert (await reader.skill_stats(TENANT, "s"))["executions"] == 2
    # The victim keeps appending, and is applied, after the forged head and pointer.
    with Producer.from_url(users["producer"]) as producer:
        later = _skill(producer, VICTIM)
    async with running_worker(users["worker"]), AsyncReader.from_url(users["reader"]) as reader:
        assert (await reader.wait(later, timeout=20)).applied
        assert (await reader.skill_stats(VICTIM, "s"))["executions"] == 4
