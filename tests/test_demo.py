"""``memstream demo`` end to end, in a fresh directory, twice; and its private Redis."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from memstream.workers.demo import AGENTS
from memstream.workers.embedded import EmbeddedRedis, EmbeddedRedisError

DEMO = [sys.executable, "-m", "memstream.workers.cli", "demo"]


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONUNBUFFERED="1", COLUMNS="80")
    env.pop("MEMSTREAM_REDIS_URL", None)
    return env


def _run_demo(cwd: Path) -> str:
    done = subprocess.run(
        DEMO, cwd=cwd, env=_env(), capture_output=True, text=True, timeout=90, check=False
    )
    assert done.returncode == 0, done.stdout + done.stderr
    return done.stdout


def _leftovers(tmp_path: Path, port: int) -> list[str]:
    """Command lines of live processes that belong to this demo directory or port."""
    found = []
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            cmdline = (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        if str(tmp_path) in cmdline or f"127.0.0.1:{port}" in cmdline:
            found.append(cmdline)
    return found


def _port(output: str) -> int:
    found = re.search(r"redis://127\.0\.0\.1:(\d+)/0", output)
    assert found is not None, output
    return int(found.group(1))


def _assert_stopped(tmp_path: Path, output: str) -> None:
    port = _port(output)
    assert _leftovers(tmp_path, port) == []
    with pytest.raises(redis.ConnectionError):
        redis.Redis(port=port, socket_connect_timeout=1, retry=Retry(NoBackoff(), 0)).ping()


def _remembered(output: str) -> list[tuple[int, int]]:
    return [
        (int(m.group(1)), int(m.group(2)))
        for m in re.finditer(r"remembered so far: (\d+) sessions, (\d+) messages", output)
    ]


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc")
def test_demo_twice_grows_memory_and_leaves_nothing_running(tmp_path: Path) -> None:
    first = _run_demo(tmp_path)
    _assert_stopped(tmp_path, first)
    for agent in AGENTS:
        assert agent.owner in first
        for user, assistant in agent.after:
            assert f"user: {user}" in first
            assert f"assistant: {assistant}" in first
    assert "session chain: s1.2 <- s1.1" in first
    assert "run 1:" in first
    assert "dead-lettered: 0" in first
    assert "Partitions (3 of 16 busy)" in first or "Partitions" in first
    assert re.search(r"all\s+v1\s+\d+\s+0\s+0\s+", first), first
    assert "demo-" in first.split("Consumers", 1)[1]
    assert _remembered(first) == [(2, 6)] * len(AGENTS)
    assert max(len(line) for line in first.splitlines()) <= 80
    assert (tmp_path / ".memstream" / "redis" / "appendonlydir").is_dir()
    assert (tmp_path / ".memstream" / "worker-1.log").is_file()

    second = _run_demo(tmp_path)
    _assert_stopped(tmp_path, second)
    assert "run 2:" in second
    assert "session chain: s2.2 <- s2.1 <- s1.2 <- s1.1" in second
    assert _remembered(second) == [(4, 12)] * len(AGENTS)


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="process checks read /proc")
def test_demo_stops_everything_on_sigterm(tmp_path: Path) -> None:
    proc = subprocess.Popen(
        DEMO, cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    seen = ""
    for line in proc.stdout:
        seen += line
        if line.startswith("workers:"):
            proc.send_signal(signal.SIGTERM)
            break
    out, err = proc.communicate(timeout=60)
    seen += out
    # The signal usually lands mid-run (130); on a fast machine the run may have finished.
    assert proc.returncode in (0, 130), seen + err
    if proc.returncode == 130:
        assert "interrupted: the workers and Redis were stopped" in seen
    _assert_stopped(tmp_path, seen)


def test_embedded_redis_reuses_data_and_guards_its_directory(tmp_path: Path) -> None:
    with EmbeddedRedis(tmp_path) as server, server.client() as client:
        assert server.version.startswith("7.")
        client.set("kept", "yes")
        with pytest.raises(EmbeddedRedisError, match="in use by another process"):
            EmbeddedRedis(tmp_path).start()
    with EmbeddedRedis(tmp_path) as server, server.client() as client:
        assert client.get("kept") == b"yes"


def test_embedded_redis_says_how_to_install_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(EmbeddedRedisError, match="make setup"):
        EmbeddedRedis(tmp_path).start()
