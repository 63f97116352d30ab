"""Cost of the worker's metrics recording per applied batch, old counters vs new.

    .venv/bin/python bench/metrics.py [--batches N] [--old PATH]

``--old`` is the previous ``workers/metrics.py`` (``git show <rev>:workers/metrics.py >
PATH``): its ``Metrics.record`` (plain counters) is the baseline, timed in the same run as
the new one (counters by type, batch-size and apply histograms, the plan histogram,
under a lock). Each batch is a 200-entry outcome with three event types. The figure to
compare them against is a batch's ``ms_apply`` round trip: milliseconds.
"""

from __future__ import annotations

import argparse
import importlib.util
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

from memstream.workers.metrics import Metrics


@dataclass
class Outcome:
    applied: int = 198
    dead: int = 1
    unknown: int = 1
    by_type: dict[tuple[str, str], int] = field(
        default_factory=lambda: {("message.appended", "applied"): 150,
                                 ("step.recorded", "applied"): 48,
                                 ("custom.x", "unknown"): 1, ("", "dead"): 1}
    )  # fmt: skip


def per_batch_us(record: object, batches: int) -> float:
    outcome = Outcome()
    start = time.perf_counter()
    for _ in range(batches):
        record(outcome)  # type: ignore[operator]
    return (time.perf_counter() - start) / batches * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--batches", type=int, default=200_000)
    ap.add_argument("--old", type=Path, required=True)
    args = ap.parse_args()
    spec = importlib.util.spec_from_file_location("old_metrics", args.old)
    assert spec is not None and spec.loader is not None
    old = importlib.util.module_from_spec(spec)
    sys.modules["old_metrics"] = old  # dataclasses look their module up while building
    spec.loader.exec_module(old)
    old_m, new_m = old.Metrics(), Metrics()

    def old_record(o: Outcome) -> None:
        old_m.record(o, 199, 0.002)

    def new_record(o: Outcome) -> None:
        new_m.observe_plan(0.001)
        new_m.record(o, 199, 0.002, apply_s=0.0015)

    rounds = [(per_batch_us(old_record, args.batches), per_batch_us(new_record, args.batches))
              for _ in range(3)]  # fmt: skip
    base = sorted(r[0] for r in rounds)[1]
    new = sorted(r[1] for r in rounds)[1]
    print(f"old record: {base:.2f} us/batch; new record + plan: {new:.2f} us/batch "
          f"({new / base:.1f}x); median of 3 rounds of {args.batches} batches")  # fmt: skip


if __name__ == "__main__":
    main()
