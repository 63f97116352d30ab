"""Every Redis key memstream uses is built here, and only here.

Keys of one partition share the hash tag ``{P}``, so a partition is one Cluster slot and a
single function call can touch its log, feed, heads and projections atomically. No key is
built from unchecked input: every id that lands in a key passes :func:`check_id` first.
"""

from __future__ import annotations

import functools
import hashlib
import re
from dataclasses import dataclass

from .errors import InvalidIdError

META = "ms:meta"
"""Deployment hash: partitions, active projection version, max_event_bytes, format."""

SIGNING_KEY = "ms:signing_key"
"""Secret that ``ms_append`` signs log entries with (docs/security.md). ``memstream init``
writes it and templates it into the function libraries; only workers and operators may
read it, so an entry a producer wrote around ``ms_append`` cannot carry a valid ``sig``."""

ID_RULE = (
    "must be 1 to 200 characters from A-Z a-z 0-9 . _ @ + = - and start with a letter or digit"
)
_ID_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+=\-]{0,199}")

DEFAULT_PARTITIONS = 16


_GOOD_IDS: set[str] = set()
"""Ids that passed: an append checks its owner and session, then builds a key of the
owner, and they repeat from one append to the next. Bounded by clearing at
:data:`_GOOD_MAX`; it holds verdicts only, so clearing loses nothing but time."""
_GOOD_MAX = 4096


def check_id(value: object, field: str = "owner") -> str:
    """Return ``value`` if it is a valid id, else raise :class:`InvalidIdError` naming ``field``.

    Ids are never escaped or guessed: a rejected id is the caller's bug to fix.
    """
    # Exactly str: a subclass could hash and compare equal to a good id it does not spell.
    if type(value) is str and value in _GOOD_IDS:
        return value
    if not isinstance(value, str):
        raise InvalidIdError(field, "must be a string " + ID_RULE, value)
    if _ID_RE.fullmatch(value) is None:
        raise InvalidIdError(field, ID_RULE, value)
    if type(value) is str:
        if len(_GOOD_IDS) >= _GOOD_MAX:
            _GOOD_IDS.clear()
        _GOOD_IDS.add(value)
    return value


@functools.lru_cache(maxsize=65_536)
def partition(owner: str, partitions: int) -> int:
    """The owner's partition: ``int(sha1(owner)[:8], 16) % partitions`` (wire contract).

    Cached: it runs on every append and read, and an agent talks to few owners. Invalid
    input raises, and raised calls are not cached.
    """
    check_id(owner)
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    digest = hashlib.sha1(owner.encode(), usedforsecurity=False).hexdigest()
    return int(digest[:8], 16) % partitions


def _tag(p: int) -> str:
    return f"ms:{{{p}}}"


def conf(p: int) -> str:
    """Per-partition copy of the settings ``ms_append`` needs (``partitions``,
    ``max_event_bytes``, ``eid_ttl``). It lives in the partition's slot because a Cluster
    function may only touch keys of the slot it was called for; ``ms:meta`` is elsewhere."""
    return f"{_tag(p)}:conf"


def log(p: int, owner: str) -> str:
    """The owner's log: the source of truth."""
    return f"{_tag(p)}:log:{check_id(owner)}"


def feed(p: int) -> str:
    """The partition's work queue of (owner, log id) pointers."""
    return f"{_tag(p)}:feed"


def heads(p: int) -> str:
    """Hash owner -> last log id; replay copies it as its cutoff."""
    return f"{_tag(p)}:heads"


def dlq(p: int) -> str:
    """Dead letters of the partition, each with its reason."""
    return f"{_tag(p)}:dlq"


def eid(p: int, owner: str, event_id: str) -> str:
    """Idempotency record of one append; expires after the dedup window."""
    return f"{_tag(p)}:eid:{check_id(owner)}:{check_id(event_id, 'eid')}"


def eid_pattern(p: int, owner: str) -> str:
    """SCAN pattern for an owner's idempotency records (used by forget)."""
    return f"{_tag(p)}:eid:{check_id(owner)}:*"


def last_id(p: int) -> str:
    """The feed's last id as ``ms_append`` wrote it (append.lua builds it from the tag)."""
    return f"{_tag(p)}:last"


def retry(p: int, owner: str, log_id: str) -> str:
    """One-shot record that ``memstream dlq retry`` re-queued a pointer to ``log_id``: the
    only pointer besides the entry's own (feed id = log id) that ``ms_apply`` applies."""
    return f"{_tag(p)}:retry:{check_id(owner)}:{log_id}"


def retry_pattern(p: int, owner: str) -> str:
    return f"{_tag(p)}:retry:{check_id(owner)}:*"


def version_prefix(p: int, version: int) -> str:
    """Prefix of every projection key of one version in one partition."""
    return f"{_tag(p)}:v{int(version)}:"


def group(version: int) -> str:
    """Consumer group name of a projection version on every feed."""
    return f"v{int(version)}"


def cutoff(p: int, version: int) -> str:
    """Copy of ``heads`` taken when version ``version`` started building (replay cutoff)."""
    return f"{_tag(p)}:v{int(version)}:cutoff"


