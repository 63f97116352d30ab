"""The clean-payload test (``any_fires``) answers exactly what ``first_rule`` answers:
it only regroups the triggers by gate character. No Redis needed."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from memstream.producers.redact import Redactor
from memstream.producers.redact_rules import any_fires, first_rule, gate_index

# Every gate character and every needle, in both cases, among filler: texts that fire
# some triggers, none, or several.
PIECES = [
    "PRIVATE KEY", "bearer", "BeArEr", "://", "sk-", "AIza", "k_live_", "k_test_", "AKIA",
    "ASIA", "gh", "github_pat_", "xox", "eyJ", "pass", "SECRET", "Token", "apikey", "api_key",
    "api-key", "V", " ", "\t", "@", "-", "z", "_", "K", "S", "x", "J", ":", "=", "word",
    "\u212a", "İ", "ẞ", "\n",
]  # fmt: skip
TEXTS = st.lists(st.sampled_from(PIECES), max_size=8).map("".join) | st.text(max_size=40)

REDACTORS = [
    Redactor(),
    Redactor(emails=True),
    Redactor(rules=["bearer", "jwt"]),
    Redactor(rules=()),
    Redactor(extra={"ticket": r"TCK-\d+"}),
]


@pytest.mark.parametrize("redactor", REDACTORS, ids=repr)
@settings(max_examples=400, deadline=None)
@given(text=TEXTS)
def test_any_fires_is_first_rule_found(redactor: Redactor, text: str) -> None:
    entries = redactor._entries
    assert any_fires(gate_index(entries), text) == (first_rule(entries, text, None) >= 0)


def test_a_user_rule_always_fires() -> None:
    entries = Redactor(extra={"ticket": r"TCK-\d+"})._entries
    assert gate_index(entries) is None
    assert any_fires(None, "nothing here")
