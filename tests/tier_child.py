"""A tier process for the crash test: ``memstream tier`` with an archive that pauses a
little in every operation, so SIGKILLs land between upload, verify and commit."""

from __future__ import annotations

import random
import sys
import threading
import time

from memstream.producers import Settings
from memstream.producers.connection import sync_client
from memstream.tiering import Policy, Tierer
from memstream.tiering.local import LocalArchive
from memstream.tiering.loop import run_forever


class SlowArchive(LocalArchive):
    def _pause(self) -> None:
        time.sleep(random.uniform(0, 0.01))

    def put(self, name: str, data: bytes) -> None:
        self._pause()
        super().put(name, data)
        self._pause()

    def get(self, name: str, offset: int = 0, length: int | None = None) -> bytes:
        self._pause()
        return super().get(name, offset, length)


def main() -> None:
    url, root = sys.argv[1], sys.argv[2]
    settings = Settings.from_url(url)
    policy = Policy(older_than_s=0.0, max_entries=int(sys.argv[3]))
    tierer = Tierer(sync_client(settings), SlowArchive(root), settings, policy)
    print("ready", flush=True)  # imports done: from here on a kill lands mid-pass
    run_forever(tierer, 0.01, threading.Event(), sys.stderr)


if __name__ == "__main__":
    main()
