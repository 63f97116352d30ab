"""The blocking reader's cache invalidator: the rules of :mod:`.cache`, on a thread.

The blocking ``Reader`` has no event loop, so its change subscription runs on one daemon
thread with a blocking pub/sub connection. It applies messages exactly as the async
:class:`~.cache.Invalidator` does (:func:`~.cache.handle`): a partition is cached only
while its SSUBSCRIBE is confirmed, and a lost connection clears the whole cache before it
subscribes again. The :class:`~.cache.ReadCache` takes a lock, as the listener and the
caller's thread both change it.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from typing import Any

from redis.exceptions import RedisError

from memstream.producers import keys
from memstream.producers.connection import sync_client
from memstream.producers.settings import Settings

from .cache import ReadCache, handle

log = logging.getLogger("memstream.cache")


def next_message(pubsub: Any, timeout: float) -> dict[str, Any] | None:
    """The next pub/sub message or None after ``timeout`` s (a Cluster's pub/sub reads
    sharded messages with ``get_sharded_message``)."""
    sharded = getattr(pubsub, "get_sharded_message", None)
    found: Any = sharded(timeout=timeout) if sharded is not None else pubsub.get_message(
        timeout=timeout)  # fmt: skip
    return found if isinstance(found, dict) else None


class BlockingInvalidator:
    """Listens to the partitions' change channels on a thread and drops what they name.

    ``settings``: where to connect; ``cache``: the cache it invalidates."""

    RECONNECT_S = 0.2
    POLL_S = 0.05
    """How long the listener waits for a message before it subscribes what was asked."""

    def __init__(self, settings: Settings, cache: ReadCache) -> None:
        self.settings = settings
        self.cache = cache
        self._wanted: set[int] = set()
        self._confirmed: set[int] = set()
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def ready(self, p: int) -> bool:
        """True when partition ``p``'s notifications are being received; otherwise ask
        for them (the first call starts the listener)."""
        if p in self._confirmed:
            return True
        with self._lock:
            self._wanted.add(p)
            if self._thread is None and not self._stop.is_set():
                self._thread = threading.Thread(
                    target=self._run, name="memstream-cache-invalidator", daemon=True
                )
                self._thread.start()
        return False

    def _run(self) -> None:
        while not self._stop.is_set():
            client: Any = None
            pubsub: Any = None
            try:
                client = sync_client(self.settings)
                pubsub = client.pubsub()
                self._listen(pubsub)
            except (RedisError, OSError) as e:
                log.warning("change subscription lost (%s); cache cleared", e)
            finally:
                # Whatever was missed while not listening may have changed anything.
                self._confirmed.clear()
                self.cache.clear()
                with contextlib.suppress(RedisError, OSError):
                    if pubsub is not None:
                        pubsub.close()
                    if client is not None:
                        client.close()
            self._stop.wait(self.RECONNECT_S)

    def _listen(self, pubsub: Any) -> None:
        sent: set[int] = set()
        while not self._stop.is_set():
            with self._lock:
                wanted = sorted(self._wanted - sent)
            if wanted:
                pubsub.ssubscribe(*(keys.changes(p) for p in wanted))
                sent.update(wanted)
            message = next_message(pubsub, self.POLL_S)
            if message is not None:
                handle(self.cache, self._confirmed, message)

    def close(self) -> None:
        """Stop the listener and wait for it (at most a few poll intervals)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
