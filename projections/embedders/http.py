"""An OpenAI-compatible embedder: ``POST {base}/embeddings`` with ``{"model", "input"}``.

Uses the standard library's HTTP client (no new dependency). The dimension is learnt from
the first reply unless given, and a reply of any other width is an error: one space only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from memstream.producers.errors import ConfigError

from . import Embedder, EmbedderError

if TYPE_CHECKING:
    import numpy as np
    import numpy.typing as npt


class OpenAIEmbedder(Embedder):
    """``base_url`` (e.g. ``http://127.0.0.1:8080/v1``), ``model``, optional bearer
    ``api_key``, ``dimension`` when known in advance, ``batch`` texts per request,
    ``timeout_s`` per request."""

    def __init__(
        self,
        base_url: str,
        model: str,
        *,
        api_key: str | None = None,
        dimension: int | None = None,
        batch: int = 64,
        timeout_s: float = 30.0,
    ) -> None:
        super().__init__(batch)
        if urlsplit(base_url).scheme not in ("http", "https"):
            raise ConfigError(
                f"invalid memstream setting embedder_url: must be http(s), got {base_url!r}"
            )
        self.url = base_url.rstrip("/") + "/embeddings"
        self.model = model
        self.name = f"openai:{model}"
        self._key = api_key
        self._timeout = timeout_s
        self.dimension = dimension or len(self._request(["dimension probe"])[0])

    def _request(self, texts: list[str]) -> list[list[float]]:
        body = json.dumps({"model": self.model, "input": texts}).encode()
        headers = {"Content-Type": "application/json"}
        if self._key:
            headers["Authorization"] = f"Bearer {self._key}"
        # The scheme was checked to be http(s) in __init__ (no file:// or custom handler).
        request = urllib.request.Request(self.url, body, headers, method="POST")  # noqa: S310
        try:
            with urllib.request.urlopen(request, timeout=self._timeout) as reply:  # noqa: S310
                data: Any = json.loads(reply.read())
        except (urllib.error.URLError, TimeoutError, ValueError) as e:
            raise EmbedderError(f"embedder {self.url}: {e}") from e
        try:
            # The API may return rows out of order; "index" says whose each is.
            rows = sorted(data["data"], key=lambda row: row["index"])
            vectors = [[float(x) for x in row["embedding"]] for row in rows]
        except (KeyError, TypeError, ValueError) as e:
            raise EmbedderError(f"embedder {self.url}: unexpected reply ({e!r})") from e
        if len(vectors) != len(texts):
            raise EmbedderError(f"embedder {self.url}: {len(vectors)} rows for {len(texts)} texts")
        return vectors

    def _embed_batch(self, texts: list[str]) -> npt.NDArray[np.float32]:
        import numpy as np

        return np.asarray(self._request(texts), dtype=np.float32)
