"""Deterministic tokenising, shared by the index writer and the search reader.

Text is NFKC-normalised and case-folded, split on anything that is not a letter or a
digit, English stop words are dropped, and each word is reduced by the Snowball English
stemmer (PyStemmer), so "Trains to Sintra" and "Sintra train" share their terms. Snowball
is a fixed algorithm, so the same text gives the same tokens on every machine, which the
index relies on; the stemmer changes the terms an index holds, so an index written before
stemming is rebuilt by replay (docs/search.md). A token becomes
part of a Redis key through :func:`key_part`, which keeps plain ASCII tokens readable and
hashes the rest, so every key part passes ``keys.check_id``.
"""

from __future__ import annotations

import hashlib
import re
import threading
import unicodedata
from collections import Counter

import Stemmer  # type: ignore[import-not-found,unused-ignore]

MAX_TOKEN_CHARS = 64
"""Longer runs are cut: a 10 kB base64 blob is not a word anyone searches for."""

_WORD = re.compile(r"[^\W_]+")
_PLAIN = re.compile(r"[a-z0-9]+")

_STOP_TEXT = (
    "a an and are as at be been but by for from had has have he her his i if in into is "
    "it its me my no not of on or our she so than that the their them then there these "
    "they this to was we were what when which who will with you your"
)
STOP_WORDS = frozenset(_STOP_TEXT.split())


_LOCAL = threading.local()


def _stemmer() -> Stemmer.Stemmer:
    # One per thread: a PyStemmer object is not safe to share, and the worker's planner
    # may tokenize in a thread while the reader does on the event loop.
    found = getattr(_LOCAL, "stemmer", None)
    if found is None:
        found = _LOCAL.stemmer = Stemmer.Stemmer("english")
    return found


def tokens(text: str) -> list[str]:
    """The searchable terms of ``text``, in order: words stemmed, stop words removed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    words = []
    for found in _WORD.findall(folded):
        word = found[:MAX_TOKEN_CHARS]
        if word not in STOP_WORDS:
            words.append(word)
    stemmed: list[str] = _stemmer().stemWords(words)
    return stemmed


def term_counts(*texts: str) -> Counter[str]:
    """Term frequencies over several fields of one document."""
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(tokens(text))
    return counts


def key_part(token: str) -> str:
    """A token as a key part: itself when plain ASCII, else ``u=`` and a hash. Plain
    tokens never contain ``=``, so the two forms cannot collide."""
    if _PLAIN.fullmatch(token):
        return token
    digest = hashlib.sha1(token.encode(), usedforsecurity=False).hexdigest()[:20]
    return f"u={digest}"
