"""The load side of ``bench/freshness.py``: paced producer processes and sampled waits.

:func:`run_rate` starts ``P`` producer processes that share one schedule (event ``i`` due
at ``start + i / rate``, sent by process ``i % P``), each sending from :data:`SENDERS`
threads, single ``Producer.append`` calls or, with ``batch > 1``, ``append_many`` of
``batch`` consecutive events of a thread's share per call (one round trip for several
events: the way to reach 5,000/s when single appends cost more client CPU than the
cores give). Every :data:`SAMPLE_EVERY`-th event is waited for with
``AsyncReader.wait`` on a loop thread; its freshness is append start -> ``wait`` return.
The report and the trace live in ``bench/freshness.py``.
"""

from __future__ import annotations

import asyncio
import math
import multiprocessing
import os
import sys
import threading
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.append import message
from bench.common import percentile
from memstream.producers.producer import Producer
from memstream.projections.reader import AsyncReader
from memstream.projections.waiter import ChangeWaiter, wait_for

SAMPLE_EVERY = 10
"""Every this many appends, one is waited for with ``AsyncReader.wait``."""

SENDERS = 2
"""Sender threads per producer process sharing its pace, so one slow append does not
hold up the schedule."""

PER_PRODUCER = 1000
"""Events per second one producer process is asked for (``--producers`` default)."""


def owner(i: int, owners: int) -> tuple[str, str]:
    k = i % owners
    return f"bench-user-{k:03d}", f"sess-{k:03d}"


def owner_event(i: int, owners: int) -> tuple[str, Any, str]:
    """Event ``i`` as an ``append_many`` item: ``(owner, event, session)``."""
    who, session = owner(i, owners)
    return who, message(i), session


# --- one producer process ---------------------------------------------------------------


