"""A producer for chaos tests: appends paced chunks and retries a failed chunk with the
same eids until Redis takes it, as an application with a retry policy would. The eids
make every retry harmless (an append that raised may still have been stored).

With ``outbox`` (a file path) the producer keeps what Redis cannot take on disk instead
(docs/outbox.md): a call returns at once with pending receipts and is never retried."""

from __future__ import annotations

import random
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from memstream.producers import Producer
from memstream.producers.errors import MemstreamError
from memstream.producers.events import SkillExecuted, StateSaved
from memstream.producers.events_messages import MessageAppended
from tests.test_crash import SKILLS


@dataclass
class Load:
    url: str
    owners: list[str]
    total: int
    chunk: int = 200
    pause_s: float = 0.02
    seed: int = 1
    expected: dict[str, list[Any]] = field(default_factory=dict)
    acknowledged: int = 0
    attempts: int = 0
    failed_calls: int = 0
    pending: int = 0
    outbox: str | None = None
    append_deadline_s: float = 5.0
    done: threading.Event = field(default_factory=threading.Event)
    flushed: threading.Event = field(default_factory=threading.Event)
    """Set by the test once the outbox is empty: the producer may close then."""

    def items(self, start: int, n: int, rng: random.Random) -> list[tuple[Any, ...]]:
        chunk: list[tuple[Any, ...]] = []
        for i in range(start, start + n):
            owner = rng.choice(self.owners)
            roll = rng.random()
            event: Any
            if roll < 0.1:
                event = StateSaved(state={"n": i})
            elif roll < 0.3:
                event = SkillExecuted(
                    name=rng.choice(SKILLS), success=rng.random() < 0.7,
                    duration_s=round(rng.uniform(0, 2), 6),
                )  # fmt: skip
            else:
                event = MessageAppended(role="user", content=f"{owner}:{i}")
            self.expected.setdefault(owner, []).append(event)
            chunk.append((owner, event, "s1", f"e{i}"))
        return chunk

    def run(self) -> None:
        rng = random.Random(self.seed)
        try:
            with Producer.from_url(
                self.url, outbox=self.outbox, append_deadline_s=self.append_deadline_s
            ) as producer:
                sent = 0
                while sent < self.total:
                    chunk = self.items(sent, min(self.chunk, self.total - sent), rng)
                    while True:
                        self.attempts += 1
                        try:
                            receipts = producer.append_many(chunk)
                            self.pending += sum(1 for x in receipts if x.pending)
                            break
                        except (MemstreamError, OSError):  # Redis away: retry the same eids
                            self.failed_calls += 1
                            time.sleep(0.1)
                    sent += len(chunk)
                    self.acknowledged = sent
                    time.sleep(self.pause_s)
                self.done.set()
                if self.outbox is not None:
                    self.flushed.wait()  # the flusher lives as long as the producer
        finally:
            self.done.set()

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run, daemon=True)
        thread.start()
        return thread
