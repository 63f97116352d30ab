"""Compressed agent state tensors: ``tensor.recorded`` -> a time index per owner and kind.

Each state is one member of a log-ordered set per (owner, kind): the sortable log id,
then a msgpack record (time, session, meta, shape, dtype, model version, and per group
its codec, payload and measured error). ``ZLOG`` keeps the newest ``tensor_cap`` states
(retention); counters of raw and stored bytes per kind are commutative ``HINCR`` s.

Convergence: the record is a pure function of the event and of the model version the
log assigns it (:mod:`.registry`), and encoding is deterministic (float64 numpy, fixed
zstd level), so any delivery order, duplicates included, stores the same members; the
ack gate keeps a re-delivered entry from counting twice. See docs/tensors.md.
"""

from __future__ import annotations

import math
from typing import Any, ClassVar

import msgpack
import numpy as np

from memstream.producers import keys
from memstream.producers.entry import StoredEvent
from memstream.producers.events_tensors import TensorRecorded
from memstream.producers.tensors import Group, layout

from ..base import ApplyContext, Projection
from ..ops import Writes, id_tuple, sortable
from .codec import LATENT, NP_DTYPE, encode_groups
from .model import GroupedModel
from .registry import ModelRegistry, Unavailable, Version, registry_for

__all__ = ["Tensors", "index_key", "kinds_key", "stats_key"]


def index_key(pk: keys.Projection, owner: str, kind: str) -> str:
    return pk.key("tensors", owner, kind)


def kinds_key(pk: keys.Projection, owner: str) -> str:
    """Sorted set kind -> newest state time: which kinds an owner has."""
    return pk.key("tensor_kinds", owner)


def stats_key(pk: keys.Projection, owner: str) -> str:
    """Hash of counters per kind: ``n:K``, ``raw:K``, ``stored:K``, ``lossless:K``."""
    return pk.key("tensor_stats", owner)


def model_layout(model: GroupedModel) -> list[Group]:
    return [Group(g["name"], g["start"], g["end"], g["bound"]) for g in model.config["groups"]]


def fits(model: GroupedModel, groups: list[Group], size: int) -> bool:
    """A model encodes a vector whose size and group ranges are the model's own (the
    bounds may differ: the event's are the ones enforced)."""
    ours = [(g.name, g.start, g.end) for g in model_layout(model)]
    return model.dim == size and ours == [(g.name, g.start, g.end) for g in groups]


class Tensors(Projection):
    name: ClassVar[str] = "tensors"
    key_names: ClassVar[frozenset[str]] = frozenset({"tensors", "tensor_kinds", "tensor_stats"})
    handles: ClassVar[frozenset[str]] = frozenset({"tensor.recorded"})

    def __init__(self, registry: ModelRegistry | None = None) -> None:
        self._registry = registry

    def registry(self, ctx: ApplyContext) -> ModelRegistry:
        return self._registry if self._registry is not None else registry_for(ctx.settings)

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        ev = event.event
        if not isinstance(ev, TensorRecorded):
            return
        record, raw, stored, fallbacks = self.encode(event, ev, ctx)
        version = sortable(event.log_id)
        owner, kind, pk = event.owner, ev.kind, ctx.keys
        writes.zlog(index_key(pk, owner, kind), version, record, cap=ctx.settings.tensor_cap)
        writes.zmax(kinds_key(pk, owner), kind, float(event.ts_ms))
        sk = stats_key(pk, owner)
        writes.hincr(sk, f"n:{kind}", 1)
        writes.hincr(sk, f"raw:{kind}", raw)
        writes.hincr(sk, f"stored:{kind}", stored)
        writes.hincr(sk, f"lossless:{kind}", fallbacks)

    def encode(
        self, event: StoredEvent, ev: TensorRecorded, ctx: ApplyContext
    ) -> tuple[bytes, int, int, int]:
        """The packed record, raw bytes, stored payload bytes, groups kept losslessly."""
        size = math.prod(ev.shape)
        groups = layout(ev.groups, ev.bounds, size)
        note = None
        chosen: Version | None = None
        try:
            chosen = self.registry(ctx).choose(ev.kind, event.owner, id_tuple(event.log_id))
        except Unavailable as e:
            note = str(e)
        model = chosen.model if chosen is not None else None
        if chosen is not None and model is None:
            note = f"model {chosen.event.version} unusable: {chosen.problem}"
        if model is not None and not ev.groups and model.dim == size:
            groups = model_layout(model)  # a kind's default groups live in its model
        if model is not None and not fits(model, groups, size):
            note = f"shape or groups do not match model {model.version}"
            model = None
        values = np.frombuffer(ev.data, dtype=NP_DTYPE[ev.dtype])
        stored = encode_groups(values, ev.dtype, groups, model)
        uses_model = any(g.codec == LATENT for g in stored)
        record: dict[str, Any] = {
            "ts": event.ts_ms,
            "session": event.session,
            "meta": ev.meta,
            "shape": ev.shape,
            "dtype": ev.dtype,
            "model": model.version if model is not None and uses_model else None,
            "groups": [g.row() for g in stored],
            "note": note,
        }
        payload = sum(len(g.payload) for g in stored)
        fallbacks = sum(g.codec != LATENT for g in stored)
        packed: bytes = msgpack.packb(record, use_bin_type=True)
        return packed, len(ev.data), payload, fallbacks


def stats_by_kind(raw: dict[bytes, bytes]) -> dict[str, dict[str, float]]:
    """The ``tensor_stats`` hash per kind: states folded, raw and stored payload bytes,
    their ratio and the share of groups kept losslessly (over every state ever folded,
    retention aside)."""
    out: dict[str, dict[str, float]] = {}
    for field, value in raw.items():
        name, _, kind = field.decode().partition(":")
        out.setdefault(kind, {})[name] = int(value)
    for figures in out.values():
        stored = figures.get("stored", 0)
        figures["ratio"] = figures.get("raw", 0) / stored if stored else 0.0
    return dict(sorted(out.items()))
