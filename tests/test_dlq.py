"""``memstream dlq``: poison entries land in the DLQ through a real worker; operators
list them with their reasons, re-queue the ones whose cause is fixed, drop the rest."""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable, Iterator
from typing import Any

import msgpack
import pytest
import redis

from memstream.producers import Producer, Receipt, keys
from memstream.projections.reader import Reader
from memstream.workers import dlq
from memstream.workers.cli import main
from tests.workers_util import spawn_worker

FIXED = "agent.fixed"  # gets a pointer to a log entry that is written only later
OTHER = "agent.other"
PF, PO = keys.partition(FIXED, 16), keys.partition(OTHER, 16)
LATE_ID = "5-1"


def _eventually(check: Callable[[], bool], timeout: float = 15.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def _dlq_total(r: redis.Redis) -> int:
    return sum(int(r.xlen(keys.dlq(p))) for p in range(16))


@pytest.fixture
def worker(deployed: str) -> Iterator[None]:
    proc = spawn_worker(deployed, "dlq-test")
    try:
        yield
    finally:
        proc.terminate()
        proc.wait(timeout=15)


def _list(url: str, capsys: pytest.CaptureFixture[str], *extra: str) -> dict[str, Any]:
    assert main(["dlq", "list", "--json", "--redis-url", url, *extra]) == 0
    doc: dict[str, Any] = json.loads(capsys.readouterr().out)
    return doc


def test_poison_listed_fixed_retried_and_dropped(
    deployed: str, r: redis.Redis, worker: None, capsys: pytest.CaptureFixture[str]
) -> None:
    assert PF != PO
    r.xadd(keys.feed(PF), {"o": FIXED, "l": LATE_ID})
    r.xadd(keys.feed(PO), {"x": "y"})
    bad = r.xadd(keys.log(PO, OTHER), {"type": "state.saved", "data": b"\xc1"})
    r.xadd(keys.feed(PO), {"o": OTHER, "l": bad})
    _eventually(lambda: _dlq_total(r) == 3)

    doc = _list(deployed, capsys)
    assert doc["total"] == 3
    by_owner = {e["owner"]: e for e in doc["entries"]}
    missing, undecodable, pointer = by_owner[FIXED], by_owner[OTHER], by_owner[""]
    assert missing["reason"] == f"log entry {LATE_ID} of {FIXED} is missing"
    assert missing["ref"] == f"{PF}:{missing['id']}"
    assert (missing["group"], missing["log_id"], missing["deliveries"]) == ("v1", LATE_ID, 1)
    assert "undecodable" in undecodable["reason"]
    assert "bad feed pointer" in pointer["reason"]
    assert _list(deployed, capsys, "--partition", str(PF))["total"] == 1
    assert len(_list(deployed, capsys, "--limit", "2")["entries"]) == 2

    assert main(["dlq", "list", "--redis-url", deployed]) == 0
    text = capsys.readouterr().out
    assert "3 entries in the DLQ" in text
    assert missing["ref"] in text and missing["reason"] in text

    # The cause is not fixed yet: retry refuses, because it would only dead-letter again.
    assert main(["dlq", "retry", missing["ref"], "--redis-url", deployed]) == 1
    assert "still missing" in capsys.readouterr().out
    # A bad pointer has nothing to re-queue, whether named by P:ID or by ID + --partition.
    args = ["dlq", "retry", pointer["id"], "--partition", str(PO), "--redis-url", deployed]
    assert main(args) == 1
    assert "nothing to re-queue" in capsys.readouterr().out

    # Fix the cause, then retry: a fresh pointer is applied and the DLQ entry is gone.
    message = msgpack.packb({"role": "user", "content": "found again"})
    r.xadd(keys.log(PF, FIXED), {"type": "message.appended", "data": message, "session": "s1"},
           id=LATE_ID)  # fmt: skip
    assert main(["dlq", "retry", missing["ref"], "--redis-url", deployed]) == 0
    found = re.search(r"as feed entry (\S+)", capsys.readouterr().out)
    assert found is not None
    with Reader.from_url(deployed) as reader:
        result = reader.wait(Receipt(FIXED, PF, LATE_ID, found.group(1)), timeout=15)
        assert result.applied
        assert [m["content"] for m in reader.history(FIXED, "s1")] == ["found again"]
    assert r.xlen(keys.dlq(PF)) == 0

    # Drop one by a bare id (found in whichever partition holds it), then the rest.
    assert main(["dlq", "drop", undecodable["id"], "--redis-url", deployed]) == 0
    assert "dropped 1 DLQ entry" in capsys.readouterr().out
    assert main(["dlq", "drop", "--all", "--redis-url", deployed]) == 1  # needs --yes
    assert "--yes" in capsys.readouterr().err
    assert main(["dlq", "drop", "--all", "--yes", "--redis-url", deployed]) == 0
    assert "dropped 1 DLQ entry" in capsys.readouterr().out
    assert _dlq_total(r) == 0
    assert main(["dlq", "list", "--redis-url", deployed]) == 0
    assert "the DLQ is empty" in capsys.readouterr().out


def _dead(r: redis.Redis, p: int, owner: str, log_id: str, group: str = "v1", **kw: str) -> str:
    fields = {"feed_id": "1-0", "owner": owner, "log_id": log_id, "group": group,
              "deliveries": "6", "reason": "delivered 6 times (max 5)"}  # fmt: skip
    raw: Any = r.xadd(keys.dlq(p), fields, **kw)
    return f"{p}:{raw.decode()}"


def test_retry_all_requeues_what_can_apply(deployed: str, r: redis.Redis) -> None:
    with Producer.from_url(deployed) as producer:
        receipt = producer.append_message(FIXED, "s1", "user", "hi")
    r.xgroup_setid(keys.feed(PF), "v1", receipt.feed_id)  # as if delivered then dead-lettered
    good = _dead(r, PF, FIXED, receipt.log_id)
    stale = _dead(r, PF, FIXED, receipt.log_id, group="v0")
    letters = list(dlq.iter_entries(r))
    outcomes = {o.letter.ref: o for o in dlq.retry(r, letters)}
    assert outcomes[good].requeued
    assert not outcomes[stale].requeued
    assert "not the active v1" in outcomes[stale].detail
    (entry,) = r.xrange(keys.feed(PF), min=f"({receipt.feed_id}")
    assert entry[0].decode() == outcomes[good].detail
    assert entry[1] == {b"o": FIXED.encode(), b"l": receipt.log_id.encode()}
    # A second retry of the same entry finds it gone and re-queues nothing.
    again = dlq.retry(r, [o.letter for o in outcomes.values() if o.requeued])
    assert [o.detail for o in again] == ["already gone from the DLQ"]
    assert r.xlen(keys.feed(PF)) == 2


def test_retry_waits_for_a_running_replay(
    deployed: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    ref = _dead(r, PF, FIXED, "1-0")
    r.hset(keys.META, "next_version", 2)
    assert main(["dlq", "retry", ref, "--redis-url", deployed]) == 1
    assert "replay is building v2" in capsys.readouterr().err
    assert r.xlen(keys.dlq(PF)) == 1


def test_references(deployed: str, r: redis.Redis) -> None:
    assert dlq.parse_ref("3:17-2") == (3, "17-2")
    assert dlq.parse_ref("17-2", 4) == (4, "17-2")
    assert dlq.parse_ref("17-2") == (None, "17-2")
    for bad in ("x:17-2", "3:17", "3:", "17-2-1"):
        with pytest.raises(dlq.DlqError):
            dlq.parse_ref(bad)
    with pytest.raises(dlq.DlqError, match="--partition is 4"):
        dlq.parse_ref("3:17-2", 4)
    # The same id in two partitions' DLQs: a bare id is ambiguous, P:ID is not.
    _dead(r, 1, FIXED, "1-0", id="9-9")
    _dead(r, 2, FIXED, "1-0", id="9-9")
    with pytest.raises(dlq.DlqError, match="ambiguous"):
        dlq.resolve(r, ["9-9"])
    assert [d.partition for d in dlq.resolve(r, ["2:9-9"])] == [2]
    assert [d.partition for d in dlq.resolve(r, ["9-9"], partition=1)] == [1]
    with pytest.raises(dlq.DlqError, match="no DLQ entry 3:9-9"):
        dlq.resolve(r, ["3:9-9"])
    with pytest.raises(dlq.DlqError, match="between 0 and 15"):
        dlq.resolve(r, ["99:9-9"])
