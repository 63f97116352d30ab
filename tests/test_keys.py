from __future__ import annotations

import hashlib
import re
from pathlib import Path

import pytest
import redis

from memstream.producers import InvalidIdError, Producer, keys
from memstream.producers.events_messages import MessageAppended

BAD_IDS = ["", "a" * 201, "a{b", "a}b", "a:b", "a b", "caf\u00e9", ".lead", "-lead", "tab\t"]


@pytest.mark.parametrize("bad", BAD_IDS)
@pytest.mark.parametrize("field", ["owner", "session"])
def test_bad_ids_are_rejected_with_field_and_rule(bad: str, field: str) -> None:
    with pytest.raises(InvalidIdError) as info:
        keys.check_id(bad, field)
    assert info.value.field == field
    assert "A-Z a-z 0-9 . _ @ + = -" in str(info.value)
    assert str(info.value).startswith(f"{field}: ")


@pytest.mark.parametrize("good", ["a", "A" * 200, "agent-7", "team.alpha", "u@x.io", "k+v=1_2"])
def test_good_ids_pass(good: str) -> None:
    assert keys.check_id(good) == good


def test_partition_is_sha1_prefix_mod_partitions() -> None:
    for owner in ["alice", "bob", "team.alpha", "x" * 200]:
        digest = hashlib.sha1(owner.encode()).hexdigest()
        for n in (1, 7, 16, 1024):
            assert keys.partition(owner, n) == int(digest[:8], 16) % n


def _doc_vectors() -> list[tuple[str, int, int, str, str, str]]:
    text = (Path(__file__).parents[1] / "docs" / "wire-protocol.md").read_text()
    rows = re.findall(
        r"^\| `([^`]+)` \| (\d+) \| (\d+) \| `([^`]+)` \| `([^`]+)` \| `([^`]+)` \|$",
        text,
        flags=re.M,
    )
    return [(o, int(n), int(p), log, feed, heads) for o, n, p, log, feed, heads in rows]


def test_wire_protocol_vectors_match_the_code() -> None:
    vectors = _doc_vectors()
    assert len(vectors) >= 6
    for owner, partitions, p, log, feed, heads in vectors:
        got = keys.OwnerKeys.of(owner, partitions)
        assert (got.partition, got.log, got.feed, got.heads) == (p, log, feed, heads), owner


def test_lua_derives_the_same_keys_as_keys_py(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        receipt = producer.append(
            "alice", MessageAppended(role="user", content="hi"), session="s1", eid="e-1"
        )
    p = receipt.partition
    assert r.hget(keys.heads(p), "alice") == receipt.log_id.encode()
    assert r.get(keys.eid(p, "alice", "e-1")) == f"{receipt.log_id} {receipt.feed_id}".encode()
    assert r.xlen(keys.log(p, "alice")) == 1
    assert r.xlen(keys.feed(p)) == 1


def test_a_str_subclass_posing_as_a_checked_id_is_checked_itself() -> None:
    # check_id remembers ids that passed; an object that hashes and compares like one of
    # them but spells something else must not pass on that memory.
    assert keys.check_id("good-owner") == "good-owner"

    class Posing(str):
        def __hash__(self) -> int:
            return hash("good-owner")

        def __eq__(self, other: object) -> bool:
            return True

    with pytest.raises(InvalidIdError):
        keys.check_id(Posing("bad owner!"))
