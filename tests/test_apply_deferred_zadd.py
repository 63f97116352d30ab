"""ms_apply defers ZMAX/ZMIN to one ZADD per key and call (workers/lua/apply.lua).

Deferring must change nothing a caller can see: the result equals running every op in
order, an entry whose XACK returned 0 adds nothing, an op that touches a key after a
deferred ZADD sees it done (an expiry on a new key, a delete), and a key of the wrong type
still dead-letters the entry whose op it is.
"""

from __future__ import annotations

from typing import Any

import redis

from memstream.producers import keys
from memstream.projections.ops import Op, apply_command

OWNER = "agent.zdefer"
P = keys.partition(OWNER, 16)
PK = keys.Projection(P, 1)
FAR_MS = 4_000_000_000_000
"""An expiry far in the future (year 2096), in ms."""


def _pending_feed(r: redis.Redis, n: int) -> tuple[str, list[str]]:
    """A feed with group ``g`` holding ``n`` delivered, pending entries."""
    feed = keys.feed(P)
    r.xgroup_create(feed, "g", id="0", mkstream=True)
    add: Any = r.xadd
    ids = [add(feed, {"o": OWNER, "l": f"{i + 1}-0"}).decode() for i in range(n)]
    r.xreadgroup("g", "c", {feed: ">"}, count=n)
    return feed, ids


def _apply(r: redis.Redis, feed: str, entries: list[tuple[str, list[Op]]]) -> int:
    call: Any = r.execute_command
    return int(call(*apply_command(feed, "g", entries)))


def _scores(r: redis.Redis, key: str) -> dict[str, float]:
    found: Any = r.zrange(key, 0, -1, withscores=True)
    return {m.decode(): s for m, s in found}


def test_max_and_min_over_a_call_equal_the_ops_in_order(deployed: str, r: redis.Redis) -> None:
    hi, lo = PK.key("zd_hi", OWNER), PK.key("zd_lo", OWNER)
    r.zadd(hi, {"a": 5, "old": 1})
    r.zadd(lo, {"a": 5})
    feed, ids = _pending_feed(r, 4)
    entries = [
        (ids[0], [("ZMAX", hi, "a", 3), ("ZMIN", lo, "a", 7), ("ZMAX", hi, "b", 2)]),
        (ids[1], [("ZMAX", hi, "a", 9), ("ZMIN", lo, "a", 4), ("ZMAX", hi, "b", 1)]),
        (ids[2], [("ZMAX", hi, "a", 8), ("ZMIN", lo, "b", 6), ("ZMIN", lo, "b", 2)]),
        (ids[3], [("ZMAX", hi, "c", -1.5)]),
    ]
    assert _apply(r, feed, entries) == 4
    assert _scores(r, hi) == {"a": 9, "b": 2, "old": 1, "c": -1.5}
    assert _scores(r, lo) == {"a": 4, "b": 2}


def test_an_entry_acked_before_adds_nothing(deployed: str, r: redis.Redis) -> None:
    hi = PK.key("zd_hi", OWNER)
    feed, ids = _pending_feed(r, 2)
    r.xack(feed, "g", ids[1])  # another consumer applied it already
    entries = [(ids[0], [("ZMAX", hi, "a", 3)]), (ids[1], [("ZMAX", hi, "a", 30)])]
    assert _apply(r, feed, entries) == 1
    assert _scores(r, hi) == {"a": 3}


def test_ops_after_a_deferred_zadd_see_it(deployed: str, r: redis.Redis) -> None:
    expiring, deleted, back = (PK.key(n, OWNER) for n in ("zd_exp", "zd_del", "zd_back"))
    feed, ids = _pending_feed(r, 3)
    entries: list[tuple[str, list[Op]]] = [
        # EXPAT skips a missing key: it must run after the ZADD that creates this one
        (ids[0], [("ZMAX", expiring, "a", 1), ("EXPAT", expiring, FAR_MS)]),
        (ids[1], [("ZMIN", deleted, "a", 1), ("DEL", deleted), ("ZMAX", back, "a", 1)]),
        (ids[2], [("DEL", back), ("ZMAX", back, "b", 2)]),
    ]
    assert _apply(r, feed, entries) == 3
    assert r.pexpiretime(expiring) == FAR_MS
    assert not r.exists(deleted)
    assert _scores(r, back) == {"b": 2}


def test_switching_between_max_and_min_keeps_the_order(deployed: str, r: redis.Redis) -> None:
    key = PK.key("zd_mix", OWNER)
    feed, ids = _pending_feed(r, 1)
    ops: list[Op] = [("ZMAX", key, "a", 5), ("ZMIN", key, "a", 3), ("ZMAX", key, "a", 4)]
    assert _apply(r, feed, [(ids[0], ops)]) == 1
    assert _scores(r, key) == {"a": 4}  # 5, then min(5, 3), then max(3, 4)


def test_a_key_of_the_wrong_type_dead_letters_its_entry(deployed: str, r: redis.Redis) -> None:
    good, wrong = PK.key("zd_ok", OWNER), PK.key("zd_str", OWNER)
    r.set(wrong, "a string, not a sorted set")
    feed, ids = _pending_feed(r, 3)
    entries: list[tuple[str, list[Op]]] = [
        (ids[0], [("ZMAX", good, "a", 1)]),
        (ids[1], [("ZMAX", wrong, "a", 1)]),
        (ids[2], [("ZMAX", good, "a", 2)]),
    ]
    assert _apply(r, feed, entries) == 3
    assert _scores(r, good) == {"a": 2}
    rows: Any = r.xrange(keys.dlq(P))
    (letter,) = [fields for _, fields in rows]
    assert letter[b"feed_id"] == ids[1].encode()
    assert b"WRONGTYPE" in letter[b"reason"]


def test_a_key_touched_between_its_zadds_keeps_every_one(deployed: str, r: redis.Redis) -> None:
    # Each event's expiry touches the key (a deployment with session_ttl_s): after the
    # first touch its ZADDs run at once, in order, with the same result.
    key = PK.key("zd_ttl", OWNER)
    feed, ids = _pending_feed(r, 3)
    entries: list[tuple[str, list[Op]]] = [
        (ids[0], [("ZMAX", key, "a", 1), ("EXPATF", key, FAR_MS - 2, PK.key("zd_f", OWNER), "x")]),
        (ids[1], [("ZMAX", key, "a", 5), ("EXPAT", key, FAR_MS - 1)]),
        (ids[2], [("ZMAX", key, "a", 3), ("ZMAX", key, "b", 2), ("EXPAT", key, FAR_MS)]),
    ]
    assert _apply(r, feed, entries) == 3
    assert _scores(r, key) == {"a": 5, "b": 2}
    assert r.pexpiretime(key) == FAR_MS
