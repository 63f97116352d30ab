"""The redaction rules: the built-in patterns, their triggers, and how rules are picked,
compiled and rendered. :class:`~.redact.Redactor` (the walker over payloads) applies them.

Each rule declares *triggers*: characters and substrings that any of its matches contains.
A clean string costs one character-class scan and a few ``in`` tests; a rule's regex runs
only when one of its triggers fires (one alternation regex over all the rules would cost
tens of microseconds per 200 characters, because ``re`` tries every branch at every
position).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from .errors import InvalidInputError

__all__ = [
    "BUILTIN_RULES", "GENERIC", "SECRET_KEY", "SPECS", "GateIndex", "Rule", "Trigger",
    "any_fires", "compile_extra", "first_rule", "gate_index", "pick", "render",
]  # fmt: skip

Trigger = tuple[str, tuple[str, ...], bool]
"""``(gates, needles, folded)``: fires when the text holds one of the ``gates`` characters and
one of the ``needles`` (searched in ``text.lower()`` if ``folded``; none: a gate is enough).
Gates are rare characters of the needle: ``in`` is a ``memchr`` for one character only."""
Entry = tuple[int, str, tuple[str, ...], bool]  # a trigger with the index of its rule

# Every pattern starts on a literal or a boundary, and its repetitions are bounded or stop at
# a delimiter, so no input (a megabyte of base64 included) makes a rule scan quadratic.
_B64 = r"[A-Za-z0-9\-._~+/]"  # RFC 6750 b64token
_KEYWORDS = {"p": "ass(?:word|wd|phrase)", "s": "ecret", "t": "oken", "a": "pi[_-]?key"}
_KEY_SUFFIX = r"(?:[_-]?(?:access[_-]?)?key)?"
# Each branch opens with a literal letter, so ``re`` skips to candidate letters instead of
# trying every branch at every position (~5x faster on code). A small letter must start a
# word; a capital may also follow a small letter (clientSecret), but not a capital (ABCToken).
_KEYWORD_START = "|".join(
    f"{c}(?<![{before}]{c})(?i:{rest})"
    for first, rest in _KEYWORDS.items()
    for c, before in ((first, "A-Za-z0-9"), (first.upper(), "A-Z"))
)


@dataclass(frozen=True, slots=True)
class _Spec:
    pattern: str  # a group named "s" holds the secret; without one the whole match does
    triggers: tuple[Trigger, ...]


SPECS: Final[dict[str, _Spec]] = {
    # An unterminated block (a truncated payload) is redacted to the end of the string: half
    # a private key is still a leak.
    "private_key": _Spec(
        r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
        r"(?:-----END [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
        (("V", ("PRIVATE KEY",), False),),
    ),
    # Prose has "bearer bonds" and "bearer authentication.": a token needs a digit, '+' or
    # '/', or a length that no English word has.
    "bearer": _Spec(
        r"[Bb](?<![A-Za-z0-9][Bb])(?i:earer)[ \t]+"
        rf"(?P<s>(?:(?=[A-Za-z\-._~]*[0-9+/]){_B64}{{8,}}|{_B64}{{20,}})=*)",
        ((" \t", ("bearer",), True),),
    ),
    # Anchored on "://", rarer than a scheme's letters. A password may hold ':' and '@', so
    # it runs to the last '@' before the path.
    "url_password": _Spec(
        r"://(?<=[A-Za-z0-9]://)[^\s:/?#@\[\]]{0,256}:(?P<s>[^\s/?#]{1,256})(?=@)",
        (("@", ("://",), False),),
    ),
    "api_key": _Spec(
        r"(?<![A-Za-z0-9_-])(?:sk-(?:ant-|proj-)?+[A-Za-z0-9_-]{20,}"
        r"|AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])|[sr]k_(?:live|test)_[0-9A-Za-z]{16,})",
        (("-", ("sk-",), False), ("z", ("AIza",), False), ("_", ("k_live_", "k_test_"), False)),
    ),
    "aws_access_key": _Spec(
        r"A[KS]IA(?<![A-Za-z0-9]....)[A-Z0-9]{16}(?![A-Za-z0-9])",
        (("K", ("AKIA",), False), ("S", ("ASIA",), False)),
    ),
    "github_token": _Spec(
        r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255})",
        (("_", ("gh", "github_pat_"), False),),
    ),
    "slack_token": _Spec(
        r"xox[abprs]-(?<![A-Za-z0-9]xox.-)[A-Za-z0-9][A-Za-z0-9-]{9,}",
        (("x", ("xox",), False),),
    ),
    "jwt": _Spec(
        r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
        (("J", ("eyJ",), False),),
    ),
    # The key may end a longer name (DB_PASSWORD, clientSecret, x-api-key) but not run on
    # into one (max_tokens, token_count). An auth scheme before the value is kept, so
    # "Authorization: Basic ..." hides the credentials rather than the word "Basic". Bare
    # nulls, booleans and type names are no secrets: "password: str | None" stays code.
    "generic_secret_assignment": _Spec(
        rf"(?:{_KEYWORD_START})(?i:{_KEY_SUFFIX})[\"']?[ \t]*[:=][=>]?[ \t]*[\"']?"
        r"(?:(?i:basic|bearer)[ \t]+)?(?P<s>(?<=\")[^\"\r\n]+|(?<=')[^'\r\n]+|(?<![\"'])"
        r"(?!(?:None|null|nil|undefined|true|false|True|False|str|int|bool|bytes|string"
        r"|Optional|SecretStr)(?![A-Za-z0-9_]))[^\s\"',;&]+)",
        ((":=", ("pass", "secret", "token", "apikey", "api_key", "api-key"), True),),
    ),
    # Not after '/': ssh://git@host names a user, not a mailbox.
    "email": _Spec(
        r"(?<![A-Za-z0-9._%+/-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}"
        r"(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])",
        (("@", (), False),),
    ),
}

BUILTIN_RULES: Final[tuple[str, ...]] = tuple(SPECS)
"""Names of the built-in rules, in the order they are applied."""

GENERIC = "generic_secret_assignment"
_KEYWORD = "|".join(first + rest for first, rest in _KEYWORDS.items())
SECRET_KEY = re.compile(rf"(?i)[a-z0-9_.-]{{0,64}}?(?:{_KEYWORD}){_KEY_SUFFIX}")

NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")  # a user rule's name


def first_rule(entries: tuple[Entry, ...], text: str, lower: str | None) -> int:
    """The rule index of the first entry that fires, or -1; ``lower`` is made if needed."""
    for index, gates, needles, folded in entries:
        if gates:
            for gate in gates:
                if gate in text:
                    break
            else:
                continue
        if not needles:
            return index
        if folded and lower is None:
            lower = text.lower()
        hay = lower if folded and lower is not None else text
        for needle in needles:
            if needle in hay:
                return index
    return -1


GateIndex = tuple[tuple[str, tuple[str, ...], tuple[str, ...], bool], ...]
"""Per gate character: the plain needles, the folded needles, and whether an entry with
that gate needs no needle; see :func:`gate_index`."""


def gate_index(entries: tuple[Entry, ...]) -> GateIndex | None:
    """The entries regrouped by gate character for :func:`any_fires`; None when an entry
    has no gate (a user rule: it always fires)."""
    by: dict[str, tuple[list[str], list[str], list[bool]]] = {}
    for _, gates, needles, folded in entries:
        if not gates:
            return None
        for gate in gates:
            plain, fold, bare = by.setdefault(gate, ([], [], []))
            (fold if folded else plain).extend(n for n in needles if n not in plain + fold)
            bare.append(not needles)
    return tuple((g, tuple(p), tuple(f), any(b)) for g, (p, f, b) in by.items())


def any_fires(index: GateIndex | None, text: str) -> bool:
    """``first_rule(entries, text, None) >= 0`` for the entries of ``index``, with one
    ``in`` per gate character instead of one per gate of each entry (most gates are
    shared or absent: this is the test every clean payload pays)."""
    if index is None:
        return True
    lower = None
    for gate, plain, folded, bare in index:
        if gate in text:
            if bare:
                return True
            for needle in plain:
                if needle in text:
                    return True
            if folded:
                if lower is None:
                    lower = text.lower()
                for needle in folded:
                    if needle in lower:
                        return True
    return False


class Rule:
    """One compiled rule: its regex, its trigger entries and its placeholder."""

    __slots__ = ("_group", "done", "entries", "kind", "pattern", "placeholder")

    def __init__(
        self,
        index: int,
        kind: str,
        pattern: re.Pattern[str],
        placeholder: str,
        triggers: tuple[Trigger, ...],
    ) -> None:
        self.kind = kind
        self.pattern = pattern
        self.placeholder = placeholder
        self.done: tuple[str, ...] = ()  # every placeholder of the redactor
        # A user rule has no triggers: its one entry (no gate, no needle) always fires.
        self.entries: tuple[Entry, ...] = tuple(
            (index, g, n, f) for g, n, f in triggers or (("", (), False),)
        )
        names = pattern.groupindex
        self._group: int | str = "secret" if "secret" in names else "s" if "s" in names else 0

    def apply(self, text: str) -> str:
        return self.pattern.sub(self._replace, text)

    def _replace(self, m: re.Match[str]) -> str:
        start, end = m.span(self._group)
        text = m.string
        # A secret that already starts with a placeholder was redacted by an earlier rule or
        # pass: leaving it alone is what makes scrubbing idempotent.
        if start == end or text.startswith(self.done, start):
            return m.group()
        return text[m.start() : start] + self.placeholder + text[end : m.end()]


def pick(rules: Iterable[str] | None, emails: bool) -> list[str]:
    if isinstance(rules, str):
        raise InvalidInputError("redaction.rules", "must be a list of rule names", rules)
    wanted = set(BUILTIN_RULES if rules is None else rules)
    unknown = sorted(map(str, wanted - set(BUILTIN_RULES)))
    if unknown:
        known = ", ".join(BUILTIN_RULES)
        raise InvalidInputError("redaction.rules", f"unknown rule {unknown[0]!r}; known: {known}")
    return [n for n in BUILTIN_RULES if (emails if n == "email" else n in wanted)]


def compile_extra(extra: Mapping[str, str]) -> dict[str, re.Pattern[str]]:
    out: dict[str, re.Pattern[str]] = {}
    for name, pattern in extra.items():
        if not isinstance(name, str) or not NAME.fullmatch(name) or name in SPECS:
            rule = "names are 1-64 of A-Z a-z 0-9 _ . - and not a built-in rule's"
            raise InvalidInputError("redaction.extra", rule, name)
        field = f"redaction.extra.{name}"
        try:
            compiled = re.compile(pattern)
        except (re.error, TypeError) as exc:
            raise InvalidInputError(field, f"invalid regex: {exc}", pattern) from exc
        # A bytes pattern cannot run on text; an empty match would put a placeholder between
        # every two characters.
        if not isinstance(pattern, str) or compiled.fullmatch(""):
            raise InvalidInputError(field, "must be a text regex that cannot match ''", pattern)
        out[name] = compiled
    return out


def render(placeholder: str, kind: str) -> str:
    try:
        text = placeholder.format(kind=kind)
    except (KeyError, IndexError, ValueError) as exc:
        raise InvalidInputError(
            "redaction.placeholder", f"bad format string: {exc}", placeholder
        ) from exc
    # An empty or space-padded placeholder lets the next pass read the following word as the
    # value of "password=", so scrubbing would never settle.
    if not text or text != text.strip():
        raise InvalidInputError("redaction.placeholder", "must be non-empty, unpadded", text)
    return text
