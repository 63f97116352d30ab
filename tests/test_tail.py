from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest
import redis

from memstream.producers import Producer, keys
from memstream.workers.cli import main


def test_tail_prints_decoded_log(
    deployed: str, r: redis.Redis, capsys: pytest.CaptureFixture[str]
) -> None:
    with Producer.from_url(deployed) as producer:
        producer.append_message("alice", "s1", "user", "hello")
        producer.save_state("alice", {"step": 2})
    p = keys.partition("alice", 16)
    r.xadd(keys.log(p, "alice"), {"type": "state.saved", "data": b"\xc1"})
    assert main(["tail", "alice", "--redis-url", deployed]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    assert "message.appended [s1]" in lines[0]
    assert '"content": "hello"' in lines[0]
    assert '"step": 2' in lines[1]
    assert "undecodable: data: not valid msgpack" in lines[2]

    assert main(["tail", "alice", "--json", "--redis-url", deployed]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows[0]["type"] == "message.appended"
    assert rows[0]["data"]["content"] == "hello"
    assert rows[0]["session"] == "s1"
    assert "error" in rows[2]


def test_tail_follow_shows_new_entries(deployed: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "memstream.workers.cli", "tail", "bob", "--follow", "--json",
         "--redis-url", deployed],
        stdout=subprocess.PIPE,
        text=True,
    )  # fmt: skip
    try:
        time.sleep(0.5)
        with Producer.from_url(deployed) as producer:
            producer.append_message("bob", "s", "user", "live")
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert json.loads(line)["data"]["content"] == "live"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
        if proc.stdout is not None:
            proc.stdout.close()
