"""The vector read model: one stored embedding per episode, knowledge item, skill and
conversation message, per owner, computed by the worker.

Keys (all per owner, so forget's owner scan and replay's rebuild find them):
- ``vec:<owner>:<space>:<kind>``: hash ``<id>`` -> ``<version><payload>`` (LWW by log
  id). The payload is the item's expiry (int64 ms), the int8 scale (float32) and the
  vector as int8 (:mod:`.vector_codec`); a delete is a newer empty payload (tombstone),
  so a late save never resurrects a vector. A message's id is ``<session>:<version>``.
- ``vec_t:<owner>:<space>:<kind>``: live ids by expiry (``LWWZ`` mirror), only for types
  with a TTL, so expired vectors are ``PRUNE``d from the hash on later writes;
- ``vec_meta:<owner>:<kind>``: ``space:<space>`` -> the embedder's name and dimension
  (LWW), the commutative write count ``n:<space>`` and the newest version ``v:<space>``
  (HMAX): readers keep an owner's matrix in memory and refetch it only when these
  change. One per kind, so that it expires with that kind's keys (types differ in TTL).
- ``vec_c:<owner>:<space>:<kind>``: stream of the refs written (``r``), or the ref prefix
  whose vectors a TTL extension raised (``x``), one entry per write counted in ``n``
  (``VCHG``), capped near the hash's size: a reader patches its cached matrix with the
  refs after the last entry it has (:mod:`.vector_index`). Not state but a log of apply
  order: its ids and trimming follow delivery, its entries (one per applied write, the
  gate makes it exactly once) do not.
- ``vmax:<session>`` in the history's ``sttl:<owner>``: the longest TTL the session chose
  beyond ``history_ttl_s`` (:func:`longest_choice`), which message vectors live to from
  their own time (``VFLOOR``, ``VTTL``; docs/ttl.md).

``<space>`` is a digest of the embedder's name and dimension: vectors of two embedders
never share a key, so spaces never mix. A reader whose embedder differs from the one the
owner's vectors were made with sees it in ``vec_meta`` (docs/search.md: switch the
workers' embedder, then ``memstream replay``).

Embedding runs in the worker's planning step, off the event loop: the planner hands each
batch to :meth:`Vectors.prepare_batch` first, which embeds every text of the batch in one
call; ``apply`` then only looks its vector up (it embeds alone what it does not find, as
in replay and the convergence harness). Convergence: LWW per item, counters commute,
HMAX and the identical space record are order-free; keys expire with the last item.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, ClassVar

from memstream.producers import keys
from memstream.producers.codec import DecodeError
from memstream.producers.entry import StoredEvent, decode_entry
from memstream.producers.events import SessionStarted, SessionTtlSet
from memstream.producers.events_live import TtlExtended
from memstream.producers.events_messages import MessageAppended
from memstream.producers.settings import Settings

from .base import ApplyContext, Projection
from .codec import pack
from .history import ttl_choice
from .history import ttl_floor as history_floor
from .items import NEVER_S, expiry_ms, item_of, ttl_of
from .ops import Writes, sortable
from .vector_codec import TOMBSTONE, encode

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

    from .embedders import Embedder

log = logging.getLogger("memstream.vectors")

MESSAGE = "message"
ITEM_TYPES = frozenset({"episode.saved", "knowledge.learned", "skill.defined", "memory.deleted"})
MAX_TEXT = 4096
"""Characters of a text that are embedded: a memory's meaning is in its beginning, and a
huge message must not stall the planner."""
CHANGES_CAP = 10_000
"""Entries a change stream keeps at most (fewer for a smaller hash: ``min(cap, HLEN)``,
at least 256): a reader that many writes behind loads the whole hash anyway."""
MEMO_MAX = 8192
"""Vectors embedded ahead by ``prepare_batch`` and not yet applied are dropped past this
(a batch planned but never applied, say): ``apply`` embeds alone what it misses."""


@functools.lru_cache(maxsize=64)
def space_of(name: str, dimension: int) -> str:
    """The key part naming one embedder's vector space (digest of name and dimension)."""
    return hashlib.sha1(f"{name}/{dimension}".encode(), usedforsecurity=False).hexdigest()[:10]


def vector_key(pk: keys.Projection, owner: str, space: str, kind: str) -> str:
    return pk.key("vec", owner, space, kind)


