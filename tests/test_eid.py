"""Eids made by the producer: unique across forks and callers' seeding, 24 hex digits."""

from __future__ import annotations

import os
import random

from memstream.producers.core import new_eid
from memstream.producers.keys import check_id


def test_eids_are_24_hex_digits_and_valid_ids() -> None:
    eids = {new_eid() for _ in range(10_000)}
    assert len(eids) == 10_000
    for eid in list(eids)[:100]:
        assert len(eid) == 24 and int(eid, 16) >= 0
        assert check_id(eid, "eid") == eid


def test_a_callers_seed_does_not_repeat_eids() -> None:
    random.seed(7)
    first = new_eid()
    random.seed(7)
    assert new_eid() != first


def test_a_forked_child_does_not_repeat_its_parents_eids() -> None:
    # A repeated eid is deduplicated away as a retry: a child that shared its parent's
    # generator state would lose appends silently.
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: send its next eids and leave at once
        try:
            os.write(write, "".join(new_eid() for _ in range(4)).encode())
        finally:
            os._exit(0)
    os.close(write)
    child = os.read(read, 1024).decode()
    os.close(read)
    os.waitpid(pid, 0)
    parent = "".join(new_eid() for _ in range(4))
    assert len(child) == len(parent) == 96
    assert {child[i : i + 24] for i in range(0, 96, 24)}.isdisjoint(
        {parent[i : i + 24] for i in range(0, 96, 24)}
    )
