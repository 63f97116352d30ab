"""Tests for the producer's secret redaction (memstream.producers.redact); no Redis needed."""

from __future__ import annotations

import base64
import copy
import time
from typing import Any

import pytest

from memstream.producers.errors import InvalidInputError
from memstream.producers.redact import BUILTIN_RULES, Redactor
from tests.redact_secrets import (
    ANTHROPIC_KEY,
    AWS_KEY,
    GITHUB_PAT,
    GITHUB_TOKEN,
    GOOGLE_KEY,
    JWT,
    OPENAI_KEY,
    PEM,
    SHA1,
    SLACK_TOKEN,
    STRIPE_KEY,
    UUID,
)

# rule -> (text with a secret, expected redaction, near misses that must stay untouched)
CASES: dict[str, tuple[str, str, list[str]]] = {
    "private_key": (
        f"key file:\n{PEM}\nloaded",
        "key file:\n[REDACTED:private_key]\nloaded",
        [
            "-----BEGIN CERTIFICATE-----\nMIIBszCCAVmgAwIBAgIU\n-----END CERTIFICATE-----",
            "-----BEGIN PUBLIC KEY-----\nMFkwEwYHKoZIzj0CAQYI\n-----END PUBLIC KEY-----",
            "never commit a private key to the repository",
        ],
    ),
    "bearer": (
        "Authorization: Bearer abc123def456ghi789",
        "Authorization: Bearer [REDACTED:bearer]",
        [
            "the bearer of bad news",
            "bearer authentication. Bearer bonds are rare.",
            "Bearer tok3n",  # too short to be a token
        ],
    ),
    "url_password": (
        "connect to redis://default:hunter2@cache.internal:6379/0 now",
        "connect to redis://default:[REDACTED:url_password]@cache.internal:6379/0 now",
        [
            "https://example.com:8443/search?q=user@host",
            "ssh://git@github.com/org/repo.git",
            "https://docs.python.org/3/library/re.html",
        ],
    ),
    "api_key": (
        f"openai {OPENAI_KEY}, anthropic {ANTHROPIC_KEY}, google {GOOGLE_KEY}, {STRIPE_KEY}",
        "openai [REDACTED:api_key], anthropic [REDACTED:api_key], google [REDACTED:api_key],"
        " [REDACTED:api_key]",
        ["task-management-system-design", "sk-" + "short", "risk-assessment-for-q3-planning"],
    ),
    "aws_access_key": (
        f"aws id {AWS_KEY} used",
        "aws id [REDACTED:aws_access_key] used",
        [AWS_KEY[:-1], "x" + AWS_KEY, "trip to ASIA and Asia"],
    ),
    "github_token": (
        f"gh auth {GITHUB_TOKEN} and {GITHUB_PAT}",
        "gh auth [REDACTED:github_token] and [REDACTED:github_token]",
        ["ghp_" + "short", "high_priority_queue", "github_pat_" + "tooShort"],
    ),
    "slack_token": (
        f"slack {SLACK_TOKEN}",
        "slack [REDACTED:slack_token]",
        ["xoxo-gossip girl", "xoxb-" + "short"],
    ),
    "jwt": (
        f"cookie {JWT}; path=/",
        "cookie [REDACTED:jwt]; path=/",
        ["eyJhbGciOiJIUzI1NiJ9", "eyJ.short.x", "keyJar.example.com"],
    ),
    "generic_secret_assignment": (
        "password=hunter2 passwd: \"correct horse\" DB_PASSWORD=pw1 clientSecret = 's3'"
        " x-api-key: k9 token:abc&x=1",
        "password=[REDACTED:generic_secret_assignment]"
        ' passwd: "[REDACTED:generic_secret_assignment]"'
        " DB_PASSWORD=[REDACTED:generic_secret_assignment]"
        " clientSecret = '[REDACTED:generic_secret_assignment]'"
        " x-api-key: [REDACTED:generic_secret_assignment]"
        " token:[REDACTED:generic_secret_assignment]&x=1",
        [
            "please reset your password and keep it secret",
            "max_tokens=512 token_count: 7 tokens: 3",
            "password:",
            'password=""',
            "password: str | None = None",
            '{"token": null, "secret": false}',
        ],
    ),
    "email": (
        "mail bob.smith+tag@example.co.uk today",
        "mail [REDACTED:email] today",
        ["@decorator", "user@localhost", "a@b"],
    ),
}

COMMON_NEAR_MISSES = [
    UUID,
    SHA1,
    f"trace {UUID} commit {SHA1}",
    "https://example.com/path?x=1&y=2",
    "Reset the password in the settings page.",
    "The agent used 1200 tokens; the secret to success is caching.",
    "",
]


