"""The check memos of ``append.lua`` (owners, sessions, types, owner hashes) on a real Redis.

The library remembers checks that passed between calls; these tests pin that a memo never
changes an answer: a refused value stays refused, a changed partition count still applies,
and a memo that filled up and was cleared keeps checking.
"""

from __future__ import annotations

import json
from typing import Any

import pytest
import redis

from memstream.producers import keys

MEMO_MAX = 4096  # append.lua's bound


def fcall(r: redis.Redis, owner: str, partitions: int, *extra: str) -> Any:
    p = keys.partition(owner, partitions)
    args = ["type", "step.recorded", "data", json.dumps({"action": "a"}), "ct", "json", *extra]
    return r.execute_command(  # type: ignore[no-untyped-call]
        "FCALL", "ms_append", 2, keys.log(p, owner), keys.feed(p), *args
    )


def test_refused_type_and_session_stay_refused_after_good_ones(
    deployed: str, r: redis.Redis
) -> None:
    p = keys.partition("memo-a", 16)
    for _ in range(2):  # the second time, the good values come from the memos
        fcall(r, "memo-a", 16, "session", "s1")
        with pytest.raises(redis.ResponseError, match="session must be"):
            fcall(r, "memo-a", 16, "session", "-bad")
        with pytest.raises(redis.ResponseError, match="type must be"):
            r.execute_command(  # type: ignore[no-untyped-call]
                "FCALL", "ms_append", 2, keys.log(p, "memo-a"), keys.feed(p),
                "type", "Bad.Type", "data", "{}", "ct", "json",
            )  # fmt: skip
    assert r.xlen(keys.log(p, "memo-a")) == 2


def test_remembered_owner_hash_follows_a_new_partition_count(deployed: str, r: redis.Redis) -> None:
    # An owner whose partition differs between 16 and 7 partitions.
    owner = next(f"memo-{i}" for i in range(100) if
                 keys.partition(f"memo-{i}", 16) != keys.partition(f"memo-{i}", 7))  # fmt: skip
    p = keys.partition(owner, 16)
    fcall(r, owner, 16)  # remembers the owner's hash
    r.hset(keys.conf(p), "partitions", 7)  # as a re-init with 7 partitions would say
    with pytest.raises(redis.ResponseError, match="partition mismatch"):
        fcall(r, owner, 16)
    assert r.xlen(keys.log(p, owner)) == 1


def test_checks_go_on_after_a_memo_is_cleared(deployed: str, r: redis.Redis) -> None:
    owner = "memo-full"
    p = keys.partition(owner, 16)
    pipe = r.pipeline(transaction=False)
    for i in range(MEMO_MAX + 10):  # more sessions than the memo holds: it is cleared once
        pipe.execute_command(  # type: ignore[no-untyped-call]
            "FCALL", "ms_append", 2, keys.log(p, owner), keys.feed(p),
            "type", "step.recorded", "data", "{}", "ct", "json", "session", f"s{i}",
        )  # fmt: skip
    replies = pipe.execute(raise_on_error=False)
    assert not [x for x in replies if isinstance(x, Exception)]
    with pytest.raises(redis.ResponseError, match="session must be"):
        fcall(r, owner, 16, "session", "s:1")
    fcall(r, owner, 16, "session", "s1")
    assert r.xlen(keys.log(p, owner)) == MEMO_MAX + 11
