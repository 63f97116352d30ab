"""Property tests for the producer's secret redaction; no Redis needed."""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from memstream.producers.redact import Redactor
from tests.redact_secrets import (
    ALNUM,
    AWS_KEY,
    GITHUB_TOKEN,
    GOOGLE_KEY,
    JWT,
    OPENAI_KEY,
    PEM,
    SLACK_TOKEN,
    STRIPE_KEY,
)

# No b/B (bearer), no A/J (AKIA, AIza, eyJ), no - _ : = @ (every other rule's syntax).
SAFE_ALPHABET = (
    "acdefghijklmnopqrstuvwxyz" + "CDEFGHIKLMNOPQRSTUVWXYZ" + "0123456789"
    " \n\t.,;!?()[]{}<>'\"/+*%#&|~^$" + "éüßİẞ中文😀"
)
SECRETS = [
    OPENAI_KEY,
    GOOGLE_KEY,
    STRIPE_KEY,
    AWS_KEY,
    GITHUB_TOKEN,
    SLACK_TOKEN,
    JWT,
    PEM,
    f"Bearer {ALNUM}",
    "redis://u:pw@h:1/0",
    "password=hunter2",
    '"api_key": "a b c"',
    "bob@example.com",
]
PROPERTY = settings(deadline=None, suppress_health_check=[HealthCheck.too_slow])


@PROPERTY
@given(st.text(alphabet=SAFE_ALPHABET, max_size=300))
def test_text_without_secret_shapes_is_unchanged(text: str) -> None:
    assert Redactor(emails=True).scrub_text(text) == text


@PROPERTY
@given(
    st.lists(st.one_of(st.text(alphabet=SAFE_ALPHABET, max_size=30), st.sampled_from(SECRETS))),
    st.sampled_from(["", " ", "\n", ", ", "=", ":", "/", "@"]),
    st.booleans(),
)
def test_scrub_is_idempotent(parts: list[str], sep: str, emails: bool) -> None:
    redactor = Redactor(emails=emails)
    once = redactor.scrub(sep.join(parts))
    assert redactor.scrub(once) == once
    nested = {"k": parts, "t": tuple(parts)}
    assert redactor.scrub(redactor.scrub(nested)) == redactor.scrub(nested)


@PROPERTY
@given(st.lists(st.sampled_from(SECRETS[:-1]), min_size=1), st.text(SAFE_ALPHABET, max_size=20))
def test_separated_secrets_never_survive(secrets: list[str], filler: str) -> None:
    out = Redactor().scrub_text(" ".join(f"{s} {filler} " for s in secrets))
    for core in (OPENAI_KEY, GOOGLE_KEY, AWS_KEY, GITHUB_TOKEN, SLACK_TOKEN, JWT, "hunter2", ALNUM):
        assert core not in out