def test_builtin_rule_names() -> None:
    assert tuple(CASES) == BUILTIN_RULES


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_redacts_positive_example(rule: str) -> None:
    text, expected, _ = CASES[rule]
    alone = Redactor(rules=[rule], emails=rule == "email")
    assert alone.scrub_text(text) == expected
    assert Redactor(emails=True).scrub_text(text) == expected


@pytest.mark.parametrize("rule", list(CASES))
def test_rule_leaves_near_misses(rule: str) -> None:
    redactor = Redactor(emails=True)
    for text in CASES[rule][2] + COMMON_NEAR_MISSES:
        assert redactor.scrub_text(text) is text


def test_private_key_unterminated_block_is_redacted_to_the_end() -> None:
    truncated = "-----BEGIN OPENSSH " + "PRIVATE KEY-----\nb3BlbnNzaC1rZXktdjEAAAAA"
    assert Redactor().scrub_text("x " + truncated) == "x [REDACTED:private_key]"


def test_bearer_inside_assignment_keeps_scheme() -> None:
    redactor = Redactor()
    assert redactor.scrub_text("token: Bearer abcdefghij1234") == "token: Bearer [REDACTED:bearer]"
    assert (
        redactor.scrub_text('{"api_key": "Basic dXNlcjpwYXNz"}')
        == '{"api_key": "Basic [REDACTED:generic_secret_assignment]"}'
    )


def test_url_password_may_contain_at_and_colon() -> None:
    out = Redactor().scrub_text("postgres://bob:p@ss:w0rd@db.example.com:5432/app")
    assert out == "postgres://bob:[REDACTED:url_password]@db.example.com:5432/app"


def test_nested_payload_is_scrubbed_keys_included() -> None:
    payload: dict[Any, Any] = {
        "role": "tool",
        "content": "curl -H 'Authorization: Bearer abc123def456ghi789' https://api.example.com",
        "meta": {
            "env": ["HOME=/root", f"GITHUB_TOKEN={GITHUB_TOKEN}"],
            "pair": ("ok", AWS_KEY),
            "count": 3,
            "ratio": 0.5,
            "blob": b"password=hunter2",
            "none": None,
            "flag": True,
        },
        AWS_KEY: "the key is in the key",
        7: "int keys stay",
    }
    out = Redactor().scrub(payload)
    assert out == {
        "role": "tool",
        "content": "curl -H 'Authorization: Bearer [REDACTED:bearer]' https://api.example.com",
        "meta": {
            "env": ["HOME=/root", "GITHUB_TOKEN=[REDACTED:github_token]"],
            "pair": ("ok", "[REDACTED:aws_access_key]"),
            "count": 3,
            "ratio": 0.5,
            "blob": b"password=hunter2",  # bytes are not text: untouched
            "none": None,
            "flag": True,
        },
        "[REDACTED:aws_access_key]": "the key is in the key",
        7: "int keys stay",
    }
    assert type(out["meta"]["pair"]) is tuple
    assert out["meta"]["blob"] is payload["meta"]["blob"]


def test_values_under_secret_named_keys_are_redacted_whole() -> None:
    payload = {
        "password": "hunter2",
        "clientSecret": "abc",
        "X-Api-Key": "k",
        "max_tokens": "512",
        "token_count": "7",
        "secret_santa": "Bob",
        "token": 42,
        "refresh_token": "",
    }
    assert Redactor().scrub(payload) == {
        "password": "[REDACTED:generic_secret_assignment]",
        "clientSecret": "[REDACTED:generic_secret_assignment]",
        "X-Api-Key": "[REDACTED:generic_secret_assignment]",
        "max_tokens": "512",
        "token_count": "7",
        "secret_santa": "Bob",
        "token": 42,
        "refresh_token": "",
    }
    assert Redactor(rules=["jwt"]).scrub(payload) is payload


def test_keys_redacting_to_the_same_text_are_all_kept() -> None:
    out = Redactor(emails=True).scrub({"a@example.com": 1, "b@example.com": 2, "c": 3})
    assert out == {"[REDACTED:email]": 1, "[REDACTED:email]#2": 2, "c": 3}


def test_input_is_not_mutated_and_clean_input_is_returned_as_is() -> None:
    payload = {
        "a": [f"Bearer {JWT}", {"password": "x"}],
        "b": ("clean", [1, 2]),
        "c": {"deep": [AWS_KEY]},
    }
    before = copy.deepcopy(payload)
    out = Redactor().scrub(payload)
    assert payload == before
    assert out is not payload
    assert out["b"] is payload["b"]  # unchanged branches are shared, not copied

    clean = {"role": "user", "content": "hello", "tags": ["x", "y"], "n": (1, "z")}
    assert Redactor().scrub(clean) is clean


