"""The front door: every name in a subpackage's ``__all__`` imports, and
``memstream --version`` agrees with ``memstream.producers.__version__``."""

from __future__ import annotations

import importlib
import inspect
import subprocess
import sys

import pytest

SUBPACKAGES = (
    "memstream.producers",
    "memstream.projections",
    "memstream.workers",
    "memstream.tiering",
    "memstream.integrations",
)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_every_name_in_all_imports(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        pytest.fail(f"{name} does not exist ({e}); every subpackage must have a front door")
    exported = getattr(module, "__all__", None)
    assert exported, f"{name} has no __all__"
    assert len(set(exported)) == len(exported), f"{name}.__all__ has duplicates"
    missing = [attr for attr in exported if not hasattr(module, attr)]
    assert missing == [], f"{name}.__all__ promises names it does not have: {missing}"
    for attr in exported:
        value = getattr(module, attr)
        # A re-export, not a stray import: it is defined inside memstream.
        owner = getattr(value, "__module__", None)
        if owner is not None and (inspect.isclass(value) or inspect.isfunction(value)):
            assert owner.startswith("memstream."), (name, attr, owner)


@pytest.mark.parametrize("name", SUBPACKAGES)
def test_star_import_gives_exactly_all(name: str) -> None:
    try:
        module = importlib.import_module(name)
    except ModuleNotFoundError as e:
        pytest.fail(f"{name} does not exist ({e})")
    namespace: dict[str, object] = {}
    exec(f"from {name} import *", namespace)
    namespace.pop("__builtins__", None)
    assert sorted(namespace) == sorted(module.__all__)


def test_version_matches_the_cli() -> None:
    import memstream.producers as producers

    out = subprocess.run(
        [sys.executable, "-m", "memstream.workers.cli", "--version"],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert out.stdout.split() == ["memstream", producers.__version__]
    assert producers.__version__[0].isdigit()
