"""``acall``: the asyncio deadline scope, spelled out like ``call``'s: the deadline in
force inside, the shorter outer deadline winning, retries of transient errors, the
deadline cutting a slow try short, and the scope reset afterwards."""

from __future__ import annotations

import asyncio
import time

import pytest
from redis import exceptions as rx

from memstream.producers import Settings
from memstream.producers.deadline import acall, current_deadline, deadline_scope
from memstream.producers.errors import RedisTimeoutError, RedisUnavailableError

SETTINGS = Settings(retries=3, backoff_base=0.001, backoff_cap=0.002)


async def test_the_deadline_is_in_force_inside_and_reset_after() -> None:
    async def inside() -> float | None:
        return current_deadline()

    before = time.monotonic()
    end = await acall(inside, SETTINGS, 2.0)
    assert end is not None and before + 2.0 <= end <= time.monotonic() + 2.0
    assert current_deadline() is None
    with deadline_scope(0.5) as outer:
        assert await acall(inside, SETTINGS, 5.0) == outer  # the shorter outer one wins
        assert current_deadline() == outer


async def test_a_transient_error_is_retried_then_the_result_returned() -> None:
    failures = [rx.ConnectionError("reset"), rx.ConnectionError("reset")]

    async def flaky() -> str:
        if failures:
            raise failures.pop()
        return "ok"

    assert await acall(flaky, SETTINGS, 2.0) == "ok" and failures == []

    async def down() -> str:
        raise rx.ConnectionError("refused")

    with pytest.raises(RedisUnavailableError):
        await acall(down, SETTINGS, 2.0)


async def test_a_slow_try_is_cut_at_the_deadline() -> None:
    async def slow() -> None:
        await asyncio.sleep(5)

    started = time.monotonic()
    with pytest.raises(RedisTimeoutError):
        await acall(slow, SETTINGS, 0.2)
    assert time.monotonic() - started < 1.5
    assert current_deadline() is None
