"""What ``wait_replicas=1`` costs an append: one node with one replica, both local.

    .venv/bin/python bench/wait.py [--appends N] [--rounds R]

Two private redis-servers (a primary and its replica, no persistence). One producer
appends ``save_state`` events one at a time, ``N`` per round, alternating in each round
between ``wait_replicas=0`` (the default: returns once the primary has it) and
``wait_replicas=1`` (the same call, then ``WAIT 1`` on the same connection), and
``append_many`` batches of 100 the same way. Reported: median appends/s of each over the
rounds and the ratio waited/unwaited from the same run. The replica is on the same
machine, so this is the least the option costs (a replica across a network adds its
round trip to every call). Exit status 0 whatever the outcome.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import BenchRedis, median, ratio
from memstream.producers import Producer
from memstream.producers.events import StateSaved
from memstream.workers.deploy import init


def _rate(url: str, wait: int, n: int, batch: int) -> float:
    with Producer.from_url(url, wait_replicas=wait) as producer:
        producer.save_state("warm", {"i": 0})
        started = time.perf_counter()
        if batch == 1:
            for i in range(n):
                producer.save_state(f"agent{i % 50}", {"i": i})
        else:
            for start in range(0, n, batch):
                producer.append_many(
                    [
                        (f"agent{i % 50}", StateSaved(state={"i": i}))
                        for i in range(start, start + batch)
                    ]
                )
        return n / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--appends", type=int, default=3000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with BenchRedis() as primary, BenchRedis("--replicaof", "127.0.0.1", "0") as replica:
        with replica.client() as c:
            c.replicaof("127.0.0.1", primary.port)
        with primary.client() as c:
            init(c, partitions=16)
            c.wait(1, 5000)
        for batch in (1, 100):
            rates: dict[int, list[float]] = {0: [], 1: []}
            for _ in range(args.rounds):
                for wait in (0, 1):
                    rates[wait].append(_rate(primary.url, wait, args.appends, batch))
            plain, waited = median(rates[0]), median(rates[1])
            kind = "append" if batch == 1 else "append_many(100)"
            print(f"{kind:18} wait_replicas=0 {plain:9.0f}/s  wait_replicas=1 {waited:9.0f}/s  "
                  f"ratio {ratio(waited, plain):.2f}  (median of {args.rounds} rounds, "
                  f"{args.appends} events each)")  # fmt: skip


if __name__ == "__main__":
    main()
