"""The wire contract as another language sees it: docs/wire-protocol.md, run for real.

The redis-cli script, the Node.js program and the MULTI fallback are the exact code the
doc shows; these tests run them against a real Redis and read the result back through the
Python decoder, so the doc cannot promise something the server does not do.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import re
import shutil
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from memstream.producers import StoredEvent, decode_entry, keys
from memstream.producers.events import StateSaved, StepRecorded
from memstream.producers.events_messages import MessageAppended
from tests.redis_server import RedisServer
from tests.test_keys import _doc_vectors

ROOT = Path(__file__).parents[1]
DOC = ROOT / "docs" / "wire-protocol.md"
CLI_SCRIPT = ROOT / "tests" / "wire_examples" / "append.sh"
NODE_DIR = ROOT / "tests" / "node"
NODE_SCRIPT = NODE_DIR / "append.mjs"
APPEND_LUA = ROOT / "producers" / "lua" / "append.lua"


def send(conn: redis.Redis, *args: str | int) -> Any:
    """Send one raw command, as any client library can (redis-py: execute_command)."""
    return conn.execute_command(*args)  # type: ignore[no-untyped-call]


def last_generated_id(conn: redis.Redis, stream: str) -> tuple[int, int]:
    """A stream's last generated id as (ms, seq); (0, 0) when the stream does not exist."""
    try:
        info = send(conn, "XINFO", "STREAM", stream)
    except redis.ResponseError as e:
        if "no such key" not in str(e):
            raise
        return 0, 0
    ms, seq = info[b"last-generated-id"].decode().split("-")
    return int(ms), int(seq)


def multi_fallback_append(
    conn: redis.Redis, owner: str, partitions: int, fields: list[str]
) -> tuple[str, str]:
    """Append without FCALL: WATCH, pick the next id of log and feed, then MULTI/EXEC.

    ``conn`` must be one connection (WATCH and MULTI are connection state). No
    deduplication and no validation: the caller must send a valid entry.
    """
    p = int(hashlib.sha1(owner.encode()).hexdigest()[:8], 16) % partitions
    log, feed, heads = f"ms:{{{p}}}:log:{owner}", f"ms:{{{p}}}:feed", f"ms:{{{p}}}:heads"
    while True:
        # Any write to the log or the feed after WATCH makes EXEC fail, so the id we
        # pick stays free in both.
        send(conn, "WATCH", log, feed)
        seconds, micros = send(conn, "TIME")
        now_ms = int(seconds) * 1000 + int(micros) // 1000
        try:
            last_ms, last_seq = max(last_generated_id(conn, log), last_generated_id(conn, feed))
        except redis.ResponseError:
            send(conn, "UNWATCH")
            raise
        # What XADD * would pick in both streams: the clock, or the last id plus one.
        entry_id = f"{now_ms}-0" if now_ms > last_ms else f"{last_ms}-{last_seq + 1}"
        send(conn, "MULTI")
        send(conn, "XADD", log, entry_id, *fields)
        # The pointer has the id of its log entry: workers apply no other pointer.
        send(conn, "XADD", feed, entry_id, "o", owner, "l", entry_id)
        send(conn, "HSET", heads, owner, entry_id)
        replies = send(conn, "EXEC")
        if replies is None:
            continue  # another append got there first: read the new last ids and retry
        # Redis does not roll back: a failed command inside EXEC leaves the others done.
        failed = [reply for reply in replies if isinstance(reply, Exception)]
        if failed:
            raise RuntimeError(f"partly applied append {entry_id}: {failed}")
        return entry_id, replies[1].decode()


@pytest.fixture
def conn(redis_server: RedisServer, r: redis.Redis) -> Iterator[redis.Redis]:
    """One dedicated connection: WATCH and MULTI belong to a connection, not a pool."""
    client = redis.Redis(port=redis_server.port, single_connection_client=True)
    yield client
    client.close()