@dataclass(frozen=True, slots=True)
class Projection:
    """Builds the keys of one projection version in one partition.

    ``name`` is a fixed projection name chosen by our code, never user input; every
    user-supplied part goes through :func:`check_id`.
    """

    p: int
    version: int

    def key(self, name: str, owner: str, *parts: str) -> str:
        return _projection_key(self.p, self.version, name, owner, parts)

    def partition_key(self, name: str) -> str:
        """A projection key that belongs to the partition, not to one owner."""
        return f"{version_prefix(self.p, self.version)}{name}"


def changes(p: int) -> str:
    """Sharded pub/sub channel where ``ms_apply`` publishes the partition's changes. It
    carries the partition's tag, so in a Cluster it lives on the partition's shard."""
    return f"{_tag(p)}:changes"


def forget_audit() -> str:
    """Stream of forget audit records (owner hash, time, count): no personal data."""
    return "ms:audit:forget"


@functools.lru_cache(maxsize=16384)
def _projection_key(p: int, version: int, name: str, owner: str, parts: tuple[str, ...]) -> str:
    # Cached: workers build the same few keys per owner for every event, and checking
    # and joining them was a tenth of a worker's time per event. Invalid ids raise, and
    # lru_cache never stores a raise, so every call is still checked.
    checked = ":".join(check_id(part, "key part") for part in parts)
    tail = f":{checked}" if checked else ""
    return f"{version_prefix(p, version)}{name}:{check_id(owner)}{tail}"


def fences(p: int, version: int) -> str:
    """Hash owner -> sortable log id, written by ``replay --owner``: the owner's events up
    to that id are already folded into ``version``, so ``ms_apply`` acks them without
    writing. It lives under the version's prefix, so it goes when the version goes."""
    return f"{version_prefix(p, version)}fences"


def suspects(p: int, version: int) -> str:
    """Hash feed id -> ``consumer|deaths``: entries delivered too often, being applied
    alone to tell a poison entry from one that was merely taken over (workers/suspects.py).
    Under the version's prefix, like the group whose deliveries it judges."""
    return f"{version_prefix(p, version)}suspects"


REPLAY_LOCK = "ms:replay:lock"
"""Held (with a TTL, renewed) by the one full replay that may run at a time."""

_VERSION_KEY = re.compile(r"ms:\{(\d+)\}:v(\d+):")


def version_pattern(version: int) -> str:
    """SCAN pattern for every key of one projection version in every partition, so a
    single pass finds them all. ``{*}`` cannot reach past the tag: ids never contain ``}``.
    Callers still confirm each key with :func:`version_of_key`."""
    return f"ms:{{*}}:v{int(version)}:*"


def version_of_key(key: str) -> tuple[int, int] | None:
    """(partition, version) of a projection key, or None for any other key."""
    m = _VERSION_KEY.match(key)
    return (int(m.group(1)), int(m.group(2))) if m else None


def owner_keys_pattern(p: int, version: int, owner: str) -> str:
    """SCAN pattern for ``owner``'s projection keys of one version. Glob cannot say "one
    segment", so it also matches e.g. owner ``alice2`` or a session named ``alice``:
    keep only the keys for which :func:`key_owner` returns ``owner``."""
    return f"{version_prefix(p, version)}*:{check_id(owner)}*"


def key_owner(key: str, p: int, version: int) -> str | None:
    """The owner of a projection key of ``version`` in ``p``, or None for a partition-wide
    key (``stats``, ``cutoff``, ``fences``) or a key of another version or partition.

    Owner keys are exactly ``<prefix><name>:<owner>`` or ``<prefix><name>:<owner>:<more>``
    (:meth:`Projection.key`): names and ids never contain ``:``, so splitting is exact.
    """
    prefix = version_prefix(p, version)
    if not key.startswith(prefix):
        return None
    parts = key[len(prefix) :].split(":", 2)
    return parts[1] if len(parts) >= 2 else None


def owner_pattern(p: int, owner: str) -> str:
    """SCAN pattern matching every projection key of ``owner`` in any version."""
    return f"{_tag(p)}:v*:*:{check_id(owner)}*"


@dataclass(frozen=True, slots=True)
class OwnerKeys:
    """The wire-contract keys of one owner, as other languages must compute them."""

    owner: str
    partition: int
    log: str
    feed: str
    heads: str

    @classmethod
    def of(cls, owner: str, partitions: int) -> OwnerKeys:
        p = partition(owner, partitions)
        return cls(owner=owner, partition=p, log=log(p, owner), feed=feed(p), heads=heads(p))


def group_version(name: bytes | str) -> int | None:
    """The projection version of a consumer group named by :func:`group`, else None.

    Operators' tools (status, dlq) meet group names on the wire; a group that is not
    ours (created by hand) has no version and no stats hash.
    """
    text = name.decode("utf-8", "replace") if isinstance(name, bytes) else name
    digits = text[1:]
    if text[:1] != "v" or not (digits.isascii() and digits.isdigit()):
        return None
    if digits != str(int(digits)):
        return None
    return int(digits)


