"""Framework adapters: LangChain chat history and LangGraph's store.

Each adapter lives in its own module behind its own extra (``memstream[langchain]``,
``memstream[langgraph]``) and imports its framework only when that module is imported,
so ``import memstream.integrations`` (and ``memstream.producers``) pulls in no framework.
"""

from __future__ import annotations

__all__: list[str] = []
