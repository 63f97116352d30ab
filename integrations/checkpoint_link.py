"""The saver's link to memstream (:mod:`.langgraph_checkpoint`): its clients, the
receipts of its own appends, and read-your-writes.

Sync calls use a blocking producer and query runner; async calls an asyncio pair made on
the running loop (made again when called from another loop: asyncio clients belong to
the loop that made them). Every read first waits until this saver's own appends are
applied, at most ``wait_timeout`` seconds in all (then ``WaitTimeoutError``).
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Sequence

from memstream.producers import keys
from memstream.producers.connection import sync_client
from memstream.producers.core import Append
from memstream.producers.errors import InvalidInputError, MemstreamError
from memstream.producers.events import Event
from memstream.producers.producer import AsyncProducer, Producer
from memstream.producers.receipt import Receipt
from memstream.producers.settings import Settings
from memstream.projections.reader import AsyncReader, Reader
from memstream.projections.reader_sync import BlockingCore
from memstream.projections.wait import WaitResult

from . import checkpoint_plans as plans


class SaverLink:
    """Clients and receipts of one saver. ``owner``: the saver's owner id; ``settings``:
    where Redis is; the clients passed in are used as they are and never closed here."""

    def __init__(
        self,
        owner: str,
        settings: Settings,
        *,
        producer: Producer | None = None,
        reader: Reader | None = None,
        async_producer: AsyncProducer | None = None,
        async_reader: AsyncReader | None = None,
        wait_timeout: float,
    ) -> None:
        self.owner, self.settings, self.wait_timeout = owner, settings, wait_timeout
        self._producer, self._reader = producer, reader
        self._core: BlockingCore | None = None
        self._own_async = async_producer is None and async_reader is None
        self._aproducer, self._areader = async_producer, async_reader
        self._aloop: asyncio.AbstractEventLoop | None = None
        self._made: list[Producer | Reader] = []
        self._amade: list[AsyncProducer | AsyncReader] = []
        self._unseen: list[Receipt] = []
        self._lock = threading.Lock()

    # --- appends ------------------------------------------------------------------------

    def append(self, events: Sequence[Event]) -> None:
        """Append ``events`` in one pipelined round trip, keeping their receipts."""
        if not events:
            return
        with self._lock:
            if self._producer is None:
                self._producer = Producer.from_settings(self.settings)
                self._made.append(self._producer)
            producer = self._producer
        try:
            receipts = producer.append_many([Append(self.owner, e) for e in events])
        except InvalidInputError as e:
            raise _named(events, e) from e
        with self._lock:
            self._unseen += receipts

    async def aappend(self, events: Sequence[Event]) -> None:
        """:meth:`append` (``events``) on the running loop."""
        if not events:
            return
        producer = self._async()[0]
        try:
            receipts = await producer.append_many([Append(self.owner, e) for e in events])
        except InvalidInputError as e:
            raise _named(events, e) from e
        with self._lock:
            self._unseen += receipts

    # --- reads --------------------------------------------------------------------------

    def blocking(self) -> tuple[BlockingCore, keys.Projection]:
        """The blocking query runner and the owner's keys, once this saver's own appends
        are applied."""
        with self._lock:
            if self._reader is None:
                self._reader = Reader.from_settings(self.settings)
                self._made.append(self._reader)
            if self._core is None:
                self._core = BlockingCore(sync_client(self.settings), self.settings)
            reader, core = self._reader, self._core
        deadline = time.monotonic() + self.wait_timeout
        while (receipt := self._next_unseen()) is not None:
            _check(reader.wait(receipt, max(deadline - time.monotonic(), 0.001)), receipt)
            self._seen(receipt)
        d = core.deployment()
        return core, keys.Projection(keys.partition(self.owner, d.partitions), d.version)

    async def asyncio(self) -> tuple[AsyncReader, keys.Projection]:
        """:meth:`blocking` for async callers: this loop's reader and the owner's keys."""
        reader = self._async()[1]
        deadline = time.monotonic() + self.wait_timeout
        while (receipt := self._next_unseen()) is not None:
            _check(await reader.wait(receipt, max(deadline - time.monotonic(), 0.001)), receipt)
            self._seen(receipt)
        d = await reader.deployment()
        return reader, keys.Projection(keys.partition(self.owner, d.partitions), d.version)

    def _next_unseen(self) -> Receipt | None:
        with self._lock:
            return self._unseen[0] if self._unseen else None

    def _seen(self, receipt: Receipt) -> None:
        with self._lock:
            if receipt in self._unseen:
                self._unseen.remove(receipt)

    def _async(self) -> tuple[AsyncProducer, AsyncReader]:
        loop = asyncio.get_running_loop()
        if self._own_async and self._aloop is not loop:
            old, self._amade = self._amade, []
            if self._aloop is not None and not self._aloop.is_closed():
                for client in old:  # their loop is alive, just not this one: close there
                    asyncio.run_coroutine_threadsafe(client.aclose(), self._aloop)
            self._aloop, self._aproducer, self._areader = loop, None, None
        if self._areader is None:
            self._areader = AsyncReader.from_settings(self.settings)
            self._amade.append(self._areader)
        if self._aproducer is None:
            self._aproducer = AsyncProducer.from_settings(self.settings)
            self._amade.append(self._aproducer)
        return self._aproducer, self._areader

    # --- closing ------------------------------------------------------------------------

    def close(self) -> None:
        """Close the sync clients this link made."""
        with self._lock:
            made, self._made = self._made, []
            core, self._core = self._core, None
            if self._producer in made:
                self._producer = None
            if self._reader in made:
                self._reader = None
        if core is not None:
            core.close()
        for client in made:
            client.close()

    async def aclose(self) -> None:
        """Close every client this link made (the async ones if made on this loop)."""
        self.close()
        if self._aloop is asyncio.get_running_loop():
            for client in self._amade:
                await client.aclose()
        self._amade, self._aloop = [], None
        if self._own_async:
            self._aproducer, self._areader = None, None


def _named(events: Sequence[Event], error: InvalidInputError) -> InvalidInputError:
    if error.field == "data" and len(events) == 1:
        return plans.oversized(events[0], error)
    return error


def _check(result: WaitResult, receipt: Receipt) -> None:
    if not result.applied:
        raise MemstreamError(
            f"checkpoint write {receipt.log_id} of {receipt.owner} was dead-lettered: "
            f"{result.reason} (see `memstream dlq`)"
        )
