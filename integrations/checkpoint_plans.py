"""What :mod:`.langgraph_checkpoint` does, without I/O: the events a put makes, and the
reads as plans (generators that yield :class:`~memstream.projections.base.Query` and get
each one's result back), so the sync and async savers run the same code.

Values go through LangGraph's serializer (``dumps_typed`` / ``loads_typed``) and nothing
else; a stored ``pickle`` value is refused before the serializer sees it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Generator, Mapping, Sequence
from typing import Any, TypeVar

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    WRITES_IDX_MAP,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from memstream.producers import keys
from memstream.producers.errors import InvalidInputError, MemstreamError
from memstream.producers.events import Event
from memstream.producers.events_checkpoint import (
    ChannelBlob,
    CheckpointPut,
    CheckpointRef,
    CheckpointsRemoved,
    CheckpointWrites,
    PendingWrite,
    Typed,
)
from memstream.producers.helpers import make
from memstream.projections.base import Query
from memstream.projections.checkpoints import Record, read_checkpoints, read_refs, read_threads

R = TypeVar("R")
Plan = Generator[Query[Any], Any, R]


def run_sync(plan: Plan[R], run: Callable[[Query[Any]], Any]) -> R:
    """Drive ``plan`` with a blocking ``run`` (``Reader.run``)."""
    try:
        query = next(plan)
        while True:
            query = plan.send(run(query))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def run_async(plan: Plan[R], run: Callable[[Query[Any]], Awaitable[Any]]) -> R:
    """Drive ``plan`` with an async ``run`` (``AsyncReader.run``)."""
    try:
        query = next(plan)
        while True:
            query = plan.send(await run(query))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


# --- writes ----------------------------------------------------------------------------


def _typed(serde: SerializerProtocol, value: Any) -> tuple[str, bytes]:
    kind, data = serde.dumps_typed(value)
    if kind == "pickle":
        raise InvalidInputError("serde", "wrote a pickle; memstream stores no pickle", kind)
    return kind, bytes(data)


def thread_of(config: RunnableConfig) -> tuple[str, str]:
    """(thread id, checkpoint namespace) of a config; the id as text, checked non-empty."""
    conf = config.get("configurable") or {}
    thread = conf.get("thread_id")
    if thread is None or str(thread) == "":
        raise InvalidInputError("configurable.thread_id", "is required")
    return str(thread), str(conf.get("checkpoint_ns") or "")


def put_event(
    serde: SerializerProtocol,
    config: RunnableConfig,
    checkpoint: Checkpoint,
    metadata: CheckpointMetadata,
    new_versions: ChannelVersions,
) -> CheckpointPut:
    """The ``checkpoint.put`` event of one ``put``: values of ``new_versions`` only."""
    thread, ns = thread_of(config)
    body: dict[str, Any] = dict(checkpoint)
    values: dict[str, Any] = body.pop("channel_values", {}) or {}
    blobs = []
    for channel, version in new_versions.items():
        kind, data = _typed(serde, values[channel]) if channel in values else ("empty", b"")
        blobs.append(dict(channel=channel, version=str(version), type=kind, data=data))
    ck_kind, ck_data = _typed(serde, body)
    md_kind, md_data = _typed(serde, get_checkpoint_metadata(config, metadata))
    event = make(
        CheckpointPut, thread_id=thread, checkpoint_ns=ns, checkpoint_id=checkpoint["id"],
        parent_id=(config.get("configurable") or {}).get("checkpoint_id") or None,
        checkpoint=Typed(type=ck_kind, data=ck_data), metadata=Typed(type=md_kind, data=md_data),
        versions={ch: str(v) for ch, v in checkpoint["channel_versions"].items()},
        blobs=[_model(ChannelBlob, b) for b in blobs],
    )  # fmt: skip
    assert isinstance(event, CheckpointPut)
    return event


def writes_event(
    serde: SerializerProtocol,
    config: RunnableConfig,
    writes: Sequence[tuple[str, Any]],
    task_id: str,
    task_path: str,
) -> CheckpointWrites | None:
    """The ``checkpoint.writes`` event of one ``put_writes`` (None for no writes)."""
    if not writes:
        return None
    thread, ns = thread_of(config)
    checkpoint_id = (config.get("configurable") or {}).get("checkpoint_id")
    made = []
    for i, (channel, value) in enumerate(writes):
        kind, data = _typed(serde, value)
        made.append(_model(PendingWrite, dict(channel=channel, idx=WRITES_IDX_MAP.get(channel, i),
                                              type=kind, data=data)))  # fmt: skip
    event = make(CheckpointWrites, thread_id=thread, checkpoint_ns=ns, checkpoint_id=checkpoint_id,
                 task_id=task_id, task_path=task_path, writes=made)  # fmt: skip
    assert isinstance(event, CheckpointWrites)
    return event


def _model(model: type[Any], fields: dict[str, Any]) -> Any:
    from pydantic import ValidationError

    from memstream.producers.core import invalid_from_pydantic

    try:
        return model(**fields)
    except ValidationError as e:
        raise invalid_from_pydantic(e) from e


def oversized(event: Event, error: InvalidInputError) -> InvalidInputError:
    """``error`` (the producer's size check) naming the event's largest value instead."""
    parts: list[tuple[int, str]] = []
    if isinstance(event, CheckpointPut):
        parts = [(len(event.checkpoint.data), "checkpoint"), (len(event.metadata.data), "metadata")]
        parts += [(len(b.data), f"channel_values[{b.channel!r}]") for b in event.blobs]
    elif isinstance(event, CheckpointWrites):
        parts = [(len(w.data), f"writes[{w.channel!r}]") for w in event.writes]
    if not parts:
        return error
    size, name = max(parts)
    return InvalidInputError(
        name, f"serialized to {size} bytes, and the checkpoint event is too large: {error.rule}"
    )


# --- reads ------------------------------------------------------------------------------


def _loads(serde: SerializerProtocol, typed: tuple[str, bytes]) -> Any:
    if typed[0] == "pickle":
        raise MemstreamError("a stored checkpoint value is a pickle: refused")
    return serde.loads_typed(typed)


def to_tuple(serde: SerializerProtocol, thread: str, record: Record) -> CheckpointTuple:
    """A stored record as LangGraph's ``CheckpointTuple``."""
    checkpoint = _loads(serde, record.checkpoint)
    checkpoint["channel_values"] = {ch: _loads(serde, v) for ch, v in record.values.items()}
    conf = {"thread_id": thread, "checkpoint_ns": record.ns}
    parent = None
    if record.parent_id:
        parent = {"configurable": {**conf, "checkpoint_id": record.parent_id}}
    return CheckpointTuple(
        config={"configurable": {**conf, "checkpoint_id": record.checkpoint_id}},
        checkpoint=checkpoint,
        metadata=_loads(serde, record.metadata),
        parent_config=parent,  # type: ignore[arg-type]
        pending_writes=[(w[0], w[1], _loads(serde, w[2])) for w in record.writes],
    )


def _matches(metadata: Mapping[str, Any], want: Mapping[str, Any] | None) -> bool:
    return not want or all(metadata.get(k) == v for k, v in want.items())


def get_plan(
    pk: keys.Projection, owner: str, serde: SerializerProtocol, config: RunnableConfig, page: int
) -> Plan[CheckpointTuple | None]:
    """``get_tuple``: the config's checkpoint, or the namespace's newest one."""
    thread, ns = thread_of(config)
    wanted = (config.get("configurable") or {}).get("checkpoint_id")
    if wanted:
        found = yield from _load(pk, owner, serde, thread, [(ns, str(wanted))])
        return found[0] if found else None
    before: str | None = None
    while True:
        refs = yield read_refs(pk, owner, thread, ns=ns, before=before, count=page)
        found = yield from _load(pk, owner, serde, thread, refs, limit=1)
        if found or len(refs) < page:
            return found[0] if found else None
        before = refs[-1][1]  # every ref of this page was deleted: look further back


def list_page(
    pk: keys.Projection, owner: str, serde: SerializerProtocol, thread: str, *,
    ns: str | None, before: str | None, want: int, filter: Mapping[str, Any] | None,
    only: str | None = None,
) -> Plan[tuple[list[CheckpointTuple], str | None]]:  # fmt: skip
    """One page of ``list``: up to ``want`` matches older than ``before`` (with id
    ``only`` when given), and the cursor of the next page (None when there is no more)."""
    refs = yield read_refs(pk, owner, thread, ns=ns, before=before, count=want)
    chosen = [r for r in refs if only is None or r[1] == only]
    found = yield from _load(pk, owner, serde, thread, chosen, filter=filter)
    return found, (refs[-1][1] if len(refs) == want else None)


def threads_plan(pk: keys.Projection, owner: str) -> Plan[list[str]]:
    """Every thread of ``owner`` (``list(None)``)."""
    threads = yield read_threads(pk, owner)
    return threads  # type: ignore[no-any-return]


def _load(
    pk: keys.Projection, owner: str, serde: SerializerProtocol, thread: str,
    refs: Sequence[tuple[str, str]], *, filter: Mapping[str, Any] | None = None,
    limit: int | None = None,
) -> Plan[list[CheckpointTuple]]:  # fmt: skip
    if not refs:
        return []

    def keep(record: Record) -> bool:
        return _matches(_loads(serde, record.metadata), filter)

    found = yield read_checkpoints(pk, owner, thread, refs, keep=keep if filter else None,
                                   limit=limit)  # fmt: skip
    return [to_tuple(serde, thread, r) for r in found]


def copy_plan(pk: keys.Projection, owner: str, source: str, target: str) -> Plan[list[Event]]:
    """``copy_thread``: every checkpoint of ``source`` (all namespaces, oldest first) and
    its writes as events of ``target``, the stored bytes as they are (nothing decoded)."""
    refs = yield read_refs(pk, owner, source, ns=None, before=None, count=1 << 30)
    if not refs:
        return []
    full: list[Record] = yield read_checkpoints(pk, owner, source, refs)
    events: list[Event] = []
    for r in reversed(full):
        events.append(CheckpointPut(
            thread_id=target, checkpoint_ns=r.ns, checkpoint_id=r.checkpoint_id,
            parent_id=r.parent_id, checkpoint=Typed(type=r.checkpoint[0], data=r.checkpoint[1]),
            metadata=Typed(type=r.metadata[0], data=r.metadata[1]), versions=r.versions,
            blobs=[_copied_blob(r, ch, ver) for ch, ver in r.versions.items()],
        ))  # fmt: skip
        by_task: dict[tuple[str, str], list[PendingWrite]] = {}
        for task, channel, (kind, data), path, idx in r.writes:
            by_task.setdefault((task, path), []).append(
                PendingWrite(channel=channel, idx=idx, type=kind, data=data)
            )
        events += [CheckpointWrites(thread_id=target, checkpoint_ns=r.ns,
                                    checkpoint_id=r.checkpoint_id, task_id=task, task_path=path,
                                    writes=ws) for (task, path), ws in by_task.items()]  # fmt: skip
    return events


def _copied_blob(record: Record, channel: str, version: str) -> ChannelBlob:
    kind, data = record.values.get(channel, ("empty", b""))
    return ChannelBlob(channel=channel, version=version, type=kind, data=data)


REMOVE_CHUNK = 500
"""Checkpoints per ``checkpoint.removed`` event (each names its writes too)."""


def removal_plan(
    pk: keys.Projection, owner: str, serde: SerializerProtocol, threads: Sequence[str] | None,
    *, run_ids: set[str] | None = None,
) -> Plan[list[Event]]:  # fmt: skip
    """The ``checkpoint.removed`` events of ``delete_for_runs(run_ids)`` (every thread,
    ``threads`` None) or of ``prune(threads, "keep_latest")`` (``run_ids`` None: all but
    the newest checkpoint of each namespace). Values are never fetched: the choice is
    made on metadata and ids."""
    if threads is None:
        threads = yield read_threads(pk, owner)
    events: list[Event] = []
    for thread in threads:
        refs = yield read_refs(pk, owner, thread, ns=None, before=None, count=1 << 30)
        chooser = _Chooser(serde, run_ids)
        if refs:
            yield read_checkpoints(pk, owner, thread, refs, keep=chooser)
        gone = chooser.gone
        for at in range(0, len(gone), REMOVE_CHUNK):
            chunk = gone[at : at + REMOVE_CHUNK]
            events.append(CheckpointsRemoved(thread_id=thread, checkpoints=chunk))
    return events


class _Chooser:
    """The ``keep`` of a removal read: notes the checkpoints to remove, loads none."""

    def __init__(self, serde: SerializerProtocol, run_ids: set[str] | None) -> None:
        self.serde, self.run_ids = serde, run_ids
        self.gone: list[CheckpointRef] = []
        self.newest: set[str] = set()

    def __call__(self, record: Record) -> bool:
        if self.run_ids is not None:
            doomed = _loads(self.serde, record.metadata).get("run_id") in self.run_ids
        else:
            doomed = record.ns in self.newest  # refs come newest id first
            self.newest.add(record.ns)
        if doomed:
            ref = CheckpointRef(checkpoint_ns=record.ns, checkpoint_id=record.checkpoint_id,
                                writes=record.write_names)  # fmt: skip
            self.gone.append(ref)
        return False  # nothing to load
