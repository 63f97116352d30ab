"""Append benchmark: memstream's producer against raw redis-py XADD on the same server.

    .venv/bin/python bench/append.py [--n N] [--latency-n N] [--rounds R] [--json PATH]

One private redis-server (no persistence) serves both sides, on the same pre-built
``message.appended`` payloads (the stored ``data`` bytes are checked to be identical).
Every round interleaves the sides finely, so that both see the same machine: throughput
chunk by chunk (1,000 events), latency call by call, in an order that rotates; the figure
reported is the median over rounds. Absolute rates on a small shared machine are noise,
so the verdicts are on ratios:

* throughput: ``Producer.append_many`` (pipelined ``FCALL ms_append``) over raw pipelined
  XADD of the same fields, target >= 0.5;
* latency: p50 of one ``Producer.append`` over p50 of one raw XADD, target <= 1.5.

Two "send only" figures split the producer's cost: the same FCALLs planned beforehand,
so what remains is the wire and the server; the difference is ``plan()`` (validate,
redact, encode) and the receipt. ``--pin same|split`` pins client and server to one CPU
or two, which makes single-call latency repeatable on a small VM.

The exit status is 0 whether or not the targets are met; a MISS is printed, not raised.
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    # Run as a script (`python bench/append.py`): make `bench` importable from the repo root.
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import redis

from bench.append_report import CHUNK, summarise
from bench.common import (
    PIN_MODES,
    BenchRedis,
    Report,
    Target,
    median,
    note,
    percentile,
    pin,
    progress,
    run_and_report,
)
from bench.redis_context import redis_benchmark
from memstream.producers import Append, MessageAppended, Producer, keys, many
from memstream.producers.codec import encode
from memstream.producers.core import prepare
from memstream.workers.deploy import init

OWNER = "bench-user-42"
SESSION = "sess-20261121-a"
RAW_STREAM = "bench:raw"

DISTINCT = 64
"""Distinct payloads, cycled: enough that nothing is a single cached object."""

_SENTENCES = (
    "I checked the deployment logs for the payment service and the retries line up with ",
    "the connection pool running dry around the nightly batch window; raising the pool ",
    "size to 64 and adding jitter to the backoff should stop the thundering herd. ",
    "Next I will compare the p99 latency before and after the change on staging. ",
)


def message(i: int) -> MessageAppended:
    """A realistic chat turn: about 200 bytes of content plus the usual metadata."""
    text = "".join(_SENTENCES)
    start = (i * 37) % (len(text) - 200)
    content = f"[{i:04d}] " + text[start : start + 193]
    return MessageAppended(
        role="assistant" if i % 2 else "user",
        content=content,
        meta={"model": "gpt-4o-mini", "tokens": 48 + i % 17, "latency_ms": 640 + i},
    )


def rebuild(event: Any) -> MessageAppended:
    """A new message event from the values a caller holds (what append_message builds)."""
    return MessageAppended(role=event.role, content=event.content, meta=event.meta)


def raw_fields(event: MessageAppended, i: int) -> tuple[Any, ...]:
    """The same fields ``ms_append`` stores, encoded once: the cheapest honest XADD."""
    data = encode(event.payload(), "msgpack")
    eid = f"{i:024x}"
    return (
        "XADD", RAW_STREAM, "*",
        "type", event.event_type, "v", str(event.VERSION), "ct", "msgpack",
        "data", data, "session", SESSION, "eid", eid,
    )  # fmt: skip


def check_same_payload(
    client: redis.Redis, producer: Producer, event: MessageAppended, command: tuple[Any, ...]
) -> None:
    """Fail loudly if the producer would store other bytes than the raw baseline sends."""
    receipt = producer.append(OWNER, event, session=SESSION)
    entries: Any = client.xrange(keys.log(receipt.partition, OWNER), receipt.log_id, receipt.log_id)
    stored = entries[0][1]
    sent = dict(zip(command[3::2], command[4::2], strict=True))
    for field in ("type", "v", "ct", "data", "session"):
        value = sent[field]
        if stored[field.encode()] != (value if isinstance(value, bytes) else value.encode()):
            raise RuntimeError(f"raw baseline and producer differ in field {field!r}")


# --- throughput ---------------------------------------------------------------------


def raw_many(client: redis.Redis, commands: Sequence[tuple[Any, ...]], n: int) -> float:
    """Pipelined XADD, chunks of ``CHUNK``; returns events per second."""
    k = len(commands)
    t0 = time.perf_counter()
    for start in range(0, n, CHUNK):
        pipe = client.pipeline(transaction=False)
        for i in range(start, min(start + CHUNK, n)):
            pipe.execute_command(*commands[i % k])  # type: ignore[no-untyped-call]
        pipe.execute()
    return n / (time.perf_counter() - t0)


SIDES = ("raw", "memstream", "send_only")


def throughput_round(
    raw: redis.Redis,
    producer: Producer,
    commands: Sequence[tuple[Any, ...]],
    items: list[Append],
    round_no: int,
    advance: Callable[[], None],
) -> tuple[dict[str, float], float]:
    """One round, interleaved chunk by chunk so that every side sees the same machine.

    For each ``CHUNK`` of events, in an order that rotates with the chunk: raw pipelined
    XADD; ``append_many`` over the chunk; and the same chunk split in two halves, ``plan()``
    of every item, then sending the planned commands ("send only"). Returns events per
    second of each side and seconds of ``plan()`` per event.
    """
    core = producer.core()
    spent = dict.fromkeys(SIDES, 0.0)
    planning = 0.0
    clock = time.perf_counter
    for c, start in enumerate(range(0, len(items), CHUNK)):
        chunk = items[start : start + CHUNK]
        shift = (c + round_no) % len(SIDES)
        for side in SIDES[shift:] + SIDES[:shift]:
            if side == "raw":
                t0 = clock()
                pipe = raw.pipeline(transaction=False)
                for i in range(start, start + len(chunk)):
                    pipe.execute_command(*commands[i % len(commands)])  # type: ignore[no-untyped-call]
                pipe.execute()
                spent[side] += clock() - t0
            elif side == "memstream":
                t0 = clock()
                receipts = producer.append_many(chunk)
                spent[side] += clock() - t0
                assert len(receipts) == len(chunk)
            else:
                # The client work of append_many from the caller's values: build each
                # message event, validate, redact, encode, aim it; then send the calls.
                t0 = clock()
                built = [Append(item.owner, rebuild(item.event), item.session) for item in chunk]
                prepared = [prepare(a, producer.redactor, producer.ct) for a in built]
                trips = many.plan_calls(core, prepared)
                t1 = clock()
                for trip in trips:
                    pipe = producer.client.pipeline(transaction=False)
                    for call in trip:
                        pipe.execute_command(*call.command)  # type: ignore[no-untyped-call]
                    pipe.execute()
                planning += t1 - t0
                spent[side] += clock() - t1
        advance()
    return {side: len(items) / t for side, t in spent.items()}, planning / len(items)


# --- latency ------------------------------------------------------------------------


def sender(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> Callable[[int], object]:
    """Send the ``i``-th pre-planned command: the round trip without ``plan()``."""

    def send(i: int) -> object:
        return client.execute_command(*commands[i])  # type: ignore[no-untyped-call]

    return send


def timed_calls(calls: Sequence[Callable[[int], object]], n: int) -> list[list[float]]:
    """Run every call ``n`` times, interleaved call by call; seconds per call for each."""
    samples: list[list[float]] = [[] for _ in calls]
    clock = time.perf_counter_ns
    for i in range(n):
        for j, call in enumerate(calls):
            t0 = clock()
            call(i)
            samples[j].append((clock() - t0) / 1e9)
    return samples


# --- server-side cost ----------------------------------------------------------------


def server_usec_per_call(
    client: redis.Redis,
    producer: Producer,
    commands: Sequence[tuple[Any, ...]],
    items: list[Append],
) -> dict[str, float]:
    """Redis's own accounting of each side, measured apart so inner calls do not mix."""

    def stats() -> dict[str, Any]:
        info: Any = client.info("commandstats")
        return dict(info)

    client.config_resetstat()
    raw_many(client, commands, len(items))
    raw = stats().get("cmdstat_xadd", {})
    client.config_resetstat()
    producer.append_many(items)
    after = stats()
    fcall = after.get("cmdstat_fcall", {})
    core = producer.core()
    singles = [core.plan(item).command for item in items]
    client.config_resetstat()
    for command in singles:
        client.execute_command(*command)  # type: ignore[no-untyped-call]
    one = stats().get("cmdstat_fcall", {})
    return {
        "raw_xadd_usec_per_call": float(raw.get("usec_per_call", "nan")),
        "ms_append_many_usec_per_event": float(fcall.get("usec", "nan")) / len(items),
        "ms_append_many_calls": float(fcall.get("calls", 0)),
        "ms_append_usec_per_call": float(one.get("usec_per_call", "nan")),
        "inner_xadd_usec_per_call": float(
            after.get("cmdstat_xadd", {}).get("usec_per_call", "nan")
        ),
        "inner_xadd_calls": float(after.get("cmdstat_xadd", {}).get("calls", 0)),
    }


