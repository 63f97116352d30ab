"""A private event loop on a thread, running an :class:`AsyncReader` for the blocking
reader's reads that have no blocking path yet: only ``search_messages``
(:mod:`.reads_vectors`), until the vector read model gives it one. Nothing else starts it:
a ``Reader`` that never calls it has no thread and no loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from redis.exceptions import RedisError

from memstream.producers.driver import translate_driver_error
from memstream.producers.settings import Settings

if TYPE_CHECKING:
    from .reader import AsyncReader

T = TypeVar("T")


class Bridge:
    """A private loop on a thread with an :class:`AsyncReader`, for the reads that have
    no blocking path yet (``search_messages``); nothing else starts it."""

    def __init__(self, settings: Settings, shared: tuple[str, ...]) -> None:
        self.settings = settings
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        self.reader = self.call(self._make(settings, shared))

    @staticmethod
    async def _make(settings: Settings, shared: tuple[str, ...]) -> AsyncReader:
        from .reader import AsyncReader

        return AsyncReader.from_settings(settings, shared=shared)

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        try:
            return asyncio.run_coroutine_threadsafe(coro, self.loop).result()
        except RedisError as e:  # a driver error that no inner boundary turned into ours
            raise translate_driver_error(e, self.settings) from e

    def close(self) -> None:
        self.call(self.reader.aclose())
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=5)
        self.loop.close()
