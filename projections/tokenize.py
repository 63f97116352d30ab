"""Deterministic tokenising, shared by the index writer and the search reader.

Text is NFKC-normalised and case-folded, split on anything that is not a letter or a
digit, and English stop words are dropped. No stemming: the same text gives the same
tokens on every machine and in every version, which the index relies on. A token becomes
part of a Redis key through :func:`key_part`, which keeps plain ASCII tokens readable and
hashes the rest, so every key part passes ``keys.check_id``.
"""

from __future__ import annotations

import hashlib
import re
import unicodedata
from collections import Counter

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


def tokens(text: str) -> list[str]:
    """The searchable words of ``text``, in order, stop words removed."""
    folded = unicodedata.normalize("NFKC", text).casefold()
    out = []
    for found in _WORD.findall(folded):
        word = found[:MAX_TOKEN_CHARS]
        if word not in STOP_WORDS:
            out.append(word)
    return out


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
