"""memstream producers: the wire contract and the light client agents embed.

Importing this package pulls in redis, msgpack and pydantic only: no numpy, torch, boto3
or worker runtime, so an agent process stays small.
"""

from __future__ import annotations

from . import (  # noqa: F401  (registers their event types)
    events_checkpoint,
    events_live,
    events_memory,
    events_store,
    events_world,
)
from .codec import DecodeError
from .core import Append, AppendManyError
from .deployment import Deployment
from .entry import StoredEvent, decode_entry
from .errors import (
    AppendRejectedError,
    AuthenticationError,
    ConfigError,
    InvalidIdError,
    InvalidInputError,
    MemstreamError,
    NotInitialisedError,
    NotSupportedError,
    PermissionDeniedError,
    RedisTimeoutError,
    RedisUnavailableError,
    ServerBusyError,
)
from .events import (
    EpisodeSaved,
    Event,
    EvidenceObserved,
    FixOutcome,
    GenericEvent,
    KnowledgeLearned,
    OwnerForgotten,
    PatternObserved,
    SessionDataSet,
    SessionStarted,
    SessionTtlSet,
    SkillDefined,
    SkillExecuted,
    StateSaved,
    StepRecorded,
    register,
    upcaster,
)
from .events_live import TtlExtended
from .events_memory import LearningRecorded, MemoryDeleted
from .events_messages import HistoryCleared, MessageAppended
from .events_tensors import TensorRecorded
from .events_world import ExplorationRecorded, WorldConfigured
from .keys import OwnerKeys, check_id, partition
from .producer import AsyncProducer, Producer
from .receipt import Receipt
from .redact import Redactor
from .settings import Settings
from .world import AsyncWorld, World, WorldConfig, record_exploration


def _version() -> str:
    # importlib.metadata is stdlib and light: the installed distribution's version.
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("memstream")
    except PackageNotFoundError:  # pragma: no cover - only from a bare checkout
        return "0+unknown"


__version__ = _version()

__all__ = [
    "Append",
    "AppendManyError",
    "AppendRejectedError",
    "AsyncProducer",
    "AsyncWorld",
    "AuthenticationError",
    "ConfigError",
    "DecodeError",
    "Deployment",
    "EpisodeSaved",
    "Event",
    "EvidenceObserved",
    "ExplorationRecorded",
    "FixOutcome",
    "GenericEvent",
    "HistoryCleared",
    "InvalidIdError",
    "InvalidInputError",
    "KnowledgeLearned",
    "LearningRecorded",
    "MemoryDeleted",
    "MemstreamError",
    "MessageAppended",
    "NotInitialisedError",
    "NotSupportedError",
    "OwnerForgotten",
    "OwnerKeys",
    "PatternObserved",
    "PermissionDeniedError",
    "Producer",
    "Receipt",
    "Redactor",
    "RedisTimeoutError",
    "RedisUnavailableError",
    "ServerBusyError",
    "SessionDataSet",
    "SessionStarted",
    "SessionTtlSet",
    "Settings",
    "SkillDefined",
    "SkillExecuted",
    "StateSaved",
    "StepRecorded",
    "StoredEvent",
    "TensorRecorded",
    "TtlExtended",
    "World",
    "WorldConfig",
    "WorldConfigured",
    "__version__",
    "check_id",
    "decode_entry",
    "partition",
    "record_exploration",
    "register",
    "upcaster",
]