def _share(
    url: str, rate: int, total: int, owners: int, k: int, procs: int, mode: str,
    trace: bool, batch: int, pipe: Connection,
) -> dict[str, Any]:  # fmt: skip
    """Send events ``k, k + procs, ...`` of the schedule from :data:`SENDERS` threads,
    each with its own blocking ``Producer`` (about 40% less CPU per append than the
    asyncio client); the sampled ones are waited for by one ``AsyncReader`` on a loop
    thread, so a wait never holds up a send."""
    loop = asyncio.new_event_loop()
    runner = threading.Thread(target=loop.run_forever, daemon=True)
    runner.start()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop)

    async def open_reader() -> tuple[AsyncReader, ChangeWaiter | None]:
        reader = AsyncReader.from_url(url)
        waiter = ChangeWaiter(reader.settings) if mode == "event" else None
        if waiter is not None and trace:
            waiter.arrivals = {}
        return reader, waiter

    reader, waiter = on_loop(open_reader()).result()
    samples: list[tuple[str, str, str, float, float, float]] = []
    late: list[float] = []
    waits: list[Any] = []

    async def visible(sent: float, acked: float, receipt: Any) -> None:
        await wait_for(reader, waiter, receipt, 10.0)
        samples.append((receipt.feed_id, receipt.owner, receipt.log_id, sent, acked,
                        time.monotonic()))  # fmt: skip

    producers = [Producer.from_url(url) for _ in range(SENDERS)]
    # warm: connections, the deployment cache, the producer core, the subscriptions
    for p in range(min(owners, 64)):
        who, session = owner(p, owners)
        receipt = producers[p % SENDERS].append(who, message(p), session=session)
        on_loop(wait_for(reader, waiter, receipt, 10.0)).result()
    pipe.send("ready")
    start: float = pipe.recv()
    cpu0 = time.process_time()

    def sender(j: int) -> None:
        producer = producers[j]
        share = range(k + procs * j, total, procs * SENDERS)
        for c in range(0, len(share), batch):
            group = share[c : c + batch]
            # A group is due when its last event is: the asked rate is never exceeded,
            # and each event's freshness still starts at its own send.
            delay = start + group[-1] / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                late.append(-delay)
            sent = time.monotonic()
            if batch == 1:
                who, session = owner(group[0], owners)
                receipts = [producer.append(who, message(group[0]), session=session)]
            else:
                receipts = producer.append_many([owner_event(i, owners) for i in group])
            acked = time.monotonic()
            for i, receipt in zip(group, receipts, strict=True):
                if i % SAMPLE_EVERY == 0:
                    waits.append(on_loop(visible(sent, acked, receipt)))

    threads = [threading.Thread(target=sender, args=(j,)) for j in range(SENDERS)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    last_sent = time.monotonic()
    for w in waits:
        w.result()
    cpu = time.process_time() - cpu0
    arrivals = waiter.arrivals if waiter is not None and waiter.arrivals else {}

    async def close() -> None:
        if waiter is not None:
            await waiter.aclose()
        await reader.aclose()

    on_loop(close()).result()
    loop.call_soon_threadsafe(loop.stop)
    runner.join(timeout=5)
    loop.close()
    for producer in producers:
        producer.close()
    return {
        "samples": samples,
        "arrivals": [[o, lid, t] for (o, lid), t in arrivals.items()],
        "late": late,
        "last_sent": last_sent,
        "cpu_s": cpu,
    }


def _child(
    url: str, rate: int, total: int, owners: int, k: int, procs: int, mode: str,
    trace: bool, batch: int, pipe: Connection,
) -> None:  # fmt: skip
    pipe.send(_share(url, rate, total, owners, k, procs, mode, trace, batch, pipe))
    pipe.close()


# --- one rate ----------------------------------------------------------------------------


def run_rate(
    url: str, rate: int, seconds: float, owners: int, *, producers: int = 0,
    mode: str = "event", trace: bool = False, watch_pids: Sequence[int] = (),
    stats: Any = None, batch: int = 1,
) -> dict[str, Any]:  # fmt: skip
    """Append at ``rate``/s for ``seconds`` from ``producers`` processes (0: one per
    :data:`PER_PRODUCER`/s, or one per ``batch * PER_PRODUCER``/s with ``append_many``
    of ``batch`` events a call) and time the sampled events; the figures as a dict.
    ``stats``: a client whose server's command counters are reset when the schedule
    starts (after the producers' warm-up)."""
    procs = producers or max(1, math.ceil(rate / (PER_PRODUCER * batch)))
    total = int(rate * seconds)
    ctx = multiprocessing.get_context("spawn")
    pipes, children = [], []
    for k in range(procs):
        ours, theirs = ctx.Pipe()
        args = (url, rate, total, owners, k, procs, mode, trace, batch, theirs)
        child = ctx.Process(target=_child, args=args, daemon=True)
        child.start()
        pipes.append(ours)
        children.append(child)
    for pipe in pipes:
        if pipe.recv() != "ready":
            raise RuntimeError("a producer process failed to start")
    cpu0 = {pid: _cpu_s(pid) for pid in watch_pids}
    if stats is not None:
        stats.config_resetstat()
    start = time.monotonic() + 0.2
    for pipe in pipes:
        pipe.send(start)
    results = [pipe.recv() for pipe in pipes]
    for child in children:
        child.join(timeout=30)
    end = max(r["last_sent"] for r in results)
    elapsed = end - start
    cpu = {pid: (_cpu_s(pid) - cpu0[pid]) / elapsed for pid in watch_pids}
    samples = [s for r in results for s in r["samples"]]
    lat = [done - sent for _, _, _, sent, _, done in samples]
    late = [x for r in results for x in r["late"]]
    return {
        "mode": mode,
        "rate_target": float(rate),
        "rate_achieved": total / elapsed,
        "producers": float(procs),
        "batch": float(batch),
        "events": float(total),
        "samples": float(len(lat)),
        "p50_s": percentile(lat, 50),
        "p99_s": percentile(lat, 99),
        "max_s": max(lat),
        "late_sends": float(len(late)),
        "late_p99_s": percentile(late, 99) if late else 0.0,
        "producer_cpu": sum(r["cpu_s"] for r in results) / elapsed,
        "cpu": {str(pid): c for pid, c in cpu.items()},
        "raw_samples": samples,
        "arrivals": [a for r in results for a in r["arrivals"]],
    }


def _cpu_s(pid: int) -> float:
    """User + system CPU seconds of process ``pid`` so far (Linux ``/proc``)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return math.nan
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def paced(url: str, rate: int, seconds: float, owners: int) -> dict[str, float]:
    """:func:`run_rate` from a coroutine (``bench/workers.py``'s freshness phase)."""
    found = await asyncio.to_thread(run_rate, url, rate, seconds, owners)
    return {k: v for k, v in found.items() if isinstance(v, float)}
