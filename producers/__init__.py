"""memstream producers: the wire contract and the light client agents embed.

Importing this package pulls in redis, msgpack and pydantic only: no numpy, torch, boto3
or worker runtime, so an agent process stays small.
"""

from __future__ import annotations

from . import events_memory, events_world  # noqa: F401  (registers their event types)
from .codec import DecodeError
from .core import Append, AppendManyError
from .deployment import Deployment
from .entry import StoredEvent, decode_entry
from .errors import (
    AppendRejectedError,
    ConfigError,
    InvalidIdError,
    InvalidInputError,
    MemstreamError,
    NotInitialisedError,
)
from .events import (
    EpisodeSaved,
    Event,
    EvidenceObserved,
    FixOutcome,
    GenericEvent,
    HistoryCleared,
    KnowledgeLearned,
    MessageAppended,
    OwnerForgotten,
    PatternObserved,
    SessionDataSet,
    SessionStarted,
    SkillDefined,
    SkillExecuted,
    StateSaved,
    StepRecorded,
    TensorRecorded,
    register,
    upcaster,
)
from .keys import OwnerKeys, check_id, partition
from .producer import AsyncProducer, Producer
from .receipt import Receipt
from .redact import Redactor
from .settings import Settings

__all__ = [
    "Append",
    "AppendManyError",
    "AppendRejectedError",
    "AsyncProducer",
    "ConfigError",
    "DecodeError",
    "Deployment",
    "EpisodeSaved",
    "Event",
    "EvidenceObserved",
    "FixOutcome",
    "GenericEvent",
    "HistoryCleared",
    "InvalidIdError",
    "InvalidInputError",
    "KnowledgeLearned",
    "MemstreamError",
    "MessageAppended",
    "NotInitialisedError",
    "OwnerForgotten",
    "OwnerKeys",
    "PatternObserved",
    "Producer",
    "Receipt",
    "Redactor",
    "SessionDataSet",
    "SessionStarted",
    "Settings",
    "SkillDefined",
    "SkillExecuted",
    "StateSaved",
    "StepRecorded",
    "StoredEvent",
    "TensorRecorded",
    "check_id",
    "decode_entry",
    "partition",
    "register",
    "upcaster",
]
