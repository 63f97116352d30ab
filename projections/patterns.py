"""Observed patterns, fix outcomes and learning sessions (a code-review agent's memory).

Convergence: frequencies per pattern and per issue kind, and accepted / rejected fix
counts, are commutative counters; the last observation of a pattern is last-writer-wins;
fix outcomes (newest 1,000) and learning sessions (newest 500) are log-ordered sets
capped by log id, so the same entries survive whatever the delivery order.
"""

from __future__ import annotations

from typing import Any, ClassVar

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events import FixOutcome, PatternObserved
from memstream.producers.events_memory import LearningRecorded

from .base import ApplyContext, Projection, Query
from .codec import pack, split_versioned
from .ops import Writes, sortable

FIXES_CAP = 1000
LEARNING_CAP = 500


def freq_key(pk: keys.Projection, owner: str) -> str:
    """Hash pattern -> observations."""
    return pk.key("pat_freq", owner)


def kind_key(pk: keys.Projection, owner: str) -> str:
    """Hash issue kind -> observations."""
    return pk.key("pat_kind", owner)


def last_key(pk: keys.Projection, owner: str) -> str:
    """Hash pattern -> LWW last observation (issue kind, detail, time)."""
    return pk.key("pat_last", owner)


def fix_count_key(pk: keys.Projection, owner: str) -> str:
    """Hash ``<pattern>:accepted`` / ``<pattern>:rejected`` -> count (every outcome)."""
    return pk.key("pat_fixc", owner)


def fixes_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("pat_fixes", owner)


def learning_key(pk: keys.Projection, owner: str) -> str:
    return pk.key("pat_learn", owner)


class Patterns(Projection):
    name: ClassVar[str] = "patterns"
    key_names: ClassVar[frozenset[str]] = frozenset(
        {"pat_freq", "pat_kind", "pat_last", "pat_fixc", "pat_fixes", "pat_learn"}
    )
    handles: ClassVar[frozenset[str]] = frozenset(
        {"pattern.observed", "fix.outcome", "learning.recorded"}
    )

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        ttl = ctx.settings.pattern_ttl_s
        if ctx.expired(event, ttl):
            return
        pk, owner, version, e = ctx.keys, event.owner, sortable(event.log_id), event.event
        touched: list[str] = []
        if isinstance(e, PatternObserved):
            touched = [freq_key(pk, owner), kind_key(pk, owner), last_key(pk, owner)]
            writes.hincr(touched[0], e.pattern, 1)
            writes.hincr(touched[1], e.issue_kind, 1)
            last = {"issue_kind": e.issue_kind, "detail": e.detail, "ts": event.ts_ms}
            writes.lww(touched[2], e.pattern, version, pack(last))
        elif isinstance(e, FixOutcome):
            touched = [fix_count_key(pk, owner), fixes_key(pk, owner)]
            verdict = "accepted" if e.accepted else "rejected"
            writes.hincr(touched[0], f"{e.pattern}:{verdict}", 1)
            body = {"pattern": e.pattern, "accepted": e.accepted, "detail": e.detail,
                    "ts": event.ts_ms}  # fmt: skip
            writes.zlog(touched[1], version, pack(body), cap=FIXES_CAP)
        elif isinstance(e, LearningRecorded):
            touched = [learning_key(pk, owner)]
            body = {"topic": e.topic, "summary": e.summary, "patterns": e.patterns,
                    "session": event.session, "ts": event.ts_ms}  # fmt: skip
            writes.zlog(touched[0], version, pack(body), cap=LEARNING_CAP)
        if ttl is not None:
            for key in touched:
                writes.expire_at(key, event.ts_ms + ttl * 1000)


def _counts(raw: dict[bytes, bytes]) -> dict[str, int]:
    return {k.decode(): int(v) for k, v in raw.items()}


def _ranked(counts: dict[str, int]) -> list[tuple[str, int]]:
    """Highest count first; ties by name, so results compare exactly."""
    return sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))


def read_patterns(pk: keys.Projection, owner: str, top: int) -> Query[dict[str, Any]]:
    """Top patterns and issue kinds by frequency, with acceptance rates per pattern."""
    fk, kk, ck, lk = (
        freq_key(pk, owner),
        kind_key(pk, owner),
        fix_count_key(pk, owner),
        last_key(pk, owner),
    )

    def parse(replies: list[Any]) -> dict[str, Any]:
        freq, kinds, fixes = _counts(replies[0]), _counts(replies[1]), _counts(replies[2])
        last = {k.decode(): split_versioned(v)[1] for k, v in replies[3].items()}
        patterns = []
        for name, count in _ranked(freq)[:top]:
            acc, rej = fixes.get(f"{name}:accepted", 0), fixes.get(f"{name}:rejected", 0)
            patterns.append({
                "pattern": name, "frequency": count, "accepted": acc, "rejected": rej,
                "acceptance_rate": acc / (acc + rej) if acc + rej else None,
                "last": last.get(name),
            })  # fmt: skip
        accepted = sum(v for k, v in fixes.items() if k.endswith(":accepted"))
        total = sum(fixes.values())
        return {
            "patterns": patterns,
            "issue_kinds": [{"issue_kind": k, "frequency": n} for k, n in _ranked(kinds)[:top]],
            "observations": sum(freq.values()),
            "distinct_patterns": len(freq),
            "fix_outcomes": total,
            "acceptance_rate": accepted / total if total else None,
        }

    commands = [("HGETALL", fk), ("HGETALL", kk), ("HGETALL", ck), ("HGETALL", lk)]
    return Query(commands, parse, (fk, kk, ck, lk))


def read_log(key: str, last: int) -> Query[list[dict[str, Any]]]:
    """The newest ``last`` entries of a capped log, newest first."""

    def parse(replies: list[Any]) -> list[dict[str, Any]]:
        out = []
        for raw in replies[0]:
            log_id, body = split_versioned(raw)
            out.append({"log_id": log_id, **body})
        return out

    return Query([("ZRANGE", key, 0, last - 1, "REV")], parse, (key,))