def forget_requests(p: int) -> str:
    """Sorted set owner -> time of its ``owner.forgotten`` event, until the forget runs
    (it needs a keyspace scan, which cannot happen inside ``ms_apply``). The forget
    removes the owner's member, so nothing naming the owner outlives it."""
    return f"{_tag(p)}:forget:requests"


def ttl_floor(pk: Projection, owner: str) -> str:
    """Hash of an owner's TTL floors (memory type -> 13-digit ms) raised by ``ttl.extended``:
    expire ops on the owner's session keys never set an earlier time (convergence)."""
    return pk.key("ttlx", owner)


def vector_changes(pk: Projection, owner: str, space: str, kind: str) -> str:
    """Stream of the refs whose vector changed in ``vec:<owner>:<space>:<kind>``, one entry
    per write, added by the same ack-gated call as the vector: a reader that holds the
    matrix up to an entry fetches only the refs after it. Capped (``MAXLEN ~``) near the
    hash's size, so it never outgrows the vectors it describes; it expires with them."""
    return pk.key("vec_c", owner, space, kind)


WORKERS = "ms:workers"
"""Sorted set consumer -> expiry (ms) of its heartbeat: the live workers, without a SCAN."""


def heartbeat(consumer: str) -> str:
    """A running worker's heartbeat (JSON, with a TTL): who it is and what it serves."""
    return f"ms:heartbeat:{check_id(consumer, 'consumer')}"


# --- cold tier (memstream.tiering, docs/tiering.md) ----------------------------------


def manifest(p: int, owner: str) -> str:
    """Sorted set (score 0, lexicographic) of the owner's archived log segments; each
    member starts with the segment's sortable last id (see ``memstream.tiering.manifest``).
    In the partition's slot, so the verify-and-trim call touches it and the log together."""
    return f"{_tag(p)}:manifest:{check_id(owner)}"


def cold_stats(p: int) -> str:
    """Hash of the partition's archived totals: segments, entries, bytes, raw."""
    return f"{_tag(p)}:cold"


def tier_lease(p: int, owner: str) -> str:
    """Held (with a TTL) by the one tier process archiving ``owner`` right now."""
    return f"{_tag(p)}:tierlease:{check_id(owner)}"


TIER_STATUS = "ms:tier:status"
"""Hash of the tier processes' last pass and last error, shown by ``memstream status``."""


def eid_scan_pattern() -> str:
    """SCAN pattern for every idempotency record of every owner (benchmarks measure Redis
    memory without them: they expire after ``eid_ttl`` whatever else happens)."""
    return "ms:{*}:eid:*"


TENSOR_MODELS_OWNER = "memstream.tensor-models"
"""The owner whose log holds every ``tensor.model_published`` event (docs/tensors.md):
one log, so every worker reads one ordered list of model versions."""


def tensor_model(sha256: str) -> str:
    """Hash of one immutable tensor model version: ``config`` (JSON) and ``weights``
    (safetensors), addressed by the sha256 of both; written once, never changed."""
    if re.fullmatch(r"[0-9a-f]{64}", sha256) is None:
        raise InvalidIdError("sha256", "must be 64 lowercase hex digits", sha256)
    return f"ms:tensor:model:{sha256}"


TENSOR_PROBLEMS = "ms:tensor:problems"
"""Hash model version -> why workers could not load it (they store losslessly instead)."""


def log_pattern() -> str:
    """SCAN pattern for every owner's log (``memstream tensors train`` reads them all);
    callers confirm the owner part with :func:`check_id`."""
    return "ms:{*}:log:*"


def thread_digest(thread_id: str) -> str:
    """A LangGraph thread id (any string) as a key part: 32 hex digits of its sha256.
    The id itself is never part of a key; the checkpointer's projection keeps it in
    values (``projections/checkpoints.py``)."""
    return hashlib.sha256(thread_id.encode("utf-8", "surrogatepass")).hexdigest()[:32]


CHECKPOINT_THREAD_KEYS = ("cp_d", "cp_h", "cp_ix", "cp_wx")
"""Per-thread keys of the checkpointer: log-ordered payloads, lookups, checkpoint index,
pending-write index (``projections/checkpoints.py``)."""
CHECKPOINT_OWNER_KEYS = ("cp_wm", "cp_th", "cp_tx")
"""Per-owner keys: thread-delete watermarks, thread ids, live threads."""


def checkpoint_thread(pk: Projection, name: str, owner: str, thread_id: str) -> str:
    """``name`` (one of :data:`CHECKPOINT_THREAD_KEYS`) of one thread of ``owner``."""
    if name not in CHECKPOINT_THREAD_KEYS:
        raise ValueError(f"not a checkpoint thread key: {name!r}")
    return pk.key(name, owner, thread_digest(thread_id))


def checkpoint_owner(pk: Projection, name: str, owner: str) -> str:
    """``name`` (one of :data:`CHECKPOINT_OWNER_KEYS`) of ``owner``'s checkpoints."""
    if name not in CHECKPOINT_OWNER_KEYS:
        raise ValueError(f"not a checkpoint owner key: {name!r}")
    return pk.key(name, owner)
