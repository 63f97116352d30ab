"""Event types of LangGraph's checkpointer (``memstream.integrations.langgraph_checkpoint``,
read model ``projections/checkpoints.py``). Importing :mod:`memstream.producers` registers
them.

A checkpoint is addressed as LangGraph addresses it: a thread id (any string), a
checkpoint namespace and a checkpoint id. None of them ever becomes part of a Redis key
as it is: the projection hashes the thread id and keeps the others inside values and
sorted-set members, joined with control characters they may not contain.

Values travel as LangGraph's serializer wrote them (``(type, bytes)`` of ``dumps_typed``);
``pickle`` is refused here, so no event can carry one to a reader.
"""

from __future__ import annotations

import re
from typing import Annotated, ClassVar

from pydantic import AfterValidator, BaseModel, ConfigDict, Field

from .events import Blob, Event, register

_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


def _no_control(value: str) -> str:
    # The projection joins these names with \x1f (unit separator) in hash fields and
    # sorted-set members, so a control character could forge another checkpoint's name.
    if _CONTROL.search(value):
        raise ValueError("must not contain control characters")
    return value


def _not_pickle(value: str) -> str:
    if value == "pickle":
        raise ValueError("pickled values are refused (memstream stores no pickle)")
    return value


ThreadId = Annotated[str, Field(min_length=1, max_length=4096)]
Name = Annotated[str, Field(min_length=1, max_length=1024), AfterValidator(_no_control)]
Namespace = Annotated[str, Field(max_length=1024), AfterValidator(_no_control)]
SerdeType = Annotated[str, Field(pattern=r"^[A-Za-z0-9_.-]{1,32}$"), AfterValidator(_not_pickle)]
Version = Annotated[str, Field(min_length=1, max_length=128), AfterValidator(_no_control)]


class Typed(BaseModel):
    """One value as ``SerializerProtocol.dumps_typed`` returned it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    type: SerdeType
    data: Blob


class ChannelBlob(Typed):
    """A channel's value at one of its versions (type ``empty``: the channel has none)."""

    channel: Name
    version: Version


class PendingWrite(Typed):
    """One write of a task: ``idx`` is its index, or LangGraph's negative index of a
    special channel (errors, interrupts), which a later write replaces."""

    channel: Name
    idx: Annotated[int, Field(ge=-1_000_000, le=1_000_000)]


@register
class CheckpointPut(Event):
    """A checkpoint of a thread: the checkpoint without its channel values, its metadata,
    and the values of the channels whose version changed (``blobs``).

    ``versions``: channel -> version (as text) of every channel the checkpoint holds, so
    the projection's reads find their values without decoding the checkpoint."""

    TYPE: ClassVar[str] = "checkpoint.put"
    thread_id: ThreadId
    checkpoint_ns: Namespace = ""
    checkpoint_id: Name
    parent_id: Name | None = None
    checkpoint: Typed
    metadata: Typed
    versions: dict[Name, Version] = Field(default_factory=dict, max_length=10_000)
    blobs: list[ChannelBlob] = Field(default_factory=list, max_length=10_000)


@register
class CheckpointWrites(Event):
    """Pending writes of one task against a checkpoint (LangGraph's ``put_writes``)."""

    TYPE: ClassVar[str] = "checkpoint.writes"
    thread_id: ThreadId
    checkpoint_ns: Namespace = ""
    checkpoint_id: Name
    task_id: Name
    task_path: Annotated[str, Field(max_length=4096)] = ""
    writes: list[PendingWrite] = Field(min_length=1, max_length=10_000)


@register
class CheckpointThreadDeleted(Event):
    """Delete every checkpoint and write of a thread; older ones that arrive late stay
    deleted, newer ones (the thread used again) are kept."""

    TYPE: ClassVar[str] = "checkpoint.thread_deleted"
    thread_id: ThreadId


def _write_name(value: str) -> str:
    task, sep, idx = value.partition("\x1f")
    if not sep or not task or _CONTROL.search(task) or re.fullmatch(r"-?\d{1,7}", idx) is None:
        raise ValueError("must be a task id, \\x1f and a write index")
    return value


class CheckpointRef(BaseModel):
    """One checkpoint of a thread, and the names of its pending writes
    (``task␟idx``) to remove with it."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    checkpoint_ns: Namespace = ""
    checkpoint_id: Name
    writes: list[Annotated[str, Field(max_length=2048), AfterValidator(_write_name)]] = Field(
        default_factory=list, max_length=10_000
    )


@register
class CheckpointsRemoved(Event):
    """Remove single checkpoints of a thread and their writes (LangGraph's ``prune`` and
    ``delete_for_runs``): their lookups become tombstones, so a put of the same id that
    is older stays removed and a newer one is kept. Their payload bytes stay until the
    thread is deleted or the owner forgotten."""

    TYPE: ClassVar[str] = "checkpoint.removed"
    thread_id: ThreadId
    checkpoints: list[CheckpointRef] = Field(min_length=1, max_length=1_000)
