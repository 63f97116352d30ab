"""Embedders: the offline WordLlama default (no network at load or embed), and the
OpenAI-compatible HTTP embedder against a stub server on loopback started here."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, ClassVar

import numpy as np
import pytest

from memstream.producers.errors import ConfigError
from memstream.producers.settings import Settings
from memstream.projections.embedders import EmbedderError, make_embedder
from memstream.projections.embedders.http import OpenAIEmbedder
from memstream.projections.embedders.wordllama import WordLlamaEmbedder

DIM = 8


def test_wordllama_works_with_the_network_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> None:
        raise AssertionError("the default embedder touched the network")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket, "create_connection", refuse)
    embedder = make_embedder(Settings(embedder_batch=2))
    assert isinstance(embedder, WordLlamaEmbedder) and embedder.dimension == 256
    texts = ["Trains to Sintra leave from Rossio", "the Sintra train", "redis cache eviction"]
    v = embedder.embed(texts)
    assert v.shape == (3, 256) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1, atol=1e-5)
    assert np.array_equal(v, embedder.embed(texts))  # deterministic, batching-independent
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.2  # a paraphrase is nearer than a distractor
    assert embedder.embed([]).shape == (0, 256)
    assert make_embedder(Settings(embedder="none")) is None


class _Stub(BaseHTTPRequestHandler):
    calls: ClassVar[list[tuple[dict[str, Any], str | None]]] = []
    broken: ClassVar[bool] = False

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        type(self).calls.append((body, self.headers.get("Authorization")))
        texts = body["input"]
        # Reversed order with explicit indexes: the client must sort by "index".
        rows = [{"index": i, "embedding": [float(len(t)), 1.0] + [float(i)] * (DIM - 2)}
                for i, t in reversed(list(enumerate(texts)))]  # fmt: skip
        reply = b"{}" if type(self).broken else json.dumps({"data": rows}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(reply)))
        self.end_headers()
        self.wfile.write(reply)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def stub_url() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Stub)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Stub.calls, _Stub.broken = [], False
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_openai_embedder_batches_and_orders(stub_url: str) -> None:
    settings = Settings(embedder="openai", embedder_url=stub_url, embedder_model="m",
                        embedder_api_key="sk-test", embedder_batch=3)  # fmt: skip
    embedder = make_embedder(settings)
    assert isinstance(embedder, OpenAIEmbedder) and embedder.dimension == DIM
    assert embedder.name == "openai:m"
    texts = ["a", "bb", "ccc", "dddd", "eeeee", "ffffff", "g"]
    v = embedder.embed(texts)
    assert v.shape == (7, DIM)
    # One probe, then ceil(7 / 3) = 3 requests of at most 3 texts, in order.
    sizes = [len(body["input"]) for body, _ in _Stub.calls]
    assert sizes == [1, 3, 3, 1]
    assert all(auth == "Bearer sk-test" for _, auth in _Stub.calls)
    assert all(body["model"] == "m" for body, _ in _Stub.calls)
    raw = np.array([[len(t), 1.0] + [i % 3] * (DIM - 2) for i, t in enumerate(texts)])
    expected = raw / np.linalg.norm(raw, axis=1, keepdims=True)
    assert np.allclose(v, expected, atol=1e-6)
    _Stub.broken = True
    with pytest.raises(EmbedderError, match="unexpected reply"):
        embedder.embed(["x"])


def test_openai_embedder_errors_are_ours() -> None:
    with pytest.raises(ConfigError, match="embedder_url"):
        make_embedder(Settings(embedder="openai"))
    with pytest.raises(ConfigError, match="http"):
        OpenAIEmbedder("file:///etc/passwd", "m")
    with pytest.raises(EmbedderError, match=r"127\.0\.0\.1:9"):
        OpenAIEmbedder("http://127.0.0.1:9/v1", "m", timeout_s=2)


def test_embedder_is_chosen_from_the_environment() -> None:
    settings = Settings.from_env({"MEMSTREAM_EMBEDDER": "none", "MEMSTREAM_EMBEDDER_BATCH": "7"})
    assert (settings.embedder, settings.embedder_batch) == ("none", 7)
