"""Framework adapters: LangChain chat history, LangGraph's store and checkpointer
(docs/integrations.md).

Each adapter lives in its own module behind its own extra (``memstream[langchain]``,
``memstream[langgraph]``) and imports its framework only when that module is imported:
``import memstream.integrations`` (and ``memstream.producers``) pulls in no framework, and
the names below are loaded on first access.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .langchain import MemstreamChatMessageHistory
    from .langgraph_checkpoint import MemstreamCheckpointSaver
    from .langgraph_store import MemstreamStore

__all__ = ["MemstreamChatMessageHistory", "MemstreamCheckpointSaver", "MemstreamStore"]

_MODULES = {
    "MemstreamChatMessageHistory": ".langchain",
    "MemstreamCheckpointSaver": ".langgraph_checkpoint",
    "MemstreamStore": ".langgraph_store",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
