from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "numpy", "boto3", "botocore", "zstandard", "rich", "memstream.workers",
         "memstream.projections", "memstream.tiering", "memstream.integrations",
         "langchain", "langchain_core", "langgraph")  # fmt: skip


def test_importing_producers_stays_light() -> None:
    code = (
        "import sys, json, memstream.producers as m; "
        "m.Producer; m.AsyncProducer; "
        "print(json.dumps(sorted(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    heavy = [m for m in loaded if m.startswith(HEAVY)]
    assert heavy == []
    assert "redis" in loaded and "msgpack" in loaded and "pydantic" in loaded


def test_importing_integrations_pulls_in_no_framework() -> None:
    # The adapters import their framework lazily: the package itself stays light.
    code = "import sys, json, memstream.integrations; print(json.dumps(sorted(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    loaded = json.loads(out.stdout)
    assert "memstream.integrations" in loaded
    assert [m for m in loaded if m.startswith(("langchain", "langchain_core", "langgraph"))] == []


def test_integrations_load_their_adapter_on_first_access() -> None:
    import memstream.integrations as integrations

    for name in integrations.__all__:
        assert getattr(integrations, name).__name__ == name
