"""Secret redaction applied to every event payload before it is encoded and sent.

Secrets are redacted in the producer, before they leave the agent: nothing downstream (Redis,
workers, archives) ever sees them. :class:`Redactor` walks a payload (dicts, lists, tuples)
and rewrites the secret part of every string with a placeholder such as
``[REDACTED:bearer]``, keeping the surrounding context (``Bearer``, the URL's user and host,
the ``password=`` key) so that events stay readable.

It runs on every append, so the common case (a string with no secret) must be cheap. A single
alternation regex over all rules costs ~45 us for 200 characters, because ``re`` tries every
branch at every position. Instead each rule names *needles*: substrings that any match must
contain, each guarded by a *gate* character that the match must contain too. A clean string
costs a few ``str.__contains__`` calls (``memchr`` for the gates) and no regex at all; the
rules' regexes run only when one of their needles is present.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from .errors import InvalidInputError

__all__ = ["BUILTIN_RULES", "Redactor"]

# Every pattern is anchored on a literal or a word boundary and its repetitions are bounded
# or delimited, so no input (a 1 MB base64 blob included) makes a rule scan quadratic.
_B64_CHARS = r"[A-Za-z0-9\-._~+/]"  # RFC 6750 b64token
_KEYWORD = r"pass(?:word|wd|phrase)|secret|token|api[_-]?key"
_KEY_SUFFIX = r"(?:[_-]?(?:access[_-]?)?key)?"
# The same keywords, each branch opening with a literal letter so that ``re`` can skip to
# candidate letters instead of trying every branch at every position (3x faster). A small
# letter must start a word; a capital may also follow a small one (clientSecret).
_KEYWORD_START = "|".join(
    f"{c}(?<![{before}]{c})(?i:{rest})"
    for first, rest in (
        ("p", "ass(?:word|wd|phrase)"),
        ("s", "ecret"),
        ("t", "oken"),
        ("a", "pi[_-]?key"),
    )
    for c, before in ((first, "A-Za-z0-9"), (first.upper(), "A-Z"))
)

Needle = tuple[str, str]
"""``(gate, needle)``: a rule can match only where both occur in the text."""


@dataclass(frozen=True, slots=True)
class _Spec:
    pattern: str
    exact: tuple[Needle, ...] = ()
    folded: tuple[Needle, ...] = ()  # needle is searched in text.lower(); gate in the text


_SPECS: Final[dict[str, _Spec]] = {
    # An unterminated block (a truncated payload) is redacted to the end of the string: half
    # a private key is still a leak.
    "private_key": _Spec(
        r"-----BEGIN [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----(?s:.*?)"
        r"(?:-----END [A-Z ]{0,40}PRIVATE KEY(?: BLOCK)?-----|\Z)",
        exact=(("-", "PRIVATE KEY"),),
    ),
    # Prose says "bearer bonds" and "bearer authentication.": a token needs a digit, '+' or
    # '/', or a length no English word has.
    "bearer": _Spec(
        r"[Bb](?<![A-Za-z0-9][Bb])(?i:earer)[ \t]+"
        rf"(?P<s>(?:(?=[A-Za-z\-._~]*[0-9+/]){_B64_CHARS}{{8,}}|{_B64_CHARS}{{20,}})=*)",
        folded=((" ", "bearer"), ("\t", "bearer")),
    ),
    # Anchored on "://" (rarer than a scheme's first letter); the password may hold ':' and
    # '@', so it runs to the last '@' before the path.
    "url_password": _Spec(
        r"://(?<=[A-Za-z0-9]://)[^\s:/?#@\[\]]{0,256}:(?P<s>[^\s/?#]{1,256})(?=@)",
        exact=(("@", "://"),),
    ),
    "api_key": _Spec(
        r"(?<![A-Za-z0-9_-])(?:sk-(?:ant-|proj-)?+[A-Za-z0-9_-]{20,}"
        r"|AIza[0-9A-Za-z_-]{35}(?![0-9A-Za-z_-])"
        r"|[sr]k_(?:live|test)_[0-9A-Za-z]{16,})",
        exact=(("-", "sk-"), ("z", "AIza"), ("_", "k_live_"), ("_", "k_test_")),
    ),
    "aws_access_key": _Spec(
        r"A[KS]IA(?<![A-Za-z0-9]....)[A-Z0-9]{16}(?![A-Za-z0-9])",
        exact=(("K", "AKIA"), ("S", "ASIA")),
    ),
    "github_token": _Spec(
        r"g(?<![A-Za-z0-9_]g)(?:h[pousr]_[A-Za-z0-9]{36,255}|ithub_pat_[A-Za-z0-9_]{22,255})",
        exact=(("_", "gh"), ("_", "github_pat_")),
    ),
    "slack_token": _Spec(
        r"xox[abprs]-(?<![A-Za-z0-9]xox.-)[A-Za-z0-9][A-Za-z0-9-]{9,}",
        exact=(("-", "xox"),),
    ),
    "jwt": _Spec(
        r"eyJ(?<![A-Za-z0-9_-]eyJ)[A-Za-z0-9_-]{10,}\.[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]*",
        exact=((".", "eyJ"),),
    ),
    # The key may end a longer name (DB_PASSWORD, clientSecret, x-api-key) but not run on
    # into one (max_tokens, token_count). An auth scheme before the value is kept, so
    # "Authorization: Basic ..." hides the credentials rather than the word "Basic".
    "generic_secret_assignment": _Spec(
        rf"(?:{_KEYWORD_START})(?i:{_KEY_SUFFIX})[\"']?[ \t]*[:=][=>]?[ \t]*[\"']?"
        r"(?:(?i:basic|bearer)[ \t]+)?"
        r"(?P<s>(?<=\")[^\"\r\n]+|(?<=')[^'\r\n]+|(?<![\"'])[^\s\"',;&]+)",
        folded=tuple(
            (gate, word)
            for gate in ":="
            for word in ("pass", "secret", "token", "apikey", "api_key", "api-key")
        ),
    ),
    "email": _Spec(
        r"(?<![A-Za-z0-9._%+-])[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9-]{1,63}"
        r"(?:\.[A-Za-z0-9-]{1,63}){0,8}\.[A-Za-z]{2,24}(?![A-Za-z0-9-])",
        exact=(("@", "@"),),
    ),
}

BUILTIN_RULES: Final[tuple[str, ...]] = tuple(_SPECS)
"""Names of the built-in rules, in the order they are applied."""

_GENERIC = "generic_secret_assignment"
_SECRET_KEY = re.compile(rf"(?i)[a-z0-9_.-]{{0,64}}?(?:{_KEYWORD}){_KEY_SUFFIX}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_MAX_PASSES = 4
_KEY_CACHE_MAX = 4096


class _Rule:
    """One compiled rule: its regex, its needles and the placeholder that replaces it."""

    __slots__ = ("_done", "_group", "apply", "exact", "folded", "kind", "pattern", "placeholder")

    def __init__(
        self,
        kind: str,
        pattern: re.Pattern[str],
        placeholder: str,
        exact: tuple[Needle, ...] = (),
        folded: tuple[Needle, ...] = (),
    ) -> None:
        self.kind = kind
        self.pattern = pattern
        self.placeholder = placeholder
        self.exact = exact
        self.folded = folded
        self._group: int | str = "s" if "s" in pattern.groupindex else 0
        if "secret" in pattern.groupindex:
            self._group = "secret"
        self._done: tuple[str, ...] = ()
        # Bound once: ``pattern.sub`` would otherwise get a fresh bound method per call.
        self.apply: Callable[[str], str] = lambda text: pattern.sub(self._replace, text)

    def set_done(self, placeholders: tuple[str, ...]) -> None:
        self._done = placeholders

    def may_match(self, text: str, lower: str) -> bool:
        if not (self.exact or self.folded):
            return True  # a user rule: only its own regex can tell
        for gate, needle in self.exact:
            if gate in text and needle in text:
                return True
        for gate, needle in self.folded:
            if gate in text and needle in lower:
                return True
        return False

    def _replace(self, m: re.Match[str]) -> str:
        start, end = m.span(self._group)
        text = m.string
        # A secret that already starts with a placeholder was redacted by an earlier pass or
        # rule: leaving it alone is what makes scrubbing idempotent.
        if start == end or text.startswith(self._done, start):
            return m.group()
        return text[m.start() : start] + self.placeholder + text[end : m.end()]


class Redactor:
    """Rewrites secrets in strings and in nested dict / list / tuple payloads.

    ``rules`` picks built-in rules by name (``None``: all but ``"email"``); ``"email"`` is
    switched by ``emails`` alone. ``extra`` adds user rules, name -> regex; a group named
    ``secret`` limits the replacement to that group. Dict values stored under a secret-named
    key (``password``, ``api_key``, ``clientSecret`` ...) are redacted whole when
    ``generic_secret_assignment`` is on.
    """

    def __init__(
        self,
        *,
        emails: bool = False,
        rules: Iterable[str] | None = None,
        extra: Mapping[str, str] | None = None,
        placeholder: str = "[REDACTED:{kind}]",
    ) -> None:
        names = self._pick(rules, emails)
        compiled = [(n, re.compile(_SPECS[n].pattern), _SPECS[n]) for n in names]
        self._rules: tuple[_Rule, ...] = tuple(
            _Rule(n, p, self._render(placeholder, n), s.exact, s.folded) for n, p, s in compiled
        ) + tuple(
            _Rule(name, pattern, self._render(placeholder, name))
            for name, pattern in self._compile_extra(extra or {}).items()
        )
        self._done = tuple({r.placeholder for r in self._rules})
        for rule in self._rules:
            rule.set_done(self._done)
        self._gates = self._group_needles()
        self._has_user_rules = any(not (r.exact or r.folded) for r in self._rules)
        self._key_placeholder = next(
            (r.placeholder for r in self._rules if r.kind == _GENERIC), None
        )
        self._keys: dict[str, tuple[str | None, bool]] = {}
        self._check_placeholders()

    @classmethod
    def off(cls) -> Redactor:
        """A redactor with no rules: :meth:`scrub` returns its input untouched."""
        return cls(rules=())

    @property
    def enabled(self) -> bool:
        return bool(self._rules)

    @property
    def rules(self) -> tuple[str, ...]:
        """Names of the active rules, built-in first, in the order they are applied."""
        return tuple(r.kind for r in self._rules)

    def __repr__(self) -> str:
        return f"Redactor(rules={self.rules!r})"

    def scrub_text(self, text: str) -> str:
        """``text`` with every secret replaced; the same object when there is none."""
        if not self._rules or not (self._has_user_rules or self._maybe_secret(text)):
            return text
        # One pass can expose a match to an earlier rule (a later rule's placeholder closes
        # a gap); repeating until nothing changes makes scrub_text idempotent.
        for _ in range(_MAX_PASSES):
            scrubbed = self._pass(text)
            if scrubbed == text:
                break
            text = scrubbed
        return text

    def scrub(self, value: Any) -> Any:
        """``value`` with secrets redacted in every string, dict key included.

        Containers come back as new plain ``dict`` / ``list`` / ``tuple`` when something
        changed and as the very same object when nothing did; the input is never mutated.
        Other types (bytes, numbers, models) are returned untouched.
        """
        if not self._rules:
            return value
        return self._scrub(value)

    # -- internals -------------------------------------------------------------------------

    def _scrub(self, value: Any) -> Any:
        kind = type(value)
        if kind is str:
            return self.scrub_text(value)
        if kind is dict or isinstance(value, dict):
            return self._scrub_dict(value)
        if kind is list or kind is tuple or isinstance(value, (list, tuple)):
            items = [self._scrub(item) for item in value]
            if all(new is old for new, old in zip(items, value, strict=True)):
                return value
            return items if isinstance(value, list) else tuple(items)
        if isinstance(value, str):  # a str subclass (an enum member, say)
            return self.scrub_text(value)
        return value

    def _scrub_dict(self, value: dict[Any, Any]) -> Any:
        out: dict[Any, Any] = {}
        changed = False
        for key, item in value.items():
            new_key, secret = self._key(key) if isinstance(key, str) else (None, False)
            new_key = key if new_key is None else new_key
            if secret and isinstance(item, str) and item and not item.startswith(self._done):
                new_item: Any = self._key_placeholder
            else:
                new_item = self._scrub(item)
            changed = changed or new_key is not key or new_item is not item
            # Two keys may redact to the same text: number the later ones, don't drop them.
            base, n = new_key, 1
            while new_key in out:
                n += 1
                new_key = f"{base}#{n}"
            out[new_key] = new_item
        return out if changed else value

    def _key(self, key: str) -> tuple[str | None, bool]:
        """(the scrubbed key or None when unchanged, whether the key names a secret)."""
        # Payload keys repeat on every event (field names): cache the verdict per key.
        hit = self._keys.get(key)
        if hit is None:
            secret = self._key_placeholder is not None and bool(_SECRET_KEY.fullmatch(key))
            scrubbed = self.scrub_text(key)
            hit = (None if scrubbed == key else scrubbed, secret)
            if len(key) <= 256:
                if len(self._keys) >= _KEY_CACHE_MAX:
                    self._keys.clear()
                self._keys[key] = hit
        return hit

    def _maybe_secret(self, text: str) -> bool:
        lower: str | None = None
        for gate, exact, folded in self._gates:
            if gate in text:
                for needle in exact:
                    if needle in text:
                        return True
                if folded:
                    if lower is None:
                        lower = text.lower()
                    for needle in folded:
                        if needle in lower:
                            return True
        return False

    def _pass(self, text: str) -> str:
        lower = text.lower()
        for rule in self._rules:
            if rule.may_match(text, lower):
                scrubbed = rule.apply(text)
                if scrubbed != text:
                    text, lower = scrubbed, scrubbed.lower()
        return text

    def _group_needles(self) -> tuple[tuple[str, tuple[str, ...], tuple[str, ...]], ...]:
        # One entry per gate character, so a clean string costs one memchr per gate.
        gates: dict[str, tuple[list[str], list[str]]] = {}
        for rule in self._rules:
            for gate, needle in rule.exact:
                gates.setdefault(gate, ([], []))[0].append(needle)
            for gate, needle in rule.folded:
                gates.setdefault(gate, ([], []))[1].append(needle)
        return tuple(
            (g, tuple(dict.fromkeys(e)), tuple(dict.fromkeys(f))) for g, (e, f) in gates.items()
        )

    @staticmethod
    def _pick(rules: Iterable[str] | None, emails: bool) -> list[str]:
        if rules is None:
            wanted = set(BUILTIN_RULES)
        elif isinstance(rules, str):
            raise InvalidInputError("redaction.rules", "must be a list of rule names", rules)
        else:
            wanted = set(rules)
            unknown = sorted(str(n) for n in wanted - set(BUILTIN_RULES))
            if unknown:
                known = ", ".join(BUILTIN_RULES)
                raise InvalidInputError(
                    "redaction.rules", f"unknown rule {unknown[0]!r}; known: {known}"
                )
        wanted.discard("email")
        if emails:
            wanted.add("email")
        return [n for n in BUILTIN_RULES if n in wanted]

    @staticmethod
    def _compile_extra(extra: Mapping[str, str]) -> dict[str, re.Pattern[str]]:
        out: dict[str, re.Pattern[str]] = {}
        for name, pattern in extra.items():
            if not isinstance(name, str) or not _NAME.fullmatch(name):
                raise InvalidInputError(
                    "redaction.extra", "rule names must be 1-64 of A-Z a-z 0-9 _ . -", name
                )
            field = f"redaction.extra.{name}"
            if name in _SPECS:
                raise InvalidInputError(field, "name clashes with a built-in rule")
            if not isinstance(pattern, str):
                raise InvalidInputError(field, "pattern must be a string", pattern)
            try:
                compiled = re.compile(pattern)
            except re.error as exc:
                raise InvalidInputError(field, f"invalid regex: {exc}", pattern) from exc
            # An empty match would put a placeholder between every two characters.
            if compiled.fullmatch(""):
                raise InvalidInputError(field, "pattern matches the empty string", pattern)
            out[name] = compiled
        return out

    @staticmethod
    def _render(placeholder: str, kind: str) -> str:
        try:
            text = placeholder.format(kind=kind)
        except (KeyError, IndexError, ValueError) as exc:
            raise InvalidInputError(
                "redaction.placeholder", f"bad format string: {exc}", placeholder
            ) from exc
        # Empty or space-padded placeholders let the next pass read the following word as
        # the value of "password=" again, and scrubbing stops being idempotent.
        if not text or text != text.strip():
            raise InvalidInputError(
                "redaction.placeholder", "must not be empty or start or end with space", text
            )
        return text

    def _check_placeholders(self) -> None:
        # A placeholder that a rule would redact again never reaches a fixed point.
        for placeholder in {r.placeholder for r in self._rules}:
            for rule in self._rules:
                if rule.apply(placeholder) != placeholder:
                    builtin = rule.kind in _SPECS
                    field = "redaction.placeholder" if builtin else f"redaction.extra.{rule.kind}"
                    raise InvalidInputError(
                        field, f"rule {rule.kind!r} matches the placeholder", placeholder
                    )
