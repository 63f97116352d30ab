"""Build the wheel, install it into a fresh venv, and import the producer from there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path, redis_url: str) -> None:
    dist = tmp_path / "dist"
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist), str(ROOT)],
        check=True,
    )
    [wheel] = dist.glob("memstream-*.whl")
    names = set(zipfile.ZipFile(wheel).namelist())
    for expected in (
        "memstream/producers/__init__.py",
        "memstream/producers/lua/append.lua",
        "memstream/workers/cli.py",
        "memstream/projections/__init__.py",
        "memstream/tiering/__init__.py",
        "memstream/producers/py.typed",
    ):
        assert expected in names, expected
    assert not any(n.startswith(("tests/", "bench/", "producers/")) for n in names)
    entry_points = next(n for n in names if n.endswith("entry_points.txt"))
    assert (
        "memstream = memstream.workers.cli:main"
        in zipfile.ZipFile(wheel).read(entry_points).decode()
    )

    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    py = venv / "bin" / "python"
    subprocess.run([str(py), "-m", "pip", "install", "-q", str(wheel)], check=True)
    code = (
        "import sys, memstream.producers as m; "
        "assert 'torch' not in sys.modules and 'numpy' not in sys.modules; "
        "print(m.__file__)"
    )
    out = subprocess.run(
        [str(py), "-c", code], cwd=tmp_path, capture_output=True, text=True, check=True
    )
    assert str(venv) in out.stdout

    _cli_from_the_plain_install(venv, redis_url)


def _cli_from_the_plain_install(venv: Path, redis_url: str) -> None:
    """A plain install is the light producer; its CLI still runs, and a command that
    needs an extra says which one instead of crashing on an import."""
    cli = str(venv / "bin" / "memstream")

    def run(*argv: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([cli, *argv], check=False, capture_output=True, text=True, timeout=60)

    assert run("--version").stdout.startswith("memstream ")
    assert "quick start" in run("--help").stdout
    init = run("init", "--redis-url", redis_url, "--partitions", "4")
    assert init.returncode == 0, init.stderr
    assert "memstream initialised" in init.stdout
    for argv in (("status", "--redis-url", redis_url), ("demo",)):
        proc = run(*argv)
        assert "Traceback" not in proc.stderr, proc.stderr
        if proc.returncode != 0:
            assert proc.returncode == 2, proc.stderr
            assert "pip install 'memstream[workers]'" in proc.stderr, proc.stderr