def live_key(pk: keys.Projection, owner: str, space: str, kind: str) -> str:
    return pk.key("vec_t", owner, space, kind)


def meta_key(pk: keys.Projection, owner: str, kind: str) -> str:
    return pk.key("vec_meta", owner, kind)


def change_key(pk: keys.Projection, owner: str, space: str, kind: str) -> str:
    return keys.vector_changes(pk, owner, space, kind)


def message_ref(session: str, version: str) -> str:
    return f"{session}:{version}"


def message_text(message: Mapping[str, Any]) -> str:
    """The searchable text of a message body: its content, or its text parts."""
    content = message.get("content", "")
    if isinstance(content, str):
        return content
    return "\n".join(str(p.get("text", "")) for p in content if isinstance(p, dict)
                     and p.get("type") == "text")  # fmt: skip


def text_of(event: StoredEvent, settings: Settings) -> str | None:
    """The text an event's vector embeds, or None when it stores none (a delete, a
    message without text or with ``settings.embed_messages`` off, another event)."""
    if isinstance(event.event, MessageAppended):
        if not settings.embed_messages:
            return None
        text = message_text({"content": event.event.content})[:MAX_TEXT]
        return text if text.strip() else None
    item = item_of(event)
    if item is None or item.body is None:
        return None
    text = " ".join(t for t in item.texts if t)[:MAX_TEXT]
    return text if text.strip() else None


