"""The default embedder: WordLlama's 256-dimension ``l2_supercat`` model, offline.

The wheel ships both files this needs (``weights/l2_supercat_256.safetensors`` and
``tokenizers/l2_supercat_tokenizer_config.json``), but ``WordLlama.load`` (0.4.0) looks for
the tokenizer under ``tokenizer/`` and so tries to download it from Hugging Face. We load
the two shipped files directly: no network, no cache directory, at any time.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING, Any

from . import Embedder, EmbedderError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt

CONFIG = "l2_supercat"
DIMENSION = 256


@functools.lru_cache(maxsize=1)
def _load() -> Any:
    # Cached: the model is read-only, and every worker of a process (tests start many)
    # would otherwise spend a second loading the same weights.
    try:
        import wordllama  # type: ignore[import-untyped,unused-ignore]
        from safetensors import safe_open
        from tokenizers import Tokenizer
        from wordllama.inference import (  # type: ignore[import-untyped,unused-ignore]
            WordLlamaInference,
        )
    except ImportError as e:
        raise EmbedderError(
            "the wordllama embedder needs the wordllama package (pip install "
            "'memstream[workers]'), or set MEMSTREAM_EMBEDDER=none") from e  # fmt: skip
    root = Path(wordllama.__file__).parent
    weights = root / "weights" / f"{CONFIG}_{DIMENSION}.safetensors"
    tokenizer = root / "tokenizers" / f"{CONFIG}_tokenizer_config.json"
    for path in (weights, tokenizer):
        if not path.is_file():
            raise EmbedderError(f"wordllama's wheel lacks {path.name}: expected at {path}")
    with safe_open(str(weights), framework="np", device="cpu") as f:
        embedding = f.get_tensor("embedding.weight")
    return WordLlamaInference(embedding, Tokenizer.from_file(str(tokenizer)), binary=False)


class WordLlamaEmbedder(Embedder):
    """WordLlama ``l2_supercat`` at 256 dimensions; ``batch`` texts per call."""

    name = f"wordllama-{CONFIG}"
    dimension = DIMENSION

    def __init__(self, batch: int = 64) -> None:
        super().__init__(batch)
        self._model = _load()

    def _embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        out = self._model.embed(texts, norm=False, batch_size=len(texts) or 1)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dimension)
