"""Freshness: append at a steady pace and time each sampled event until it is visible."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.append import message
from bench.common import percentile
from memstream.producers.producer import AsyncProducer
from memstream.projections.reader import AsyncReader

SAMPLE_EVERY = 10
"""Every this many appends, one is waited for with ``AsyncReader.wait``."""

SENDERS = 8
"""Asyncio tasks sharing the pace, so one slow append does not hold up the schedule."""


def owner(i: int, owners: int) -> tuple[str, str]:
    k = i % owners
    return f"bench-user-{k:03d}", f"sess-{k:03d}"


async def paced(url: str, rate: int, seconds: float, owners: int) -> dict[str, float]:
    """Append at ``rate``/s for ``seconds``; every SAMPLE_EVERY-th is waited for."""
    total = int(rate * seconds)
    lat: list[float] = []
    lateness: list[float] = []
    waits: set[asyncio.Task[None]] = set()
    async with AsyncProducer.from_url(url) as producer, AsyncReader.from_url(url) as reader:
        # warm: connections, the deployment cache, the producer core
        r = await producer.append(*owner(0, owners)[:1], message(0), session=owner(0, owners)[1])
        await reader.wait(r)

        async def visible(sent: float, receipt: Any) -> None:
            await reader.wait(receipt, timeout=10.0)
            lat.append(time.perf_counter() - sent)

        loop = asyncio.get_running_loop()
        t0 = loop.time() + 0.05

        async def sender(k: int) -> None:
            for i in range(k, total, SENDERS):
                due = t0 + i / rate
                delay = due - loop.time()
                if delay > 0:
                    await asyncio.sleep(delay)
                else:
                    lateness.append(-delay)
                who, session = owner(i, owners)
                sent = time.perf_counter()
                receipt = await producer.append(who, message(i), session=session)
                if i % SAMPLE_EVERY == 0:
                    t = asyncio.create_task(visible(sent, receipt))
                    waits.add(t)
                    t.add_done_callback(waits.discard)

        start = loop.time()
        await asyncio.gather(*(sender(k) for k in range(SENDERS)))
        elapsed = loop.time() - start
        while waits:
            await asyncio.gather(*list(waits))
    return {
        "rate_target": float(rate),
        "rate_achieved": total / elapsed,
        "events": float(total),
        "samples": float(len(lat)),
        "p50_s": percentile(lat, 50),
        "p99_s": percentile(lat, 99),
        "max_s": max(lat),
        "late_sends": float(len(lateness)),
    }