class Vectors(Projection):
    """Embeddings of searchable memories; the embedder comes from the settings it is
    applied with (``Settings.embedder``), made on first use; ``"none"`` writes nothing."""

    name: ClassVar[str] = "vectors"
    key_names: ClassVar[frozenset[str]] = frozenset({"vec", "vec_t", "vec_meta", "vec_c"})
    handles: ClassVar[frozenset[str]] = ITEM_TYPES | {
        MessageAppended.TYPE,
        TtlExtended.TYPE,
        SessionStarted.TYPE,
        SessionTtlSet.TYPE,
    }

    def __init__(self, embedder: Embedder | None = None) -> None:
        self._embedder = embedder
        self._made = embedder is not None
        self._lock = threading.Lock()
        self._memo: dict[tuple[str, str], npt.NDArray[np.float32]] = {}

    def embedder(self, settings: Settings) -> Embedder | None:
        """The embedder, made from ``settings`` once (thread-safe: lanes plan in threads)."""
        if not self._made:
            with self._lock:
                if not self._made:
                    from .embedders import make_embedder

                    self._embedder = make_embedder(settings)
                    self._made = True
        return self._embedder

    def warm(self, settings: Settings) -> None:
        """Start making the embedder in a background thread (a worker calls this at start,
        so loading the model overlaps its start-up rather than delaying its first batch)."""
        if not self._made and settings.embedder != "none":
            threading.Thread(target=self._warm, args=(settings,), daemon=True).start()

    def _warm(self, settings: Settings) -> None:
        try:
            self.embedder(settings)
        except Exception as e:  # the first batch meets it again, and retries it
            log.warning("embedder %s not ready: %s", settings.embedder, e)

    def embedded_types(self, embed_messages: bool) -> frozenset[bytes]:
        """The event types (as stored) :meth:`prepare_batch` embeds: messages only with
        ``embed_messages`` (the setting), so it does not decode every message for nothing."""
        handled = frozenset(t.encode() for t in self.handles)
        return handled if embed_messages else handled - {MessageAppended.TYPE.encode()}

    def prepare_batch(
        self, settings: Settings, pointers: Mapping[str, Any], logs: Mapping[str, Any]
    ) -> None:
        """Embed every text of a batch in one call before its events are applied.

        ``pointers`` and ``logs`` are the planner's (feed id -> pointer, raw log fields).
        Entries that do not decode are left to the planner, which dead-letters them."""
        wanted = self.embedded_types(settings.embed_messages)
        found: list[tuple[tuple[str, str], str]] = []
        for fid, fields in logs.items():
            pointer: Any = pointers.get(fid)
            if not fields or fields.get(b"type") not in wanted or not hasattr(pointer, "owner"):
                continue
            try:
                event = decode_entry(pointer.owner, pointer.log_id, fields)
            except DecodeError:
                continue
            text = text_of(event, settings)
            if text is not None:
                found.append(((event.owner, event.log_id), text))
        embedder = self.embedder(settings) if found else None
        if embedder is None:
            return
        vectors = embedder.embed([text for _, text in found])
        if len(self._memo) > MEMO_MAX:
            self._memo.clear()
        for (ref, _), vector in zip(found, vectors, strict=True):
            self._memo[ref] = vector

    def _vector(self, embedder: Embedder, event: StoredEvent, text: str) -> Any:
        found = self._memo.pop((event.owner, event.log_id), None)
        return found if found is not None else embedder.embed([text])[0]

    def apply(self, event: StoredEvent, ctx: ApplyContext, writes: Writes) -> None:
        if (
            isinstance(event.event, MessageAppended | TtlExtended | SessionStarted | SessionTtlSet)
            and not ctx.settings.embed_messages
        ):
            return
        embedder = self.embedder(ctx.settings)
        if embedder is None:
            return
        space = space_of(embedder.name, embedder.dimension)
        if isinstance(event.event, MessageAppended):
            self._message(event, ctx, writes, embedder, space)
            return
        if isinstance(event.event, TtlExtended):
            _extend_messages(event, event.event.seconds, ctx, writes, space)
            return
        if isinstance(event.event, SessionStarted | SessionTtlSet):
            _choose_messages(event, event.event.ttl_s, ctx, writes, space)
            return
        item = item_of(event)
        if item is None:
            return
        ttl = ttl_of(ctx.settings, item.kind)
        if ctx.expired(event, ttl):
            return
        text = text_of(event, ctx.settings)
        if text is None:
            payload = TOMBSTONE
        else:
            payload = encode(self._vector(embedder, event, text), expiry_ms(event.ts_ms, ttl))
        self._write(event, ctx, writes, embedder=embedder, space=space, kind=item.kind,
                    ref=item.item_id, payload=payload, ttl=ttl)  # fmt: skip

    def _message(
        self, event: StoredEvent, ctx: ApplyContext, writes: Writes, embedder: Embedder,
        space: str,
    ) -> None:  # fmt: skip
        ttl = ctx.settings.history_ttl_s
        text = text_of(event, ctx.settings)
        if event.session is None or text is None or ctx.expired(event, ttl):
            return
        ref = message_ref(event.session, sortable(event.log_id))
        payload = encode(self._vector(embedder, event, text), expiry_ms(event.ts_ms, ttl))
        self._write(event, ctx, writes, embedder=embedder, space=space, kind=MESSAGE, ref=ref,
                    payload=payload, ttl=ttl)  # fmt: skip
        if ttl is not None:  # without a TTL a vector never expires: nothing to raise
            pk, session = ctx.keys, event.session
            writes.vector_floor(_message_keys(pk, event.owner, space), ref,
                                history_floor(pk, event.owner, session),
                                longest_choice(pk, event.owner, session))  # fmt: skip

    @staticmethod
    def _write(
        event: StoredEvent, ctx: ApplyContext, writes: Writes, *, embedder: Embedder,
        space: str, kind: str, ref: str, payload: bytes, ttl: int | None,
    ) -> None:  # fmt: skip
        pk, owner, version = ctx.keys, event.owner, sortable(event.log_id)
        vk, mk = vector_key(pk, owner, space, kind), meta_key(pk, owner, kind)
        ck = change_key(pk, owner, space, kind)
        touched = [vk, mk, ck]
        if ttl is None:
            writes.lww(vk, ref, version, payload)
        else:
            exp = expiry_ms(event.ts_ms, ttl)
            lk = live_key(pk, owner, space, kind)
            score = str(exp) if payload != TOMBSTONE else None
            writes.lwwz(vk, ref, version, payload, zkey=lk, member=ref, score=score)
            writes.prune(lk, hkey=vk)
            touched.append(lk)
        writes.lww(mk, f"space:{space}", version, pack([embedder.name, embedder.dimension]))
        writes.hincr(mk, f"n:{space}", 1)
        writes.vector_change(ck, vk, CHANGES_CAP, ("r", ref), version)  # one entry per count
        writes.hmax(mk, f"v:{space}", version)
        if ttl is not None:
            for key in touched:
                writes.expire_at(key, expiry_ms(event.ts_ms, ttl))


