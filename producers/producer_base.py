"""What :class:`Producer` and :class:`AsyncProducer` share: construction, settings, the
outbox, the eid TTL check and the shaping of receipts. See :mod:`.producer`."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any, Self

import redis

from . import keys, many
from .codec import ContentType
from .core import Append, AppendCore, AppendManyError, Prepared, command
from .deployment import DEFAULT_EID_TTL, Deployment
from .driver import is_transient, translate_driver_error
from .errors import ConfigError, MemstreamError
from .many import Call
from .receipt import Receipt
from .redact import Redactor
from .settings import Settings

if TYPE_CHECKING:  # the outbox is imported only when one is asked for
    from .outbox import Outbox, Row

log = logging.getLogger("memstream.producer")

PIPELINE_CHUNK = 1000
"""Commands per pipeline round trip: big enough to amortise the trip, small enough to
keep one reply buffer modest."""

OWN_OPTIONS = ("redactor", "ct", "outbox")
"""Producer options, as opposed to :class:`Settings` fields, in ``from_url``."""

ManyItems = Iterable[Append | tuple[Any, ...]]


def as_append(item: Append | tuple[Any, ...]) -> Append:
    return item if isinstance(item, Append) else Append(*item)


def _default_redactor(settings: Settings) -> Redactor:
    return Redactor(emails=settings.redact_emails)


def _settings_of(client: Any) -> Settings:
    """Settings naming a client's address, for error messages, when none were given."""
    kw = getattr(getattr(client, "connection_pool", None), "connection_kwargs", None) or {}
    if "path" in kw:
        return Settings(redis_url=f"unix://{kw['path']}")
    url = f"redis://{kw.get('host', 'localhost')}:{kw.get('port', 6379)}/{kw.get('db', 0)}"
    return Settings(redis_url=url, username=kw.get("username"))


def row_of(p: Prepared) -> tuple[str, str, tuple[Any, ...]]:
    return p.owner, p.eid, p.args


def flush_commands(rows: Sequence[Row], core: AppendCore) -> list[tuple[Any, ...]]:
    n = core.deployment.partitions
    return [command(row.owner, keys.partition(row.owner, n), row.args) for row in rows]


