"""Reads of compressed state tensors, decoded to numpy (see docs/tensors.md).

Mixed into :class:`~memstream.projections.reader.AsyncReader` (AsyncTensorReads) and the
blocking ``Reader`` (TensorReads). A read is one round trip for the states, plus, the
first time a model version is met, one for its publication and one for its weights;
versions are immutable, so loaded models are kept for the life of the process. numpy,
zstandard and safetensors are imported on the first tensor read only.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import msgpack

from memstream.producers import keys
from memstream.producers.deployment import Deployment
from memstream.producers.entry import decode_entry
from memstream.producers.errors import InvalidInputError, MemstreamError
from memstream.producers.events_tensors import TensorModelPublished

from .base import AsyncRunner, Query, SyncRunner, doc_from, pk_of
from .ops import log_id_of, sortable
from .results import TensorState

if TYPE_CHECKING:
    from .tensors.model import GroupedModel

_MODELS: dict[str, GroupedModel] = {}
"""version -> model: immutable, content-checked on load."""
_LOCK = threading.Lock()


def _last(last: int) -> int:
    if isinstance(last, bool) or not isinstance(last, int) or not 1 <= last <= 10_000:
        raise InvalidInputError("last", "must be an integer between 1 and 10000", last)
    return last


def _decode(member: bytes) -> dict[str, Any]:
    from .tensors.codec import decode_groups

    version, record = member[:24].decode(), msgpack.unpackb(member[24:], raw=False)
    size = math.prod(record["shape"])
    model = _MODELS.get(record["model"]) if record["model"] else None
    if record["model"] and model is None:
        raise MemstreamError(
            f"state {log_id_of(version)} needs tensor model {record['model']}, whose weights "
            "are missing or corrupt (see `memstream tensors list`)"
        )
    flat = decode_groups(record["groups"], size, record["dtype"], model)
    rows = record["groups"]
    return {
        "log_id": log_id_of(version),
        "time_ms": record["ts"],
        "session": record["session"],
        "meta": record["meta"],
        "shape": record["shape"],
        "dtype": record["dtype"],
        "array": flat.reshape(record["shape"]),
        "model": record["model"],
        "codecs": {r[0]: r[4] for r in rows},
        "errors": {r[0]: r[6] for r in rows},
        "bounds": {r[0]: r[3] for r in rows},
        "stored_bytes": sum(len(r[5]) for r in rows),
        "raw_bytes": flat.nbytes,
        "note": record["note"],
    }


def _with_models(members: Sequence[bytes], models_log: str) -> Query[list[dict[str, Any]]]:
    """Decode ``members``, first loading any model version they need."""
    needed = set()
    for member in members:
        version = msgpack.unpackb(member[24:], raw=False)["model"]
        if version and version not in _MODELS:
            needed.add(version)

    def done(_: list[Any]) -> list[dict[str, Any]]:
        return [_decode(m) for m in members]

    if not needed:
        return Query([], done)

    def publications(replies: list[Any]) -> Query[list[dict[str, Any]]]:
        shas = []
        for raw_id, fields in replies[0]:
            event = decode_entry(keys.TENSOR_MODELS_OWNER, raw_id.decode(), fields).event
            if isinstance(event, TensorModelPublished) and event.version in needed:
                shas.append(event.sha256)
        return Query(
            [("HMGET", keys.tensor_model(s), "config", "weights") for s in shas],
            lambda blobs: _load(shas, blobs, done),
        )

    return Query([("XRANGE", models_log, "-", "+")], publications)


def _load(shas: list[str], blobs: list[Any], done: Any) -> Query[list[dict[str, Any]]]:
    from .tensors.model import GroupedModel, ModelError

    with _LOCK:
        for sha, (config, weights) in zip(shas, blobs, strict=True):
            if config is not None and weights is not None:
                try:
                    model = GroupedModel.load(sha, config, weights)
                except ModelError:
                    continue  # the state that needs it says so in _decode
                _MODELS[model.version] = model
    return Query([], done)


def _models_log(where: keys.Projection) -> str:
    """The publishing log, given the projection keys of its owner's partition."""
    return keys.log(where.p, keys.TENSOR_MODELS_OWNER)


def _tensors(d: Deployment, owner: str, kind: str, last: int) -> Query[list[dict[str, Any]]]:
    from .tensors import index_key

    keys.check_id(kind, "kind")
    models_log = _models_log(pk_of(d, keys.TENSOR_MODELS_OWNER))
    key = index_key(pk_of(d, owner), owner, kind)
    return Query([("ZRANGE", key, -_last(last), -1)],
                 lambda replies: _with_models(replies[0], models_log))  # fmt: skip


def _tensor(d: Deployment, owner: str, log_id: str) -> Query[list[dict[str, Any]]]:
    from .tensors import index_key, kinds_key

    try:
        start = sortable(log_id)
    except ValueError as e:
        raise InvalidInputError("log_id", "must be a stream id like 1700000000000-0", log_id) from e
    pk = pk_of(d, owner)
    models_log = _models_log(pk_of(d, keys.TENSOR_MODELS_OWNER))

    def found(replies: list[Any]) -> Query[list[dict[str, Any]]]:
        hits = [m for reply in replies for m in reply]
        return _with_models(hits[:1], models_log)

    def by_kind(replies: list[Any]) -> Query[list[dict[str, Any]]]:
        kinds = [k.decode() for k in replies[0]]
        lo, hi = f"[{start}", f"({start}\xff"
        return Query([("ZRANGE", index_key(pk, owner, k), lo, hi, "BYLEX") for k in kinds], found)

    return Query([("ZRANGE", kinds_key(pk, owner), 0, -1)], by_kind)


def _first(states: list[dict[str, Any]]) -> TensorState | None:
    return TensorState.of(states[0]) if states else None


class AsyncTensorReads:
    async def tensors(
        self: AsyncRunner, owner: str, kind: str = "state", *, last: int = 20
    ) -> list[TensorState]:
        """The ``last`` (1 to 10,000) newest states of ``owner``'s ``kind``, oldest first,
        decoded: ``array`` (numpy, recorded shape and dtype), ``log_id``, ``time_ms``,
        ``session``, ``meta``, ``model`` (version or None), per group ``codecs``,
        ``errors`` (measured relative L2) and ``bounds``, ``stored_bytes``."""
        return TensorState.many(await self._read(_tensors, owner, kind, last))

    async def tensor(self: AsyncRunner, owner: str, log_id: str) -> TensorState | None:
        """``owner``'s state recorded at ``log_id`` (any kind), decoded as in
        :meth:`tensors`, or None when it is not (or no longer) stored."""
        return _first(await self._read(_tensor, owner, log_id))


class TensorReads:
    """The blocking twins of :class:`AsyncTensorReads`: the same plans, the same results."""

    @doc_from(AsyncTensorReads.tensors)
    def tensors(
        self: SyncRunner, owner: str, kind: str = "state", *, last: int = 20
    ) -> list[TensorState]:
        return TensorState.many(self._read(_tensors, owner, kind, last))

    @doc_from(AsyncTensorReads.tensor)
    def tensor(self: SyncRunner, owner: str, log_id: str) -> TensorState | None:
        return _first(self._read(_tensor, owner, log_id))
