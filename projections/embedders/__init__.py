"""Pluggable text embedders: a name, a dimension and ``embed(texts) -> float32 array``.

The worker embeds (never ``append``), in batches of ``Settings.embedder_batch``; the
vector read model records the embedder's :attr:`Embedder.name` and
:attr:`Embedder.dimension`, so vectors of two embedders never mix (docs/search.md).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

from memstream.producers.errors import ConfigError, MemstreamError
from memstream.producers.settings import Settings

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class EmbedderError(MemstreamError):
    """An embedder failed (unreachable endpoint, bad reply); the worker retries the batch."""


class Embedder(ABC):
    """Turns texts into unit-length float32 vectors of a fixed dimension."""

    name: str
    """Identifies the vector space: two embedders with one name give comparable vectors."""
    dimension: int

    @abstractmethod
    def _embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        """One batch's raw vectors, shape ``(len(texts), dimension)``."""

    def __init__(self, batch: int = 64) -> None:
        self.batch = batch

    def embed(self, texts: Sequence[str]) -> npt.NDArray[np.float32]:
        """Embed ``texts`` (in batches of ``batch``): shape ``(len(texts), dimension)``,
        float32, each row L2-normalised so a dot product is the cosine similarity."""
        import numpy as np

        rows = [self._embed_batch(list(texts[i : i + self.batch]))
                for i in range(0, len(texts), self.batch)]  # fmt: skip
        out = np.concatenate(rows) if rows else np.zeros((0, self.dimension), np.float32)
        out = np.asarray(out, dtype=np.float32)
        if out.shape != (len(texts), self.dimension):
            raise EmbedderError(
                f"embedder {self.name} returned shape {out.shape}, expected "
                f"{(len(texts), self.dimension)}")  # fmt: skip
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        unit: npt.NDArray[np.float32] = np.divide(
            out, norms, out=np.zeros_like(out), where=norms > 0)  # fmt: skip
        return unit


def make_embedder(settings: Settings) -> Embedder | None:
    """The embedder ``settings.embedder`` names, or None when it is ``"none"``."""
    if settings.embedder == "none":
        return None
    if settings.embedder == "wordllama":
        from .wordllama import WordLlamaEmbedder

        return WordLlamaEmbedder(batch=settings.embedder_batch)
    from .http import OpenAIEmbedder

    if not settings.embedder_url or not settings.embedder_model:
        raise ConfigError(
            "invalid memstream setting embedder: openai needs embedder_url and embedder_model"
        )
    key = settings.embedder_api_key
    return OpenAIEmbedder(
        settings.embedder_url, settings.embedder_model,
        api_key=key.get_secret_value() if key is not None else None,
        batch=settings.embedder_batch, timeout_s=settings.embedder_timeout_s)  # fmt: skip