class ProducerBase:
    """Construction shared by both producers; each names its client factory."""

    @staticmethod
    def _make_client(settings: Settings) -> Any:
        raise NotImplementedError

    def __init__(
        self,
        client: Any,
        *,
        redactor: Redactor | None = None,
        ct: ContentType = "msgpack",
        settings: Settings | None = None,
        outbox: str | None = None,
    ) -> None:
        """``client``: a redis-py client (sync or asyncio to match); ``redactor``: scrubs
        payloads before they leave; ``ct``: ``msgpack`` or ``json``; ``settings``: the
        deadlines and retries (default: the client's address with default settings);
        ``outbox``: path of the durable outbox file, or None for none."""
        self.redactor = redactor if redactor is not None else Redactor()
        self.ct: ContentType = ct
        self.settings = settings if settings is not None else _settings_of(client)
        self._core: AppendCore | None = None
        self._eid_ttl: int | None = None
        self._singles_until = 0.0  # monotonic time; see many.RETRY_MANY_S
        self._warned_singles = False
        self.outbox_path = None if outbox is None else str(outbox)
        self._outbox: Outbox | None = None
        if self.outbox_path is not None:
            from .outbox import Outbox

            self._outbox = Outbox(self.outbox_path)

    @classmethod
    def from_settings(cls, settings: Settings, **options: Any) -> Self:
        """Build from :class:`Settings`; ``options``: ``redactor``, ``ct``, ``outbox``."""
        options.setdefault("redactor", _default_redactor(settings))
        return cls(cls._make_client(settings), settings=settings, **options)

    @classmethod
    def from_url(cls, url: str, **options: Any) -> Self:
        """Build from a Redis URL; ``options`` are producer options (``redactor``,
        ``ct``, ``outbox``) or :class:`Settings` fields."""
        own = {k: options.pop(k) for k in OWN_OPTIONS if k in options}
        return cls.from_settings(Settings.from_url(url, **options), **own)

    def _new_core(self, meta: Any, eid_ttl: Any) -> AppendCore:
        ttl = int(eid_ttl) if eid_ttl else DEFAULT_EID_TTL
        if self.outbox_path is not None and ttl <= self.settings.outbox_retention_s:
            raise ConfigError(
                f"outbox {self.outbox_path}: the deployment's eid TTL ({ttl}s) must be longer "
                f"than outbox_retention_s ({self.settings.outbox_retention_s}s), or an append "
                "flushed late could be stored twice: raise eid_ttl (memstream init) or lower "
                "outbox_retention_s"
            )
        self._eid_ttl = ttl
        return AppendCore(Deployment.from_meta(meta), self.redactor, self.ct)

    def _pending(self, prepared: Prepared) -> Receipt:
        core = self._core
        p = keys.partition(prepared.owner, core.deployment.partitions) if core else -1
        return Receipt(prepared.owner, p, "", "", prepared.eid, True, self.outbox_path)

    def _many_result(
        self, prepared: Sequence[Prepared], sent: dict[int, tuple[int, Any]]
    ) -> list[Receipt]:
        """Receipts in call order: a sent item's from its ``(partition, reply)`` in
        ``sent`` (raising :class:`AppendManyError` if some were refused), the others
        pending (outboxed)."""
        receipts: list[Receipt | None] = []
        errors: dict[int, MemstreamError] = {}
        for i, p in enumerate(prepared):
            if i not in sent:
                receipts.append(self._pending(p))
                continue
            partition, reply = sent[i]
            if isinstance(reply, redis.RedisError):
                errors[i] = translate_driver_error(reply, self.settings)
                receipts.append(None)
            else:
                receipts.append(many.receipt(p, partition, reply))
        if errors:
            raise AppendManyError(receipts, errors)
        return [r for r in receipts if r is not None]

    def _trip_commands(
        self, trip: Sequence[Call], prepared: Sequence[Prepared]
    ) -> tuple[list[tuple[Any, ...]], bool]:
        """A trip's commands, and whether they are single ``ms_append`` calls (the
        fallback while the server lacks ``ms_append_many``)."""
        if time.monotonic() < self._singles_until:
            return many.single_commands(trip, prepared), True
        return [c.command for c in trip], False

    def _lacks_many(self, replies: Sequence[Any]) -> bool:
        """True (and one WARNING per producer) when the loaded library predates
        ``ms_append_many``: the caller resends the trip as single calls."""
        if not many.lacks_many(replies):
            return False
        if not self._warned_singles:
            self._warned_singles = True
            log.warning(
                "the memstream functions loaded in Redis predate ms_append_many: append_many "
                "falls back to one ms_append per event (pipelined); run `memstream init` to "
                "load the current library"
            )
        self._singles_until = time.monotonic() + many.RETRY_MANY_S
        return True

    @staticmethod
    def _absorb(trip: Sequence[Call], replies: Sequence[Any], sent: dict[int, Any]) -> None:
        """Record each event's reply of one round trip of ``ms_append_many`` calls."""
        for c, reply in zip(trip, replies, strict=True):
            for i, one in zip(c.indexes, many.spread(c, reply), strict=True):
                sent[i] = (c.partition, one)

    def _outbox_or_raise(self, error: MemstreamError) -> None:
        """Raise ``error`` unless it is transient and there is an outbox to fall back to."""
        if self._outbox is None or not is_transient(error):
            raise error
        if not self._outbox.outage:
            log.warning("Redis is away (%s): appends go to outbox %s", error, self.outbox_path)
        self._outbox.outage = True  # the next appends need not spend a deadline each