# --- main ---------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n", 1)[0])
    parser.add_argument("--n", type=int, default=20_000, help="events per throughput run")
    parser.add_argument("--latency-n", type=int, default=5_000, help="calls per latency run")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (median)")
    parser.add_argument("--warmup", type=int, default=500, help="untimed calls of each kind")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument(
        "--pin",
        choices=PIN_MODES,
        default="none",
        help="CPU pinning of client and server: none (default), same CPU, split over two",
    )
    parser.add_argument(
        "--no-redis-benchmark", action="store_true", help="skip the redis-benchmark context"
    )
    parser.add_argument(
        "--history",
        default=None,
        help="comma-separated session lengths: measure append and history(last=20) p50 "
        "at each instead (bench/append_history.py)",
    )
    args = parser.parse_args(argv)
    if args.n < 1 or args.latency_n < 1 or args.rounds < 1 or args.warmup < 0:
        parser.error("--n, --latency-n and --rounds must be >= 1, --warmup >= 0")
    return args


def run(args: argparse.Namespace) -> tuple[Report, list[Target]]:
    events = [message(i) for i in range(DISTINCT)]
    commands = [raw_fields(e, i) for i, e in enumerate(events)]
    payload_bytes = median([float(len(c[10])) for c in commands])
    items = [Append(OWNER, events[i % DISTINCT], SESSION) for i in range(args.n)]

    with BenchRedis() as server:
        setup = server.client()
        init(setup, partitions=16)
        raw = server.client()
        producer = Producer.from_url(server.url)
        check_same_payload(raw, producer, events[0], commands[0])
        pinning = pin(server.proc.pid, args.pin)
        note(
            f"redis-server {server.version} on port {server.port}; "
            f"{os.cpu_count()} CPUs, {pinning}; payload {payload_bytes:.0f} bytes msgpack"
        )

        def raw_one(i: int) -> object:
            return raw.execute_command(*commands[i % DISTINCT])  # type: ignore[no-untyped-call]

        def ms_one(i: int) -> object:
            return producer.append(OWNER, events[i % DISTINCT], session=SESSION)

        def ms_message(i: int) -> object:
            e = events[i % DISTINCT]
            return producer.append_message(OWNER, SESSION, e.role, e.content, meta=e.meta)

        rates: dict[str, list[float]] = {"raw": [], "memstream": [], "send_only": []}
        plan_s: list[float] = []
        lat: dict[str, list[dict[str, float]]] = {
            "raw": [],
            "append": [],
            "append_message": [],
            "send_only": [],
        }

        with progress() as bar:
            warm = bar.add_task("warm-up", total=2)
            for i in range(args.warmup):
                raw_one(i)
                ms_one(i)
                ms_message(i)
            bar.advance(warm)
            raw_many(raw, commands, min(args.n, 5 * CHUNK))
            producer.append_many(items[: 5 * CHUNK])
            bar.advance(warm)

            chunks = -(-args.n // CHUNK)
            thr = bar.add_task("throughput", total=chunks * args.rounds)
            lt = bar.add_task("latency", total=args.rounds)
            for r in range(args.rounds):
                gc.collect()
                round_rates, round_plan = throughput_round(
                    raw, producer, commands, items, r, lambda: bar.advance(thr)
                )
                for side, rate in round_rates.items():
                    rates[side].append(rate)
                plan_s.append(round_plan)
                gc.collect()
                core = producer.core()
                planned = [
                    core.plan(Append(OWNER, events[i % DISTINCT], SESSION)).command
                    for i in range(args.latency_n)
                ]

                calls: dict[str, Callable[[int], object]] = {
                    "raw": raw_one,
                    "append": ms_one,
                    "append_message": ms_message,
                    "send_only": sender(producer.client, planned),
                }
                names = list(calls)
                names = names[r % len(names) :] + names[: r % len(names)]
                timed = timed_calls([calls[name] for name in names], args.latency_n)
                for name, samples in zip(names, timed, strict=True):
                    lat[name].append(
                        {"p50": percentile(samples, 50), "p99": percentile(samples, 99)}
                    )
                bar.advance(lt)

            srv = bar.add_task("server cost", total=1)
            server_cost = server_usec_per_call(raw, producer, commands, items[: 5 * CHUNK])
            bar.advance(srv)
            rb: dict[str, float] = {}
            if not args.no_redis_benchmark:
                rbt = bar.add_task("redis-benchmark", total=1)
                rb = redis_benchmark(server.port, 50_000)
                bar.advance(rbt)

        producer.close()
        raw.close()
        setup.close()
        version = server.version

    args.pinning = pinning
    return summarise(args, version, payload_bytes, rates, plan_s, lat, server_cost, rb)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.history:
        from bench.append_history import run_history

        return run_and_report(run_history, args)
    return run_and_report(run, args)


if __name__ == "__main__":
    sys.exit(main())
