"""Convergence harness: check that a projection reaches the same state whatever the order.

:func:`check_convergence` applies a list of events twice through the real ack-gated
``ms_apply`` call: once in log order (the reference), once in a permuted order with
duplicate deliveries and random batch sizes (the trial). Each run writes into its own
scratch projection version; the two states (every key with its type, value and expire
time) must be identical, otherwise :class:`ConvergenceError` names the first key that
differs. The hypothesis strategies below (imported lazily) generate events and delivery
orders; pass your own payload strategies for your own event types.

Check your own projection (on a deployment made by ``memstream init``)::

    from hypothesis import given, settings
    from memstream.projections.testing import check_convergence, event_streams, with_deliveries

    NOW = int(time.time() * 1000) + 3_600_000  # ahead of the Redis clock, see below

    @settings(deadline=None)
    @given(with_deliveries(event_streams(kinds=["step.recorded"], start_ms=NOW - 60_000)))
    def test_mine_converges(case):
        events, (order, duplicates, batch_sizes) = case
        check_convergence(redis.Redis(), [MyProjection()], events, order=order,
                          duplicates=duplicates, batch_sizes=batch_sizes, now_ms=NOW)

``now_ms`` is the clock the projections see. It must be at least :data:`CLOCK_MARGIN_MS`
ahead of the Redis server's clock: an expire time that is already past on the server
would delete a key in the middle of the check.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any

import redis

from memstream.producers import events as ev
from memstream.producers import events_messages as em
from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.entry import StoredEvent
from memstream.producers.settings import Settings

from .base import ApplyContext, Projection
from .ops import Op, Writes, apply_command, sortable
from .registry import by_type

if TYPE_CHECKING:
    from hypothesis.strategies import SearchStrategy

SCRATCH_VERSIONS = (900_000, 999_999)
"""Scratch projection versions are drawn from this range; real versions never get there."""
CLOCK_MARGIN_MS = 60_000
FEED = "harness_feed"
DEFAULT_START_MS = 1_700_000_000_000
_BUILTIN_MODELS = (em.MessageAppended, em.HistoryCleared, ev.StateSaved, ev.SessionStarted,
                   ev.SessionDataSet, ev.StepRecorded)  # fmt: skip
BUILTIN_KINDS = tuple(m.TYPE for m in _BUILTIN_MODELS)
_READS = {"string": ("GET",), "hash": ("HGETALL",), "zset": ("ZRANGE", 0, -1, "WITHSCORES"),
          "set": ("SMEMBERS",), "list": ("LRANGE", 0, -1),
          "stream": ("XRANGE", "-", "+")}  # fmt: skip
"""How each key type is read for the state dump (others only by existence)."""

Deliveries = tuple[list[int], list[int], list[int]]
Entry = tuple[str, Any, int]
"""A dumped key: (type, value, PEXPIRETIME; negative when it never expires)."""


class ConvergenceError(AssertionError):
    """The permuted delivery reached another state than applying in log order."""


def check_convergence(
    client: redis.Redis,
    projections: Sequence[Projection],
    events: Sequence[StoredEvent],
    *,
    order: Sequence[int],
    duplicates: Sequence[int],
    batch_sizes: Sequence[int] | None = None,
    settings: Settings | None = None,
    now_ms: int,
) -> None:
    """Apply ``events`` in log order and in ``order`` (+ ``duplicates``); states must match.

    ``order`` is a permutation of ``range(len(events))``; ``duplicates`` lists events
    delivered again (each after its first delivery, spread over the run); deliveries are
    cut into batches of ``batch_sizes`` (cycled; one event per batch by default), and each
    batch makes one ``ms_apply`` call per partition, as a worker does.
    """
    settings = settings or Settings()
    n = len(events)
    _check_args(n, order, duplicates, batch_sizes)
    _check_client(client, now_ms)
    meta: Any = client.hgetall(keys.META)
    partitions = Deployment.from_meta(meta).partitions
    parts = [keys.partition(event.owner, partitions) for event in events]
    targets = list(zip(parts, events, strict=True))
    used = sorted(set(parts))
    log_order = sorted(range(n), key=lambda i: (sortable(events[i].log_id), i))
    trial_seq = _delivery_sequence(order, duplicates)
    trial_batches = _batches(trial_seq, itertools.cycle(batch_sizes or [1]))
    routes = by_type(projections)
    reserved: list[int] = []
    try:
        states = []
        for batches in (_batches(log_order, itertools.repeat(256)), trial_batches):
            version = _reserve(client, used, reserved)
            ops = []
            for p, event in targets:
                ctx = ApplyContext(keys.Projection(p, version), settings, now_ms)
                writes = Writes()  # routed as the Planner does
                for projection in routes.get(event.type, ()):
                    projection.apply(event, ctx, writes)
                ops.append(writes.ops)
            applied = _deliver(client, version, targets, ops, batches)
            if applied != n:
                raise ConvergenceError(f"the gate applied {applied} writes for {n} events")
            states.append(_dump(client, used, version))
        problem = _diff(states[0], states[1])
        if problem is not None:
            names = ", ".join(type(p).__name__ for p in projections)
            raise ConvergenceError(
                f"{names} do not converge over {n} events: {problem}\n"
                f"delivered {trial_seq} in batches {[len(b) for b in trial_batches]} "
                f"(log order {log_order})"
            )
    finally:
        for version in reserved:
            _drop(client, used, version)


def _check_args(
    n: int, order: Sequence[int], duplicates: Sequence[int], sizes: Sequence[int] | None
) -> None:
    if sorted(order) != list(range(n)):
        raise ValueError(f"order must be a permutation of range({n}), got {list(order)}")
    if any(not 0 <= d < n for d in duplicates):
        raise ValueError(f"duplicates must be indices in range({n}), got {list(duplicates)}")
    if sizes is not None and (not sizes or min(sizes) < 1):
        raise ValueError(f"batch_sizes must be positive, got {list(sizes)}")


def _check_client(client: redis.Redis, now_ms: int) -> None:
    if client.connection_pool.connection_kwargs.get("decode_responses"):
        raise ValueError("check_convergence needs a client without decode_responses")
    seconds, micros = client.time()
    server_ms = int(seconds) * 1000 + int(micros) // 1000
    if now_ms < server_ms + CLOCK_MARGIN_MS:
        raise ValueError(
            f"now_ms={now_ms} must be at least {CLOCK_MARGIN_MS} ms ahead of the Redis clock "
            f"({server_ms}), or expire times computed from it could pass during the check"
        )


def _delivery_sequence(order: Sequence[int], duplicates: Sequence[int]) -> list[int]:
    """``order`` with the k-th of m duplicates at about (k+1)/(m+1) of the run, and always
    after the first delivery of the event it repeats."""
    first = {event: i for i, event in enumerate(order)}
    spread = len(order) / (len(duplicates) + 1)
    after: dict[int, list[int]] = {}
    for k, d in enumerate(duplicates):
        after.setdefault(max(first[d], int((k + 1) * spread) - 1), []).append(d)
    out: list[int] = []
    for i, event in enumerate(order):
        out += [event, *after.get(i, [])]
    return out


def _batches(seq: Sequence[int], sizes: Iterator[int]) -> list[list[int]]:
    out, start = [], 0
    while start < len(seq):
        size = next(sizes)
        out.append(list(seq[start : start + size]))
        start += size
    return out


def _feed(p: int, version: int) -> str:
    return keys.Projection(p, version).partition_key(FEED)


def _version_keys(client: redis.Redis, p: int, version: int) -> list[bytes]:
    pattern = keys.version_prefix(p, version) + "*"
    return list(client.scan_iter(match=pattern, count=1000))


def _reserve(client: redis.Redis, used: Sequence[int], reserved: list[int]) -> int:
    """A scratch version with no key in any partition used; its feeds and groups made."""
    rng = random.Random()
    while True:
        version = rng.randint(*SCRATCH_VERSIONS)
        if version in reserved or any(_version_keys(client, p, version) for p in used):
            continue
        reserved.append(version)
        for p in used:
            client.xgroup_create(_feed(p, version), keys.group(version), id="0", mkstream=True)
        return version


def _deliver(
    client: redis.Redis,
    version: int,
    targets: Sequence[tuple[int, StoredEvent]],
    ops: Sequence[list[Op]],
    batches: Sequence[Sequence[int]],
) -> int:
    """Put one pointer per event on the scratch feeds, read them all (pending), then
    send ``batches`` through ``ms_apply``; returns how many entries ran their writes."""
    group = keys.group(version)
    pipe = client.pipeline(transaction=False)
    for p, event in targets:
        pipe.xadd(_feed(p, version), {"o": event.owner, "l": event.log_id})
    feed_ids = [raw.decode() for raw in pipe.execute()]
    for p in sorted({p for p, _ in targets}):
        client.xreadgroup(group, "harness", {_feed(p, version): ">"})
    applied = 0
    call: Any = client.execute_command
    for batch in batches:
        per_partition: dict[int, list[tuple[str, list[Op]]]] = {}
        for i in batch:
            per_partition.setdefault(targets[i][0], []).append((feed_ids[i], ops[i]))
        for p, entries in per_partition.items():
            applied += int(call(*apply_command(_feed(p, version), group, entries)))
    return applied


def _dump(client: redis.Redis, used: Sequence[int], version: int) -> dict[str, Entry]:
    """Every key of ``version`` (but the feed), named ``<partition>:<key without prefix>``."""
    names: list[tuple[int, bytes]] = []
    for p in used:
        feed = _feed(p, version).encode()
        names += [(p, k) for k in sorted(_version_keys(client, p, version)) if k != feed]
    pipe: Any = client.pipeline(transaction=False)
    for _, key in names:
        pipe.type(key)
    kinds = [k.decode() if isinstance(k, bytes) else str(k) for k in pipe.execute()]
    for (_, key), kind in zip(names, kinds, strict=True):
        command, *args = _READS.get(kind, ("EXISTS",))
        pipe.execute_command(command, key, *args)
        pipe.execute_command("PEXPIRETIME", key)
    replies = pipe.execute()
    out: dict[str, Entry] = {}
    for j, ((p, key), kind) in enumerate(zip(names, kinds, strict=True)):
        value, expires = replies[2 * j], replies[2 * j + 1]
        if kind == "set":
            value = sorted(value)
        elif kind == "stream":  # ids and order follow delivery by nature: compare contents
            value = sorted(sorted(fields.items()) for _, fields in value)
        rest = key.decode()[len(keys.version_prefix(p, version)) :]
        out[f"{p}:{rest}"] = (kind, value, int(expires))
    return out


def _diff(reference: dict[str, Entry], trial: dict[str, Entry]) -> str | None:
    names = reference.keys() | trial.keys()
    differing = sorted(k for k in names if reference.get(k) != trial.get(k))
    if not differing:
        return None
    shown = [_show(state.get(differing[0])) for state in (reference, trial)]
    return (
        f"{len(differing)} key(s) differ, first {differing[0]!r}\n"
        f"  in log order: {shown[0]}\n  permuted:     {shown[1]}"
    )


def _show(entry: Entry | None) -> str:
    if entry is None:
        return "(no such key)"
    kind, value, expires = entry
    text = repr(value) if len(repr(value)) <= 600 else repr(value)[:600] + "..."
    return f"{kind}, {'never expires' if expires < 0 else f'expires at {expires} ms'}: {text}"


def _drop(client: redis.Redis, used: Sequence[int], version: int) -> None:
    for p in used:
        names = _version_keys(client, p, version)
        for i in range(0, len(names), 500):
            client.unlink(*names[i : i + 500])


# --- Hypothesis strategies ---------------------------------------------------------------


def log_ids(
    n: int, *, start_ms: int = DEFAULT_START_MS, span_ms: int = 20_000
) -> SearchStrategy[list[str]]:
    """``n`` increasing log ids, their milliseconds in ``[start_ms, start_ms + span_ms]``;
    ties on a millisecond (made likely) take the next sequence number, as in Redis."""
    from hypothesis import strategies as st

    def build(offsets: list[int]) -> list[str]:
        out: list[str] = []
        last, seq = -1, 0
        for ms in sorted(offsets):
            last, seq = ms, (seq + 1 if ms == last else 0)
            out.append(f"{start_ms + ms}-{seq}")
        return out

    offset = st.integers(0, span_ms) | st.sampled_from([0, span_ms // 2, span_ms])
    return st.lists(offset, min_size=n, max_size=n).map(build)


def _builtin_payloads(sessions: Sequence[str]) -> dict[str, SearchStrategy[ev.Event]]:
    from hypothesis import strategies as st

    words = st.sampled_from(["hi", "ok", "a longer text"]) | st.text(max_size=6)
    small, letters = st.integers(-3, 3), st.sampled_from("abc")
    maybe_session = st.none() | st.sampled_from(sessions)
    return {
        "message.appended": st.builds(
            em.MessageAppended, role=st.sampled_from(["user", "assistant", "tool"]), content=words,
            name=st.none() | st.just("bot"),
            meta=st.just({}) | st.dictionaries(st.just("k"), small, min_size=1)),
        "history.cleared": st.just(em.HistoryCleared()),
        "state.saved": st.builds(ev.StateSaved, state=st.dictionaries(letters, small)),
        "session.started": st.builds(ev.SessionStarted, previous=maybe_session),
        "session.data_set": st.builds(
            ev.SessionDataSet, key=st.sampled_from(["lang", "mood"]), value=small | words),
        "step.recorded": st.builds(
            ev.StepRecorded, action=st.sampled_from(["look", "open", "walk"]), observation=words,
            success=st.none() | st.booleans()),
    }  # fmt: skip


def event_streams(
    *,
    owners: Sequence[str] = ("alice", "bob", "carol"),
    sessions: Sequence[str] = ("s1", "s2", "s3"),
    kinds: Sequence[str] = BUILTIN_KINDS,
    payloads: Mapping[str, SearchStrategy[ev.Event]] | None = None,
    min_size: int = 0,
    max_size: int = 25,
    start_ms: int = DEFAULT_START_MS,
    span_ms: int = 20_000,
) -> SearchStrategy[list[StoredEvent]]:
    """Lists of events in log order: each owner's log ids increase (with ties) within
    ``span_ms`` from ``start_ms``, and owners interleave. ``payloads`` adds or replaces
    event types (type -> strategy of :class:`Event`); a session is drawn from ``sessions``
    when the model requires one, and may be absent when it is optional."""
    from hypothesis import strategies as st

    table = {**_builtin_payloads(sessions), **(payloads or {})}
    unknown = [k for k in kinds if k not in table]
    if unknown:
        raise ValueError(f"no payload strategy for {unknown}; pass them in payloads")
    session = st.sampled_from(sessions)

    def with_session(event: ev.Event) -> SearchStrategy[tuple[ev.Event, str | None]]:
        choice = session if event.SESSION == "required" else session | st.none()
        return st.tuples(st.just(event), choice)

    def payload(kind: str) -> SearchStrategy[tuple[str, ev.Event, str | None]]:
        return table[kind].flatmap(with_session).map(lambda es: (kind, *es))

    draft = st.tuples(st.sampled_from(owners), st.sampled_from(kinds).flatmap(payload))

    @st.composite
    def build(draw: st.DrawFn) -> list[StoredEvent]:
        drafts = draw(st.lists(draft, min_size=min_size, max_size=max_size))
        ids: dict[str, Iterator[str]] = {}
        for owner in owners:
            count = sum(1 for d in drafts if d[0] == owner)
            ids[owner] = iter(draw(log_ids(count, start_ms=start_ms, span_ms=span_ms)))
        out = [
            StoredEvent(owner, next(ids[owner]), kind, event.VERSION, event, session=sess)
            for owner, (kind, event, sess) in drafts
        ]
        return sorted(out, key=lambda e: (sortable(e.log_id), e.owner))

    return build()


def deliveries(
    n: int, *, max_duplicates: int | None = None, max_batch: int = 8
) -> SearchStrategy[Deliveries]:
    """(order permutation, duplicate deliveries, batch sizes) for ``n`` events."""
    from hypothesis import strategies as st

    most = 0 if n == 0 else n if max_duplicates is None else max_duplicates
    return st.tuples(
        st.permutations(range(n)),
        st.lists(st.integers(0, max(n - 1, 0)), max_size=most),
        st.lists(st.integers(1, max_batch), min_size=1, max_size=6),
    )


def with_deliveries(
    events: SearchStrategy[list[StoredEvent]], **options: Any
) -> SearchStrategy[tuple[list[StoredEvent], Deliveries]]:
    """Events together with :func:`deliveries` for them (``options`` go to it)."""
    from hypothesis import strategies as st

    return events.flatmap(lambda evs: st.tuples(st.just(evs), deliveries(len(evs), **options)))