def test_emails_are_only_redacted_when_asked() -> None:
    text = "contact alice@example.org"
    assert Redactor().scrub_text(text) is text
    assert Redactor(rules=["email"]).scrub_text(text) is text  # `emails` is the switch
    assert Redactor(emails=True).scrub_text(text) == "contact [REDACTED:email]"
    assert Redactor(rules=[], emails=True).scrub_text(text) == "contact [REDACTED:email]"


def test_rules_subset_only_applies_those_rules() -> None:
    redactor = Redactor(rules=["jwt", "aws_access_key"])
    text = f"{JWT} {AWS_KEY} password=hunter2 Bearer abc123def456ghi789"
    assert redactor.scrub_text(text) == (
        "[REDACTED:jwt] [REDACTED:aws_access_key] password=hunter2 Bearer abc123def456ghi789"
    )


def test_unknown_rule_names_the_field() -> None:
    with pytest.raises(InvalidInputError) as info:
        Redactor(rules=["jwt", "nope"])
    assert info.value.field == "redaction.rules"
    assert info.value.rule.startswith("unknown rule 'nope'; known: private_key, bearer")
    with pytest.raises(InvalidInputError) as info:
        Redactor(rules="jwt")
    assert info.value.field == "redaction.rules"


@pytest.mark.parametrize(
    ("extra", "field"),
    [
        ({"bad": "(unclosed"}, "redaction.extra.bad"),
        ({"empty": "x*"}, "redaction.extra.empty"),
        ({"self": "REDACTED"}, "redaction.extra.self"),  # would redact its own placeholder
        ({"jwt": "abc"}, "redaction.extra"),  # a built-in rule's name
        ({"has space": "abc"}, "redaction.extra"),
    ],
)
def test_invalid_extra_rule_names_the_field(extra: dict[str, str], field: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        Redactor(extra=extra)
    assert info.value.field == field


@pytest.mark.parametrize("placeholder", ["{nope}", "{", "", " [x]", "{kind}: ***"])
def test_invalid_placeholder_is_rejected(placeholder: str) -> None:
    with pytest.raises(InvalidInputError) as info:
        Redactor(placeholder=placeholder)
    assert info.value.field == "redaction.placeholder"


def test_extra_user_rules() -> None:
    redactor = Redactor(
        rules=[], extra={"ticket": r"TKT-\d{6}", "pin": r"\bpin (?P<secret>\d{4})\b"}
    )
    assert redactor.enabled
    assert redactor.scrub_text("see TKT-123456, pin 1234, TKT-12") == (
        "see [REDACTED:ticket], pin [REDACTED:pin], TKT-12"
    )
    assert Redactor(extra={"ticket": r"TKT-\d{6}"}).scrub_text(f"TKT-000001 {AWS_KEY}") == (
        "[REDACTED:ticket] [REDACTED:aws_access_key]"
    )


def test_custom_placeholder() -> None:
    redactor = Redactor(placeholder="<{kind}>")
    assert redactor.scrub_text("Bearer abc123def456ghi789") == "Bearer <bearer>"
    assert redactor.scrub_text("password=<generic_secret_assignment>") == (
        "password=<generic_secret_assignment>"
    )


def test_off_leaves_secrets_and_enabled_reports_rules() -> None:
    off = Redactor.off()
    assert not off.enabled
    payload = {"password": "hunter2", "k": [AWS_KEY]}
    assert off.scrub(payload) is payload
    assert off.scrub_text(PEM) is PEM
    assert Redactor().enabled
    assert not Redactor(rules=[]).enabled
    assert Redactor(rules=[], emails=True).enabled


def test_hostile_inputs_stay_linear() -> None:
    # Each would take minutes with a backtracking-prone pattern; linear scans take ms.
    blob = base64.b64encode(bytes(range(256)) * 2000).decode()
    hostile = [
        "a" * 100_000 + "@",
        "sk-" * 30_000,
        "eyJ" * 30_000 + ".",
        "password=" * 10_000,
        "a://" * 25_000 + "@",
        "Bearer " * 10_000,
        "-----BEGIN RSA " + "PRIVATE KEY-----" * 5_000,
        "x." * 50_000 + "@",
        blob,
    ]
    redactor = Redactor(emails=True)
    for text in hostile:
        start = time.perf_counter()
        redactor.scrub_text(text)
        assert time.perf_counter() - start < 2.0, text[:20]