def _extend_messages(
    event: StoredEvent, seconds: int, ctx: ApplyContext, writes: Writes, space: str
) -> None:
    """``ttl.extended`` naming a session: its message vectors live until the extension,
    as its history does (docs/ttl.md). The floor is the history's: raised here too (the
    same idempotent ops), so vectors converge without the history projection."""
    at, pk, owner, session = event.ts_ms + seconds * 1000, ctx.keys, event.owner, event.session
    if session is None or ctx.settings.history_ttl_s is None or at <= ctx.now_ms:
        return
    writes.extend_to([], at, history_floor(pk, owner, session))
    vk, lk, mk, ck = _message_keys(pk, owner, space)
    prefix = message_ref(session, "")
    writes.vector_extend((vk, lk, mk), prefix, at, f"n:{space}")
    _record_session(writes, vk, ck, prefix, sortable(event.log_id))
    writes.expire_at(ck, at)


NEVER_MS = NEVER_S * 1000
"""A chosen TTL of "never" (0) as vectors store no expiry: ``ts + NEVER_S``, as
:func:`.items.expiry_ms` gives a type without a TTL."""


def longest_choice(pk: keys.Projection, owner: str, session: str) -> tuple[str, str]:
    """Field (13-digit ms, ``HMAX``) of the longest TTL ``session`` chose that is longer
    than the deployment's ``history_ttl_s``, next to the session's choice (``sttl``): a
    max over every choice, not the last one (LWW), so the raises it drives are order-free.
    ``:`` is in no session id (message refs are split on it), so it names no session."""
    return ttl_choice(pk, owner, session)[0], f"vmax:{session}"


def _choose_messages(
    event: StoredEvent, ttl_s: int | None, ctx: ApplyContext, writes: Writes, space: str
) -> None:
    """A session chose a TTL (``session.started``/``session.ttl_set``): its history lives
    that long after its newest message, so its message vectors must not be pruned at
    ``ts + history_ttl_s`` (docs/ttl.md). The stored expiry need only be an upper bound
    (semantic search also checks the history key), so it is only raised: every vector of
    the session to its own time + the longest choice, now (``VTTL``) and at later writes
    (``VFLOOR`` reads the field). A shorter choice, or back to the default, lowers
    nothing: the history's expiry hides the vectors."""
    default, session = ctx.settings.history_ttl_s, event.session
    if session is None or ttl_s is None or default is None:
        return  # no choice, or vectors without a stored expiry: nothing to raise
    ttl_ms = NEVER_MS if ttl_s == 0 else min(ttl_s * 1000, NEVER_MS)
    if ttl_ms <= default * 1000:
        return
    pk, owner, version = ctx.keys, event.owner, sortable(event.log_id)
    at = int(version[:13]) + ttl_ms
    if at <= ctx.now_ms:
        # All or nothing, so every order agrees: a choice whose own time + TTL has passed
        # raises no vector (as an extension already past does not).
        return
    choice = longest_choice(pk, owner, session)
    writes.hmax(choice[0], choice[1], f"{ttl_ms:013d}")
    vk, lk, mk, ck = _message_keys(pk, owner, space)
    prefix = message_ref(session, "")
    writes.vector_ttl((vk, lk, mk, ck), prefix, ttl_ms, f"n:{space}")
    _record_session(writes, vk, ck, prefix, version)
    # Keys VTTL or VCHG may create (the count, the stream) get the life a vector of this
    # time would: the same in every order, since each choice runs once whatever came first.
    writes.expire_at(mk, at)
    writes.expire_at(ck, at)


def _record_session(writes: Writes, vk: str, ck: str, prefix: str, version: str) -> None:
    """The change-stream entry of the count VEXT or VTTL adds to ``n:<space>``: every
    vector of the session ``prefix`` names may have changed."""
    writes.vector_change(ck, vk, CHANGES_CAP, ("x", prefix), version)


def _message_keys(pk: keys.Projection, owner: str, space: str) -> tuple[str, str, str, str]:
    return (vector_key(pk, owner, space, MESSAGE), live_key(pk, owner, space, MESSAGE),
            meta_key(pk, owner, MESSAGE), change_key(pk, owner, space, MESSAGE))  # fmt: skip


def batching(projections: Sequence[Projection]) -> list[Vectors]:
    """The projections the planner lets see a whole batch first (embedding in bulk)."""
    return [p for p in projections if isinstance(p, Vectors)]
