"""One stored state: encode every group (latent or lossless), measure, pack; and decode.

A group is kept as its model's float16 latent only when the vector decoded from that
latent, cast back to the recorded dtype, is within ``SAFETY`` x the group's bound in
relative L2 error; otherwise (no model, a model that does not fit, a vector far from
the training data, a non-finite latent) the group's exact bytes are kept, zstd-compressed
when that is smaller. Errors are measured on exactly what a read returns.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import zstandard

from memstream.producers.tensors import Group

from .model import F64, SAFETY, GroupedModel, GroupNet

NP_DTYPE = {"float16": np.float16, "float32": np.float32, "float64": np.float64}
LATENT, ZSTD, RAW = "vae", "zstd", "raw"
ZSTD_LEVEL = 9


@dataclass(frozen=True, slots=True)
class StoredGroup:
    name: str
    start: int
    end: int
    bound: float
    codec: str
    payload: bytes
    error: float

    def row(self) -> list[Any]:
        return [self.name, self.start, self.end, self.bound, self.codec, self.payload, self.error]


def relative_error(x: F64, y: F64) -> float:
    """||x - y|| / ||x||; 0 when both are zero, inf when y is not finite or x is zero."""
    if not np.all(np.isfinite(y)):
        return math.inf
    norm = float(np.linalg.norm(x))
    diff = float(np.linalg.norm(x - y))
    if norm == 0.0:
        return 0.0 if diff == 0.0 else math.inf
    return diff / norm


_local = threading.local()


def _zstd() -> tuple[zstandard.ZstdCompressor, zstandard.ZstdDecompressor]:
    # One pair per thread: zstandard's objects are not thread-safe, and planners of
    # several partitions run in threads at once (a shared compressor made different
    # frames for the same bytes, and failed, under the crash test).
    pair = getattr(_local, "pair", None)
    if pair is None:
        pair = _local.pair = (
            zstandard.ZstdCompressor(level=ZSTD_LEVEL, write_checksum=False,
                                     write_content_size=True, write_dict_id=False),
            zstandard.ZstdDecompressor(),
        )  # fmt: skip
    return pair


def lossless(group: Group, raw: bytes) -> StoredGroup:
    packed = _zstd()[0].compress(raw)
    codec, payload = (ZSTD, packed) if len(packed) < len(raw) else (RAW, raw)
    return StoredGroup(group.name, group.start, group.end, group.bound, codec, payload, 0.0)


def encode_groups(
    values: np.ndarray[Any, Any], dtype: str, groups: Sequence[Group], model: GroupedModel | None
) -> list[StoredGroup]:
    """Encode one flattened vector (in its recorded dtype) group by group."""
    x64 = values.astype(np.float64)
    out = []
    for group in groups:
        part = values[group.start : group.end]
        net = model.net(group.name) if model is not None else None
        found = None
        if net is not None and net.spec.latent > 0:
            found = _latent(net, x64[group.start : group.end], dtype, group, len(part.tobytes()))
        out.append(found or lossless(group, part.tobytes()))
    return out


def _latent(
    net: GroupNet, x: F64, dtype: str, group: Group, lossless_bytes: int
) -> StoredGroup | None:
    """The latent, plus as few sparse corrections as the bound needs (the residuals with
    the largest magnitude, as float16), or None when that costs more than lossless."""
    limit = group.bound * SAFETY
    with np.errstate(all="ignore"):
        z = net.encode(x[None])[0].astype(np.float16)
        base = net.decode(z.astype(np.float64)[None])[0]
        err = relative_error(x, base.astype(NP_DTYPE[dtype]).astype(np.float64))
        if err <= limit:
            return StoredGroup(group.name, group.start, group.end, group.bound, LATENT,
                               z.tobytes(), err)  # fmt: skip
        if not np.all(np.isfinite(base)) or x.size > MAX_SPARSE_GROUP:
            return None
        residual = x - base
        order = np.argsort(-np.abs(residual), kind="stable")
        # Corrections needed if each were exact: the first m whose removal brings the
        # residual energy under the bound; rounding may need a few more.
        left = float(residual @ residual) - np.cumsum(residual[order] ** 2)
        m = int(np.searchsorted(-left, -((limit * float(np.linalg.norm(x))) ** 2))) + 1
        index = index_dtype(x.size)
        while 2 * z.size + 2 + correction_bytes(x.size) * m < lossless_bytes and m <= x.size:
            idx = np.sort(order[:m]).astype(index)
            scale, steps = _quantised(residual[idx.astype(np.int64)])
            back = _corrected(base, idx, scale, steps).astype(NP_DTYPE[dtype])
            err = relative_error(x, back.astype(np.float64))
            if err <= limit:
                payload = z.tobytes() + scale.tobytes() + idx.tobytes() + steps.tobytes()
                return StoredGroup(group.name, group.start, group.end, group.bound, LATENT,
                                   payload, err)  # fmt: skip
            m += max(1, m // 16)  # a few more at a time: long searches cost encode time
    return None


MAX_SPARSE_GROUP = 65_536
"""Correction indices are at most uint16."""


def index_dtype(features: int) -> str:
    """A correction's index: one byte for groups of up to 256 features, else two."""
    return "u1" if features <= 256 else "<u2"


