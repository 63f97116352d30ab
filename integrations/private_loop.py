"""An event loop on a private daemon thread, for adapters whose async clients must live on
one loop while sync callers and async callers on other loops use them alike."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class PrivateLoop:
    """The loop starts on first use; :meth:`stop` ends it (a later use starts a new one)."""

    def __init__(self) -> None:
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()

    def get(self) -> asyncio.AbstractEventLoop:
        """The running loop (started now if there is none)."""
        with self._lock:
            if self._loop is None:
                self._loop = asyncio.new_event_loop()
                self._thread = threading.Thread(target=self._loop.run_forever, daemon=True)
                self._thread.start()
            return self._loop

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop and block until its result."""
        return asyncio.run_coroutine_threadsafe(coro, self.get()).result()

    async def acall(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` on the loop; await its result from the caller's loop."""
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, self.get()))

    def stop(self, last: Callable[[], Coroutine[Any, Any, None]]) -> None:
        """Run ``last()`` on the loop (closing what lives there), then stop the loop."""
        with self._lock:
            loop, thread, self._loop, self._thread = self._loop, self._thread, None, None
        if loop is None:
            return
        asyncio.run_coroutine_threadsafe(last(), loop).result()
        loop.call_soon_threadsafe(loop.stop)
        if thread is not None:
            thread.join(timeout=5)
        loop.close()
