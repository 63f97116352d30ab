"""The README tells the truth: its Python examples run against a real redis-server and a
real worker process, it names every read model, and it links every page in docs/."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.workers_util import spawn_worker, stop_worker

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()
EXAMPLE_URL = "redis://localhost:6379/0"
READ_MODELS = ("history", "state", "sessions", "working memory", "episodes", "knowledge",
               "skills", "patterns", "search", "context", "world model", "tensors",
               "cold tier")  # fmt: skip


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README, flags=re.DOTALL)


def test_every_python_block_runs(deployed: str, tmp_path: Path) -> None:
    blocks = python_blocks()
    assert len(blocks) >= 4
    printed = []
    worker = spawn_worker(deployed, "wreadme", log=tmp_path / "w.log")
    try:
        for i, block in enumerate(blocks):
            assert EXAMPLE_URL in block, f"block {i} does not use the documented URL"
            code = block.replace(EXAMPLE_URL, deployed)
            out = subprocess.run(
                [sys.executable, "-c", code], check=False, capture_output=True, text=True,
                timeout=60, cwd=tmp_path,
            )  # fmt: skip
            assert out.returncode == 0, f"README block {i} failed:\n{block}\n{out.stderr}"
            assert out.stdout.strip(), f"README block {i} printed nothing"
            printed.append(out.stdout)
    finally:
        assert stop_worker(worker) == 0
    assert "Traceback" not in (tmp_path / "w.log").read_text()
    text = "\n".join(printed)
    # What the examples promise they read back, from the projections the worker built.
    for fragment in (
        "assistant Alfama, then Belem.",
        "'city': 'Lisbon'",
        "book a Lisbon trip",
        "'executions': 1",
        "late-checkin",
        "## Skills",
        "'no': ",
    ):
        assert fragment in text, (fragment, text)


@pytest.mark.parametrize("model", READ_MODELS)
def test_every_read_model_is_in_the_table(model: str) -> None:
    table = README[README.index("## Read models") :]
    assert re.search(rf"^\| {re.escape(model)} \|", table, flags=re.MULTILINE), model


def test_every_docs_page_is_linked() -> None:
    linked = set(re.findall(r"\]\((docs/[\w.-]+\.md)\)", README))
    pages = {f"docs/{p.name}" for p in (ROOT / "docs").glob("*.md")}
    assert sorted(pages - linked) == []