def correction_bytes(features: int) -> int:
    """A sparse correction: its index and an int8 step of the vector's correction scale
    (one float16 per group, stored once before the indices)."""
    return 2 if features <= 256 else 3


def _quantised(values: F64) -> tuple[np.ndarray[Any, Any], np.ndarray[Any, Any]]:
    """Residuals as int8 steps of one float16 scale (largest residual = 127 steps)."""
    scale = np.array([np.max(np.abs(values)) / 127], dtype="<f2")
    unit = float(scale[0]) or 1.0
    steps = np.clip(np.round(values / unit), -127, 127).astype("i1")
    return scale, steps


def _corrected(
    base: F64, idx: np.ndarray[Any, Any], scale: np.ndarray[Any, Any], steps: np.ndarray[Any, Any]
) -> F64:
    out = base.copy()
    out[idx.astype(np.int64)] += steps.astype(np.float64) * float(scale[0])
    return out


def decode_groups(
    rows: Sequence[Sequence[Any]], size: int, dtype: str, model: GroupedModel | None
) -> np.ndarray[Any, Any]:
    """The flattened vector from stored group rows; raises ValueError when a latent's
    model is missing."""
    out = np.zeros(size, dtype=NP_DTYPE[dtype])
    for name, start, end, _bound, codec, payload, _err in rows:
        if codec == RAW:
            out[start:end] = np.frombuffer(payload, dtype=NP_DTYPE[dtype])
        elif codec == ZSTD:
            out[start:end] = np.frombuffer(_zstd()[1].decompress(payload), NP_DTYPE[dtype])
        else:
            net = model.net(name) if model is not None else None
            if net is None:
                raise ValueError(f"group {name} needs its model version, which is not loaded")
            k = net.spec.latent
            m = max(len(payload) - 2 * k - 2, 0) // correction_bytes(end - start)
            z = np.frombuffer(payload, dtype="<f2", count=k).astype(np.float64)
            with np.errstate(all="ignore"):
                base = net.decode(z[None])[0]
                if m:
                    index = index_dtype(end - start)
                    scale = np.frombuffer(payload, dtype="<f2", count=1, offset=2 * k)
                    idx = np.frombuffer(payload, dtype=index, count=m, offset=2 * k + 2)
                    at = 2 * k + 2 + m * np.dtype(index).itemsize
                    steps = np.frombuffer(payload, dtype="i1", count=m, offset=at)
                    base = _corrected(base, idx, scale, steps)
                out[start:end] = base.astype(NP_DTYPE[dtype])
    return out
