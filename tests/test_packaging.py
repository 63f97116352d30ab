"""Build the wheel, install it into a fresh venv, and import the producer from there."""

from __future__ import annotations

import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).parents[1]


def test_wheel_installs_and_imports_in_a_fresh_venv(tmp_path: Path) -> None:
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
