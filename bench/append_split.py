"""Where one ``Producer.append`` spends its time, measured in situ, call by call.

    .venv/bin/python bench/append_split.py [--n N]

One private redis-server; every iteration runs each of these once, in a rotating order,
and the p50 of each is printed:

* ``bare_xadd`` / ``bare_fcall``: the raw XADD and the planned ``FCALL ms_append`` over a
  plain socket with hiredis (no redis-py): the wire and the server alone;
* ``raw_xadd`` / ``fcall``: the same two through redis-py's ``execute_command``;
* ``append``: ``Producer.append`` of the same event (plan, deadline, send, receipt);
* ``prepare``: ``prepare_one`` alone (validate, redact, encode), *between* the round
  trips, so that it runs with the caches the calls leave behind, as it does in a
  producer that appends one event at a time. ``prepare_hot`` is the same in a tight
  loop afterwards, the figure a microbenchmark gives.

The differences read: ``bare_fcall - bare_xadd`` is the server's extra (Lua) cost,
``fcall - bare_fcall`` redis-py's, ``append - fcall`` the producer's own.
"""

from __future__ import annotations

import argparse
import socket
import statistics
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import hiredis

from bench.append import OWNER, SESSION, message, raw_fields
from bench.common import BenchRedis
from memstream.producers import Append, Producer
from memstream.producers.core import prepare_one
from memstream.workers.deploy import init


def bare_client(port: int) -> Callable[[tuple[Any, ...]], object]:
    """A round trip over a plain TCP socket, packed and parsed by hiredis."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    reader = hiredis.Reader()

    def send(command: tuple[Any, ...]) -> object:
        sock.sendall(hiredis.pack_command(command))
        while True:
            reply = reader.gets()
            if reply is not False:
                return reply
            chunk = sock.recv(65536)
            if not chunk:
                raise ConnectionError("redis-server closed the connection")
            reader.feed(chunk)

    return send


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--n", type=int, default=3000, help="iterations")
    args = parser.parse_args(argv)
    events = [message(i) for i in range(64)]
    commands = [raw_fields(e, i) for i, e in enumerate(events)]
    with BenchRedis() as server:
        init(server.client(), partitions=16)
        producer = Producer.from_url(server.url)
        raw = server.client()
        core = producer.core()
        # Planned afresh for every call: each carries a new eid, as an append does (a
        # repeated eid would be answered from its dedup record, writing nothing).
        planned = [
            [core.plan(Append(OWNER, events[i % 64], SESSION)).command for i in range(args.n)]
            for _ in range(2)
        ]
        bare = bare_client(server.port)
        red, ct = producer.redactor, producer.ct

        tests: dict[str, Callable[[int], object]] = {
            "bare_xadd": lambda i: bare(commands[i % 64]),
            "bare_fcall": lambda i: bare(planned[0][i]),
            "raw_xadd": lambda i: raw.execute_command(*commands[i % 64]),  # type: ignore[no-untyped-call]
            "fcall": lambda i: producer.client.execute_command(*planned[1][i]),  # type: ignore[no-untyped-call]
            "append": lambda i: producer.append(OWNER, events[i % 64], session=SESSION),
            "prepare": lambda i: prepare_one(
                OWNER, events[i % 64], SESSION, None, redactor=red, ct=ct
            ),
        }
        names = list(tests)
        samples: dict[str, list[float]] = {name: [] for name in names}
        clock = time.perf_counter_ns
        for i in range(args.n):
            shift = i % len(names)
            for name in names[shift:] + names[:shift]:
                t0 = clock()
                tests[name](i)
                samples[name].append((clock() - t0) / 1e3)
        hot = []
        for i in range(args.n):
            t0 = clock()
            prepare_one(OWNER, events[i % 64], SESSION, None, redactor=red, ct=ct)
            hot.append((clock() - t0) / 1e3)
        samples["prepare_hot"] = hot
        producer.close()
        raw.close()
    skip = args.n // 10  # warm-up
    p50 = {name: statistics.median(values[skip:]) for name, values in samples.items()}
    for name, value in p50.items():
        print(f"{name:12s} p50 {value:8.1f} us")
    print(
        f"server extra (bare_fcall - bare_xadd) {p50['bare_fcall'] - p50['bare_xadd']:+.1f} us; "
        f"redis-py (fcall - bare_fcall) {p50['fcall'] - p50['bare_fcall']:+.1f} us; "
        f"producer (append - fcall) {p50['append'] - p50['fcall']:+.1f} us; "
        f"append - raw_xadd {p50['append'] - p50['raw_xadd']:+.1f} us"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
