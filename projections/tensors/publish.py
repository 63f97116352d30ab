"""Training input from the logs, and publishing a trained model version.

Publishing writes the content-addressed blob first (``HSETNX``: a version is immutable,
a second publish of the same bytes changes nothing), then appends
``tensor.model_published`` to the models log. Workers only ever see a version whose
blob already exists; one whose blob is lost or corrupt is stored around (lossless).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import numpy as np
import redis

from memstream.producers import keys
from memstream.producers.entry import decode_entry
from memstream.producers.events_tensors import TensorModelPublished, TensorRecorded
from memstream.producers.producer import Producer
from memstream.producers.receipt import Receipt
from memstream.producers.tensors import ITEMSIZE, Group, layout

from .codec import NP_DTYPE
from .model import F64, canonical, content_hash


@dataclass(frozen=True, slots=True)
class Recorded:
    owner: str
    log_id: str
    event: TensorRecorded


def recorded(client: redis.Redis, kind: str, owner: str | None = None) -> Iterator[Recorded]:
    """Every ``tensor.recorded`` of ``kind`` in the logs (one owner's, or all), in log order
    per owner."""
    if owner is not None:
        partitions = int(client.hget(keys.META, "partitions") or keys.DEFAULT_PARTITIONS)
        streams = [keys.log(keys.partition(owner, partitions), owner)]
    else:
        streams = sorted(k.decode() for k in client.scan_iter(match=keys.log_pattern(), count=1000))
    for stream in streams:
        who = stream.rsplit(":", 1)[1]
        start = "-"
        while True:
            rows: Any = client.xrange(stream, start, "+", count=1000)
            for raw_id, fields in rows:
                try:
                    ev = decode_entry(who, raw_id.decode(), fields).event
                except Exception:  # noqa: S112 - the worker dead-letters it; training skips it
                    continue
                if isinstance(ev, TensorRecorded) and ev.kind == kind:
                    yield Recorded(who, raw_id.decode(), ev)
            if len(rows) < 1000:
                break
            start = "(" + rows[-1][0].decode()


def matrix(states: list[Recorded]) -> tuple[F64, list[Group], int]:
    """The training matrix (float64) of the most common size, its groups, the item size."""
    if not states:
        raise ValueError("no recorded tensors of this kind")
    sizes: dict[int, int] = {}
    for s in states:
        size = len(s.event.data) // ITEMSIZE[s.event.dtype]
        sizes[size] = sizes.get(size, 0) + 1
    size = max(sizes, key=lambda n: (sizes[n], n))
    mine = [s for s in states if len(s.event.data) // ITEMSIZE[s.event.dtype] == size]
    first = mine[-1].event  # the newest layout wins
    groups = layout(first.groups, first.bounds, size)
    rows = [np.frombuffer(s.event.data, NP_DTYPE[s.event.dtype]).astype(np.float64) for s in mine]
    return np.stack(rows), groups, ITEMSIZE[first.dtype]


def serialise(config: dict[str, Any], weights: dict[str, F64]) -> tuple[bytes, bytes, str]:
    from safetensors.numpy import save

    config_json = canonical(config)
    blob = save({k: np.ascontiguousarray(v) for k, v in sorted(weights.items())})
    return config_json, blob, content_hash(config_json, blob)


def publish(
    client: redis.Redis, producer: Producer, config: dict[str, Any], weights: dict[str, F64]
) -> tuple[TensorModelPublished, Receipt]:
    """Store the blob (once) and append the publication; returns the event and receipt."""
    config_json, blob, sha = serialise(config, weights)
    key = keys.tensor_model(sha)
    pipe = client.pipeline(transaction=True)
    pipe.hsetnx(key, "config", config_json)
    pipe.hsetnx(key, "weights", blob)
    pipe.execute()
    event = TensorModelPublished(
        kind=config["kind"],
        scope=config.get("scope"),
        version=sha[:16],
        sha256=sha,
        config=config,
    )
    return event, producer.append(keys.TENSOR_MODELS_OWNER, event)
