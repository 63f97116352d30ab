"""The command line as an operator meets it: one line and a hint, never a traceback."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import redis

from memstream.workers.cli import build_parser, main, version
from memstream.workers.cli_errors import explain
from tests.redis_server import RedisServer, free_port


def _run(*argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "memstream.workers.cli", *argv],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )


def _one_error(proc: subprocess.CompletedProcess[str]) -> str:
    """The error output is the one ``memstream:`` line and a hint, nothing else."""
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 2, proc.stderr
    assert lines[0].startswith("memstream: ") and lines[1].startswith("hint: ")
    return proc.stderr


def test_version() -> None:
    proc = _run("--version")
    assert proc.returncode == 0
    assert proc.stdout.strip() == f"memstream {version()}"
    assert version()[0].isdigit()


def test_unreachable_redis_is_one_line_with_the_address() -> None:
    port = free_port()
    proc = _run("status", "--redis-url", f"redis://127.0.0.1:{port}/0")
    assert proc.returncode == 1
    assert f"cannot reach Redis at 127.0.0.1:{port}" in _one_error(proc)


def test_non_numeric_port_is_a_configuration_error() -> None:
    proc = _run("status", "--redis-url", "redis://127.0.0.1:port/0")
    assert proc.returncode == 2
    assert "--redis-url" in _one_error(proc)


def test_unknown_scheme_is_a_configuration_error() -> None:
    proc = _run("status", "--redis-url", "http://127.0.0.1:6379/0")
    assert proc.returncode == 2
    assert "redis_url" in _one_error(proc)


@pytest.fixture(scope="module")
def locked_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    server = RedisServer(Path(tmp_path_factory.mktemp("locked")))
    admin = redis.Redis(port=server.port)
    admin.config_set("requirepass", "s3cret-pw")
    admin.acl_setuser("reader-only", enabled=True, passwords=["+readerpw"], commands=["+ping"])
    admin.close()
    yield server
    server.stop()


def test_wrong_password_names_the_user_and_never_the_password(locked_server: RedisServer) -> None:
    url = f"redis://bob:not-the-password@127.0.0.1:{locked_server.port}/0"
    proc = _run("status", "--redis-url", url)
    assert proc.returncode == 1
    text = _one_error(proc)
    assert "refused the password" in text and "'bob'" in text
    assert "not-the-password" not in text and "s3cret-pw" not in text


def test_user_without_rights_is_told_so(locked_server: RedisServer) -> None:
    url = f"redis://reader-only:readerpw@127.0.0.1:{locked_server.port}/0"
    proc = _run("status", "--redis-url", url)
    assert proc.returncode == 1
    text = _one_error(proc)
    assert "denied" in text and "reader-only" in text and "readerpw" not in text


def test_debug_shows_the_traceback() -> None:
    port = free_port()
    proc = _run("--debug", "status", "--redis-url", f"redis://127.0.0.1:{port}/0")
    assert proc.returncode == 1
    assert "Traceback" in proc.stderr
    after = _run("status", "--debug", "--redis-url", f"redis://127.0.0.1:{port}/0")
    assert "Traceback" in after.stderr


def test_missing_extra_names_what_to_install() -> None:
    args = build_parser().parse_args(["status"])
    code, line, hint = explain(ModuleNotFoundError("No module named 'rich'", name="rich"), args)
    assert code == 2
    assert "`memstream status` needs rich" in line
    assert hint == "pip install 'memstream[workers]'"


def test_a_bug_is_reported_in_one_line() -> None:
    args = build_parser().parse_args(["status"])
    code, line, hint = explain(KeyError("oops"), args)
    assert code == 1 and line.startswith("unexpected error: KeyError")
    assert "--debug" in hint


def test_not_initialised_hints_init(redis_url: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["status", "--redis-url", redis_url]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "memstream init" in err


def _option_actions(parser: object) -> list[tuple[str, object]]:
    import argparse

    assert isinstance(parser, argparse.ArgumentParser)
    found: list[tuple[str, object]] = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, child in action.choices.items():
                found += [(f"{name} {n}", a) for n, a in _option_actions(child)]
        elif not isinstance(action, argparse._HelpAction):
            found.append((parser.prog, action))
    return found


def test_every_option_has_help_text() -> None:
    missing = [
        f"{where}: {'/'.join(action.option_strings) or action.dest}"  # type: ignore[attr-defined]
        for where, action in _option_actions(build_parser())
        if not action.help  # type: ignore[attr-defined]
    ]
    assert missing == []


def test_top_level_help_is_for_users() -> None:
    proc = _run("--help")
    assert proc.returncode == 0
    assert "quick start" in proc.stdout and "memstream demo" in proc.stdout
    assert "add_parser" not in proc.stdout