def _require_node() -> str:
    # Fail, never skip: a skipped example is exactly the drift these tests exist to catch.
    node = shutil.which("node")
    if node is None:
        pytest.fail("node is not on PATH: run `make setup` (installs nodejs and npm)")
    if not (NODE_DIR / "node_modules" / "redis").is_dir():
        pytest.fail("tests/node/node_modules is missing: run `make setup` (npm ci in tests/node)")
    return node


def _log(r: redis.Redis, owner: str) -> list[StoredEvent]:
    p = keys.partition(owner, 16)
    entries: Any = r.xrange(keys.log(p, owner))
    return [decode_entry(owner, log_id.decode(), fields) for log_id, fields in entries]


def _feed_pointers(r: redis.Redis, owner: str) -> dict[str, str]:
    """Feed id -> log id, for this owner's pointers only."""
    entries: Any = r.xrange(keys.feed(keys.partition(owner, 16)))
    return {
        feed_id.decode(): fields[b"l"].decode()
        for feed_id, fields in entries
        if fields[b"o"] == owner.encode()
    }


def _head(r: redis.Redis, owner: str) -> str:
    head: Any = r.hget(keys.heads(keys.partition(owner, 16)), owner)
    return str(head.decode())


def _run_cli_script(port: int) -> dict[str, tuple[str, str]]:
    out = subprocess.run(
        ["bash", str(CLI_SCRIPT)],
        env={**os.environ, "REDIS_PORT": str(port)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout
    ids = {}
    for line in out.splitlines():
        event_type, log_id, feed_id = line.split()
        ids[event_type] = (log_id, feed_id)
    return ids


def test_redis_cli_example_appends_decodable_events(
    deployed: str, r: redis.Redis, redis_server: RedisServer
) -> None:
    ids = _run_cli_script(redis_server.port)
    message, state = _log(r, "cli-agent")
    assert (message.log_id, state.log_id) == (ids["message.appended"][0], ids["state.saved"][0])
    assert message.event == MessageAppended(role="user", content="hello from redis-cli")
    assert (message.session, message.eid, message.ct) == ("s1", "cli-1", "json")
    assert state.event == StateSaved(state={"mood": "curious", "turns": 1})
    assert (state.session, state.eid) == (None, "cli-2")
    assert _feed_pointers(r, "cli-agent") == {feed: log for log, feed in ids.values()}
    assert _head(r, "cli-agent") == state.log_id

    # Both appends carry an eid, so running the whole script again stores nothing new.
    assert _run_cli_script(redis_server.port) == ids
    assert len(_log(r, "cli-agent")) == 2


def test_node_example_appends_and_dedups_by_eid(deployed: str, r: redis.Redis) -> None:
    node = _require_node()
    out = subprocess.run(
        [node, str(NODE_SCRIPT)],
        check=False,  # the assertion below shows stderr instead
        env={**os.environ, "REDIS_URL": deployed},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    expected = keys.OwnerKeys.of("node-agent", 16)
    assert (result["partition"], result["log"], result["feed"]) == (
        expected.partition,
        expected.log,
        expected.feed,
    )
    assert result["retry"] == result["first"]

    message, step = _log(r, "node-agent")  # the retry wrote nothing: two entries, not three
    assert [message.log_id, step.log_id] == [result["first"][0], result["step"][0]]
    assert message.event == MessageAppended(role="user", content="hello from node")
    assert (message.session, message.eid) == ("n1", "node-1")
    assert step.event == StepRecorded(action="search docs", observation="3 hits", success=True)
    assert _feed_pointers(r, "node-agent") == {
        result["first"][1]: result["first"][0],
        result["step"][1]: result["step"][0],
    }
    assert _head(r, "node-agent") == step.log_id


def test_multi_fallback_writes_what_ms_append_writes(
    deployed: str, r: redis.Redis, conn: redis.Redis
) -> None:
    owner = "multi-agent"
    data = json.dumps({"role": "user", "content": "hello from MULTI"})
    fields = ["type", "message.appended", "v", "1", "ct", "json", "data", data, "session", "m1"]
    log_id, feed_id = multi_fallback_append(conn, owner, 16, fields)

    [stored] = _log(r, owner)
    assert stored.log_id == log_id
    assert stored.event == MessageAppended(role="user", content="hello from MULTI")
    assert stored.session == "m1"
    assert _feed_pointers(r, owner) == {feed_id: log_id}
    assert _head(r, owner) == log_id


def test_multi_fallback_interleaves_with_fcall_and_deleted_tops(
    deployed: str, r: redis.Redis, conn: redis.Redis
) -> None:
    owner = "multi-agent"
    ok = keys.OwnerKeys.of(owner, 16)
    args = ["type", "step.recorded", "data", '{"action":"x"}', "ct", "json"]
    first: Any = send(r, "FCALL", "ms_append", 2, ok.log, ok.feed, *args)
    # A deleted top entry still counts: XADD refuses ids at or below the last generated one,
    # which is why the fallback reads last-generated-id rather than the last entry.
    r.xdel(ok.log, first[0])
    fallback_id, _ = multi_fallback_append(conn, owner, 16, [*args, "v", "1"])
    assert _split(fallback_id) > _split(first[0].decode())
    # ...and ms_append's XADD * keeps going after an explicit id.
    after: Any = send(r, "FCALL", "ms_append", 2, ok.log, ok.feed, *args)
    assert _split(after[0].decode()) > _split(fallback_id)
    assert [e.log_id for e in _log(r, owner)] == [fallback_id, after[0].decode()]
    assert _head(r, owner) == after[0].decode()


def test_multi_fallback_gives_up_dedup_as_documented(
    deployed: str, r: redis.Redis, conn: redis.Redis
) -> None:
    fields = ["type", "step.recorded", "v", "1", "ct", "json", "data", '{"action":"x"}']
    fields += ["eid", "same"]  # stored, but nothing checks it
    first = multi_fallback_append(conn, "multi-agent", 16, fields)
    retry = multi_fallback_append(conn, "multi-agent", 16, fields)
    assert first != retry
    assert len(_log(r, "multi-agent")) == 2


def _split(entry_id: str) -> tuple[int, int]:
    ms, seq = entry_id.split("-")
    return int(ms), int(seq)


def test_doc_shows_exactly_the_tested_examples() -> None:
    doc = DOC.read_text()
    assert CLI_SCRIPT.read_text() in doc
    assert NODE_SCRIPT.read_text() in doc
    assert inspect.getsource(send) in doc
    assert inspect.getsource(multi_fallback_append) in doc
    assert inspect.getsource(last_generated_id) in doc
    package = json.loads((NODE_DIR / "package.json").read_text())
    assert f'"redis": "{package["dependencies"]["redis"]}"' in doc


def test_doc_lists_every_error_reason_of_append_lua() -> None:
    doc = DOC.read_text()
    lua = APPEND_LUA.read_text()
    # The literal start of each reason: fail('...' .. x) and parse_args' return nil, '...'.
    reasons = re.findall(r"""(?:fail\(|return nil, )(['"])(.+?)\1""", lua)
    assert len(reasons) >= 15
    for _, reason in reasons:
        assert reason.strip() in doc, reason


def test_doc_sha1_table_is_right() -> None:
    rows = re.findall(
        r"^\| `([^`]+)` \| `([0-9a-f]{40})` \| `([0-9a-f]{8})` \| (\d+) \|$",
        DOC.read_text(),
        flags=re.M,
    )
    assert len(rows) >= 8
    for owner, digest, prefix, number in rows:
        assert hashlib.sha1(owner.encode()).hexdigest() == digest, owner
        assert (digest[:8], int(prefix, 16)) == (prefix, int(number)), owner


def test_server_accepts_the_doc_vectors(deployed: str, r: redis.Redis) -> None:
    # ms_append recomputes the partition with Redis Lua's sha1hex: the vectors must agree
    # with the server, not only with keys.py.
    rows = [row for row in _doc_vectors() if row[1] == 16]
    assert len(rows) >= 6
    for owner, _, _, log, feed, heads in rows:
        log_id: Any = send(
            r, "FCALL", "ms_append", 2, log, feed, "type", "state.saved", "data", "{}", "ct", "json"
        )
        assert r.hget(heads, owner) == log_id[0]


def test_multi_fallback_and_fcall_race_on_one_log(
    deployed: str, r: redis.Redis, redis_server: RedisServer
) -> None:
    # WATCH makes a fallback that loses the race start again; nothing is lost or half-written.
    owner, rounds = "race-agent", 40
    ok = keys.OwnerKeys.of(owner, 16)
    args = ["type", "step.recorded", "data", '{"action":"x"}', "ct", "json"]
    errors: list[BaseException] = []

    def worker(use_fcall: bool) -> None:
        client = redis.Redis(port=redis_server.port, single_connection_client=True)
        try:
            for _ in range(rounds):
                if use_fcall:
                    send(client, "FCALL", "ms_append", 2, ok.log, ok.feed, *args)
                else:
                    multi_fallback_append(client, owner, 16, args)
        except BaseException as e:
            errors.append(e)
        finally:
            client.close()

    threads = [threading.Thread(target=worker, args=(i % 2 == 0,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    log_ids = [e.log_id for e in _log(r, owner)]
    assert len(log_ids) == 4 * rounds
    assert sorted(_feed_pointers(r, owner).values(), key=_split) == log_ids
    assert _head(r, owner) == log_ids[-1]


MANY_SCRIPT = ROOT / "tests" / "wire_examples" / "append_many.sh"


def test_append_many_cli_example_stores_two_and_names_the_third(
    deployed: str, r: redis.Redis, redis_server: RedisServer
) -> None:
    assert MANY_SCRIPT.read_text() in DOC.read_text()
    out = subprocess.run(
        ["bash", str(MANY_SCRIPT)],
        env={**os.environ, "REDIS_PORT": str(redis_server.port)},
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    ).stdout.splitlines()
    first, second = _log(r, "cli-agent")
    assert out[:5] == [first.log_id, first.log_id, second.log_id, second.log_id, ""]
    assert out[5] == "2"
    assert out[6].startswith("type must be 3 to 64 characters")
    assert first.event == MessageAppended(role="user", content="one")
    assert second.event == MessageAppended(role="assistant", content="two")
    assert _head(r, "cli-agent") == second.log_id


def _many_vectors() -> list[tuple[list[list[str]], list[int], list[Any]]]:
    doc = DOC.read_text()
    section = doc.split("## Appending many", 1)[1].split("### Test vectors", 1)[1]
    section = section.split("\n## ", 1)[0]
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 3 or not cells[0].startswith("`"):
            continue
        groups = [g.split(" ") for g in re.findall(r"`([^`]+)`", cells[0])]
        if cells[0].endswith("twice"):
            groups = groups * 2
        stored = json.loads(re.findall(r"\[[^\]]*\]", cells[1])[0])
        refused = json.loads(cells[2].strip("`"))
        rows.append((groups, stored, refused))
    return rows


def test_append_many_doc_vectors_hold(deployed: str, r: redis.Redis) -> None:
    vectors = _many_vectors()
    assert len(vectors) >= 5
    for groups, stored, refused in vectors:
        r.delete(keys.log(3, "cli-agent"), keys.feed(3), keys.last_id(3))
        for key in r.scan_iter("ms:{3}:eid:*"):
            r.delete(key)
        args = [x for g in groups for x in g]
        ids, got = send(
            r, "FCALL", "ms_append_many", 2, "ms:{3}:feed", "ms:{3}:log:cli-agent", *args
        )
        assert [i for i, x in enumerate(ids) if x is not None] == stored, groups
        assert got[0::2] == refused[0::2], groups
        for reason, expected in zip(got[1::2], refused[1::2], strict=True):
            assert reason.decode().startswith(expected), (reason, expected)
        if len(groups) == 2 and groups[0] == groups[1]:  # the "twice" row: deduplicated
            assert ids[0] == ids[1]
            assert len(_log(r, "cli-agent")) == 1
