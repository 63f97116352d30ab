"""Every session's hot window in one plan (projections/message_hot.py) reads back what
``history(owner, session, last=history_cap)`` returns for each session, over several
chunks of sessions, and keyword message search over it ranks as before."""

from __future__ import annotations

import pytest

from memstream.producers import AsyncProducer
from memstream.projections import message_hot
from memstream.projections.message_hot import hot_windows, owner_windows
from memstream.projections.reader import AsyncReader
from tests.workers_util import running_worker

OWNER = "agent.hot"
CAP = 3


async def test_windows_are_the_history_reads_over_several_chunks(
    deployed: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(message_hot, "CHUNK", 2)  # 5 sessions: three round trips
    async with (
        running_worker(deployed, settings={"history_cap": CAP}),
        AsyncProducer.from_url(deployed) as producer,
    ):
        last = None
        for n in range(5):
            for i in range(n + 1):  # s0 has 1 message ... s4 has 5, 2 beyond the cap
                last = await producer.append_message(OWNER, f"s{n}", "user", f"train {n}.{i}")
        assert last is not None
        async with AsyncReader.from_url(deployed, history_cap=CAP) as reader:
            await reader.wait(last, timeout=30)
            pk = await reader._pk(OWNER)
            sessions = [s["session"] for s in await reader.sessions(OWNER)]
            found = await reader.run(owner_windows(pk, OWNER, CAP))
            assert list(found) == sessions  # most recently active first
            for name in sessions:
                assert found[name] == await reader.history(OWNER, name, last=CAP)
            assert [m["content"] for m in found["s4"]] == ["train 4.2", "train 4.3", "train 4.4"]
            some = await reader.run(hot_windows(pk, OWNER, ["s1", "nobody", "s1"], CAP))
            assert some == {"s1": found["s1"], "nobody": []}
            assert await reader.run(hot_windows(pk, OWNER, [], CAP)) == {}
            assert await reader.run(owner_windows(pk, "agent.empty", CAP)) == {}
            hits = await reader.search_messages(OWNER, "train", limit=100)
            # Every hot message (1 + 2 + 3 + 3 + 3) matches once, and nothing older.
            assert len({h.log_id for h in hits}) == len(hits) == 12
            assert [h.session for h in hits].count("s4") == CAP
        # A cap above history()'s 10,000 page limit: search read it through history()
        # before and refused; the windows read has no page limit.
        async with AsyncReader.from_url(deployed, history_cap=20_000) as wide:
            assert len(await wide.search_messages(OWNER, "train", limit=100)) == 12
