"""The in-process list of published tensor model versions, and which one encodes an event.

Projections never read Redis while planning, yet the planner needs the models. So a
worker keeps this registry: a cache of the (immutable, content-addressed) model versions
and of the one log that publishes them (``keys.TENSOR_MODELS_OWNER``). The choice of
version for an event is a pure function of the log:

    the newest ``tensor.model_published`` of the event's kind (an owner-scoped one before
    a kind-wide one) whose log id is older than the event's log id.

Log ids of different streams are both Redis server milliseconds, so the rule holds across
partitions. To apply it the registry must know every publication older than the event.
Its snapshot records the server time it was read at (``TIME`` in the same pipeline as the
``XRANGE``); a later publication gets an id at or after that time, so the snapshot is
complete for every event older than it. An event at or after the snapshot's time makes the
registry refresh first: one pipelined round trip on its own connection, about once per
batch of fresh events, never for replay (old events). Models are loaded once per sha256.

If the registry cannot refresh within :data:`WAIT_S` (Redis unreachable), the state is
stored losslessly with a note: always correct, but a later replay may then encode it.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from memstream.producers import keys
from memstream.producers.entry import decode_entry
from memstream.producers.events_tensors import TensorModelPublished
from memstream.producers.settings import Settings

from .model import GroupedModel, ModelError

log = logging.getLogger("memstream.tensors")

WAIT_S = 5.0
LogId = tuple[int, int]


@dataclass(frozen=True, slots=True)
class Version:
    """One publication: where it sits in the log and, when it loaded, its model."""

    log_id: LogId
    event: TensorModelPublished
    model: GroupedModel | None
    problem: str | None = None


@dataclass(slots=True)
class Snapshot:
    versions: list[Version] = field(default_factory=list)
    through_ms: float = 0.0
    """Every publication with a log time below this is in ``versions``."""


class Unavailable(Exception):
    """The registry could not be refreshed: the caller stores losslessly."""


Loader = Callable[["ModelRegistry"], Snapshot]


class ModelRegistry:
    """Thread-safe: planners of several partitions may ask at once."""

    def __init__(self, loader: Loader | None = None, versions: Sequence[Version] = ()) -> None:
        self._loader = loader
        self._snap = Snapshot(list(versions), float("inf") if loader is None else 0.0)
        self._lock = threading.Lock()
        self.models: dict[str, GroupedModel | ModelError] = {}
        """sha256 -> loaded model or why it failed; versions never change, so cached."""

    @classmethod
    def fixed(cls, versions: Sequence[Version]) -> ModelRegistry:
        """A registry that never reads Redis (tests, the convergence harness)."""
        return cls(None, versions)

    def choose(self, kind: str, owner: str, log_id: LogId) -> Version | None:
        """The version that encodes an event of ``kind`` by ``owner`` at ``log_id``."""
        snap = self._snapshot(log_id[0])
        best: Version | None = None
        for version in snap.versions:
            ev = version.event
            if ev.kind != kind or ev.scope not in (None, owner) or version.log_id >= log_id:
                continue
            rank = (ev.scope is not None, version.log_id)
            if best is None or rank > (best.event.scope is not None, best.log_id):
                best = version
        return best

    def by_version(self, version: str) -> Version | None:
        return next((v for v in self._snap.versions if v.event.version == version), None)

    def versions(self) -> list[Version]:
        return list(self._snap.versions)

    def _snapshot(self, event_ms: int) -> Snapshot:
        snap = self._snap
        if event_ms < snap.through_ms or self._loader is None:
            return snap
        deadline = time.monotonic() + WAIT_S
        with self._lock:
            while self._snap.through_ms <= event_ms:
                try:
                    self._snap = self._loader(self)
                except Exception as e:
                    if time.monotonic() > deadline:
                        raise Unavailable(f"model registry unavailable: {e}") from e
                    time.sleep(0.05)
                    continue
                if self._snap.through_ms <= event_ms:
                    time.sleep(0.001)  # the event's own millisecond: wait for the next
            return self._snap


class RedisLoader:
    """Reads the publishing log and the model blobs with its own blocking connection."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._client: Any = None
        self._seen: dict[bytes, Version] = {}

    def __call__(self, registry: ModelRegistry) -> Snapshot:
        from memstream.producers.connection import sync_client

        if self._client is None:
            self._client = sync_client(self.settings)
        client = self._client
        partitions = int(client.hget(keys.META, "partitions") or keys.DEFAULT_PARTITIONS)
        owner = keys.TENSOR_MODELS_OWNER
        stream = keys.log(keys.partition(owner, partitions), owner)
        pipe = client.pipeline(transaction=False)
        pipe.xrange(stream, "-", "+")
        pipe.time()
        entries, (secs, micros) = pipe.execute()
        versions = []
        for raw_id, fields in entries:
            version = self._seen.get(raw_id) or self._version(registry, raw_id, fields)
            if version is not None:
                self._seen[raw_id] = version
                versions.append(version)
        return Snapshot(versions, secs * 1000 + micros // 1000)

    def _version(self, registry: ModelRegistry, raw_id: bytes, fields: Any) -> Version | None:
        log_id = raw_id.decode()
        try:
            event = decode_entry(keys.TENSOR_MODELS_OWNER, log_id, fields).event
        except Exception as e:
            log.warning("tensor model publication %s is unreadable: %s", log_id, e)
            return None
        if not isinstance(event, TensorModelPublished):
            return None
        ms, _, seq = log_id.partition("-")
        found = registry.models.get(event.sha256)
        if found is None:
            found = self._load(event)
            registry.models[event.sha256] = found
        if isinstance(found, ModelError):
            self._client.hset(keys.TENSOR_PROBLEMS, event.version, str(found))
            return Version((int(ms), int(seq)), event, None, str(found))
        return Version((int(ms), int(seq)), event, found)

    def _load(self, event: TensorModelPublished) -> GroupedModel | ModelError:
        blob = self._client.hmget(keys.tensor_model(event.sha256), "config", "weights")
        if blob[0] is None or blob[1] is None:
            return ModelError(f"weights of {event.version} are missing")
        try:
            return GroupedModel.load(event.sha256, blob[0], blob[1])
        except ModelError as e:
            log.warning("tensor model %s cannot be used: %s", event.version, e)
            return e


_SHARED: dict[str, ModelRegistry] = {}
_SHARED_LOCK = threading.Lock()


def registry_for(settings: Settings) -> ModelRegistry:
    """The process's registry for one deployment (one per distinct settings)."""
    key = settings.model_dump_json()
    with _SHARED_LOCK:
        found = _SHARED.get(key)
        if found is None:
            found = _SHARED[key] = ModelRegistry(RedisLoader(settings))
        return found
