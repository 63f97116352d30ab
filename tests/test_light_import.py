from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("torch", "numpy", "boto3", "botocore", "zstandard", "rich", "memstream.workers",
         "memstream.projections", "memstream.tiering")  # fmt: skip


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
