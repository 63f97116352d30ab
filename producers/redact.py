"""Secret redaction applied to every event payload before it is encoded and sent.

Secrets are redacted in the producer, before they leave the agent: nothing downstream (Redis,
workers, archives) ever sees them. :class:`Redactor` walks a payload (dicts, lists, tuples)
and rewrites the secret part of every string with a placeholder such as
``[REDACTED:bearer]``, keeping the context around it (the word ``Bearer``, a URL's user and
host, the ``password=`` key) so that events stay readable.

It runs on every append, so a string with no secret must be cheap. One alternation regex over
all the rules costs tens of microseconds per 200 characters, because ``re`` tries every
branch at every position. Instead each rule declares *triggers*: characters and substrings
that any of its matches contains. A clean string costs one character-class scan and a few
``in`` tests; a rule's regex runs only when one of its triggers fires.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from itertools import islice
from typing import Any, Final

from .errors import InvalidInputError

__all__ = ["BUILTIN_RULES", "Redactor"]

_Trigger = tuple[str, tuple[str, ...], bool]
"""``(gates, needles, folded)``: fires when the text holds one of the ``gates`` characters and
one of the ``needles`` (searched in ``text.lower()`` if ``folded``; none: a gate is enough).
Gates are rare characters of the needle: ``in`` is a ``memchr`` for one character only."""
_Entry = tuple[int, str, tuple[str, ...], bool]  # a trigger with the index of its rule

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
    triggers: tuple[_Trigger, ...]


_SPECS: Final[dict[str, _Spec]] = {
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

BUILTIN_RULES: Final[tuple[str, ...]] = tuple(_SPECS)
"""Names of the built-in rules, in the order they are applied."""

_GENERIC = "generic_secret_assignment"
_KEYWORD = "|".join(first + rest for first, rest in _KEYWORDS.items())
_SECRET_KEY = re.compile(rf"(?i)[a-z0-9_.-]{{0,64}}?(?:{_KEYWORD}){_KEY_SUFFIX}")
_NAME = re.compile(r"[A-Za-z0-9_.-]{1,64}")
_SCALARS: Final = frozenset({int, float, bool, type(None), bytes})
_MAX_PASSES = 4
_KEY_CACHE_MAX = 4096


def _first(entries: tuple[_Entry, ...], text: str, lower: str | None) -> int:
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


class _Rule:
    """One compiled rule: its regex, its trigger entries and its placeholder."""

    __slots__ = ("_group", "done", "entries", "kind", "pattern", "placeholder")

    def __init__(
        self,
        index: int,
        kind: str,
        pattern: re.Pattern[str],
        placeholder: str,
        triggers: tuple[_Trigger, ...],
    ) -> None:
        self.kind = kind
        self.pattern = pattern
        self.placeholder = placeholder
        self.done: tuple[str, ...] = ()  # every placeholder of the redactor
        # A user rule has no triggers: its one entry (no gate, no needle) always fires.
        self.entries: tuple[_Entry, ...] = tuple(
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


class Redactor:
    """Rewrites secrets in strings and in nested dict / list / tuple payloads.

    ``rules`` picks built-in rules by name (``None``: all of them but ``"email"``, which
    ``emails`` alone switches on). ``extra`` adds user rules, name -> regex; a group named
    ``secret`` limits the replacement to that group. With ``generic_secret_assignment`` on,
    a string stored in a dict under a secret-named key (``password``, ``api_key``,
    ``clientSecret`` ...) is redacted whole.
    """

    def __init__(
        self,
        *,
        emails: bool = False,
        rules: Iterable[str] | None = None,
        extra: Mapping[str, str] | None = None,
        placeholder: str = "[REDACTED:{kind}]",
    ) -> None:
        specs: list[tuple[str, str | re.Pattern[str], tuple[_Trigger, ...]]]
        specs = [(n, _SPECS[n].pattern, _SPECS[n].triggers) for n in _pick(rules, emails)]
        specs += [(n, p, ()) for n, p in _compile_extra(extra or {}).items()]
        self._rules = tuple(
            _Rule(i, kind, re.compile(pattern), _render(placeholder, kind), triggers)
            for i, (kind, pattern, triggers) in enumerate(specs)
        )
        self._done = tuple({r.placeholder for r in self._rules})
        for rule in self._rules:
            rule.done = self._done
        self._entries = tuple(e for r in self._rules for e in r.entries)
        # Payloads are full of single words and ids (roles, tool names, tags) that hold no
        # gate character at all: one charset scan clears them before any trigger is tried.
        gates = re.escape("".join(sorted({e[1] for e in self._entries})))
        always = any(not e[1] for e in self._entries)
        self._gates = re.compile("(?s:.)" if always else f"[{gates}]" if gates else "(?!)")
        self._key_placeholder = next((r.placeholder for r in self._rules if r.kind == _GENERIC), "")
        self._keys: dict[str, tuple[str | None, bool]] = {}
        self._check_placeholders()

    @classmethod
    def off(cls) -> Redactor:
        """A redactor with no rules: :meth:`scrub` returns its input untouched."""
        return cls(rules=())

    @property
    def enabled(self) -> bool:
        return bool(self._rules)

    def __repr__(self) -> str:
        return f"Redactor(rules={tuple(r.kind for r in self._rules)!r})"

    def scrub_text(self, text: str) -> str:
        """``text`` with every secret replaced; the very same object when it has none."""
        if self._gates.search(text) is None:
            return text
        start = _first(self._entries, text, None)  # rules before it cannot match
        if start < 0:
            return text
        # A pass can leave a match for an earlier rule (a later placeholder bridges a gap);
        # passing again until nothing changes is what keeps scrub_text idempotent.
        for _ in range(_MAX_PASSES):
            scrubbed = self._pass(text, start)
            if scrubbed is text:
                break
            text, start = scrubbed, 0
        return text

    def scrub(self, value: Any) -> Any:
        """``value`` with the secrets in its strings (dict keys included) redacted.

        A container comes back as a new plain ``dict`` / ``list`` / ``tuple`` when something
        in it changed, else as the very same object; the input is never mutated. Other types
        (bytes, numbers, models) come back untouched.
        """
        if not self._rules:
            return value
        if isinstance(value, dict) and self._clean(value):
            return value
        return self._scrub(value)

    def _clean(self, value: dict[Any, Any]) -> bool:
        """True when no rule can fire anywhere in ``value``, so :meth:`_scrub` would return
        it unchanged: one trigger check over all its strings joined, instead of one per
        string. Joining only adds text, so a trigger absent from the join is absent from
        every part; a trigger the join makes up (across a separator) costs the full walk."""
        texts: list[str] = []
        stack: list[Any] = [value]
        while stack:
            item = stack.pop()
            children: Any
            if isinstance(item, dict):
                if not self._clean_keys(item):
                    return False
                children = item.values()
            elif isinstance(item, (list, tuple)):
                children = item
            elif isinstance(item, str):
                texts.append(item)
                continue
            else:
                return False  # another type: let the walk decide what it does with it
            for child in children:
                if type(child) is str:
                    texts.append(child)
                elif type(child) not in _SCALARS:
                    stack.append(child)
        text = "\n".join(texts)
        return self._gates.search(text) is None or _first(self._entries, text, None) < 0

    def _clean_keys(self, item: dict[Any, Any]) -> bool:
        """True when no str key of ``item`` changes or hides its value (other keys are
        left alone by the walk too)."""
        for key, child in item.items():
            if isinstance(key, str):
                scrubbed, secret = self._keys.get(key) or self._key(key)
                if scrubbed is not None:
                    return False
                if secret and isinstance(child, str) and child and not child.startswith(self._done):
                    return False
        return True

    def _scrub(self, value: Any) -> Any:
        if type(value) in _SCALARS:
            return value
        if isinstance(value, str):  # subclasses (StrEnum members) included
            return self.scrub_text(value)
        if isinstance(value, dict):
            return self._scrub_dict(value)
        return self._scrub_seq(value) if isinstance(value, (list, tuple)) else value

    def _scrub_seq(self, value: list[Any] | tuple[Any, ...]) -> Any:
        out: list[Any] | None = None  # built only once an item changes
        for i, item in enumerate(value):
            new = self._scrub(item)
            if out is None:
                if new is item:
                    continue
                out = list(value[:i])
            out.append(new)
        return value if out is None else out if isinstance(value, list) else tuple(out)

    def _scrub_dict(self, value: dict[Any, Any]) -> Any:
        out: dict[Any, Any] | None = None  # built only once a key or value changes
        for i, (key, item) in enumerate(value.items()):
            new_key, secret = key, False
            if isinstance(key, str):
                scrubbed, secret = self._keys.get(key) or self._key(key)
                new_key = key if scrubbed is None else scrubbed
            if secret and isinstance(item, str) and item and not item.startswith(self._done):
                new_item: Any = self._key_placeholder
            else:
                new_item = self._scrub(item)
            if out is None:
                if new_key is key and new_item is item:
                    continue
                out = dict(islice(value.items(), i))
            # Two keys may redact to the same text: number the later ones, don't drop them.
            base, n = new_key, 1
            while new_key in out:
                n += 1
                new_key = f"{base}#{n}"
            out[new_key] = new_item
        return value if out is None else out

    def _key(self, key: str) -> tuple[str | None, bool]:
        """(the scrubbed key, None if unchanged; whether the key names a secret)."""
        # Payload keys are field names repeated on every event: cache the verdict.
        secret = bool(self._key_placeholder) and _SECRET_KEY.fullmatch(key) is not None
        scrubbed = self.scrub_text(key)
        hit = (None if scrubbed == key else scrubbed, secret)
        if len(key) <= 256:
            if len(self._keys) >= _KEY_CACHE_MAX:
                self._keys.clear()
            self._keys[key] = hit
        return hit

    def _pass(self, text: str, start: int) -> str:
        """One pass of the rules from ``start`` on; ``text`` itself when nothing changed."""
        lower = text.lower()
        for rule in self._rules[start:]:
            if _first(rule.entries, text, lower) >= 0:
                scrubbed = rule.apply(text)
                if scrubbed != text:
                    text, lower = scrubbed, scrubbed.lower()
        return text

    def _check_placeholders(self) -> None:
        # A placeholder that some rule redacts again would never reach a fixed point.
        for placeholder in self._done:
            for rule in self._rules:
                if rule.apply(placeholder) != placeholder:
                    builtin = rule.kind in _SPECS
                    field = "redaction.placeholder" if builtin else f"redaction.extra.{rule.kind}"
                    raise InvalidInputError(
                        field, f"rule {rule.kind!r} matches the placeholder", placeholder
                    )


def _pick(rules: Iterable[str] | None, emails: bool) -> list[str]:
    if isinstance(rules, str):
        raise InvalidInputError("redaction.rules", "must be a list of rule names", rules)
    wanted = set(BUILTIN_RULES if rules is None else rules)
    unknown = sorted(map(str, wanted - set(BUILTIN_RULES)))
    if unknown:
        known = ", ".join(BUILTIN_RULES)
        raise InvalidInputError("redaction.rules", f"unknown rule {unknown[0]!r}; known: {known}")
    return [n for n in BUILTIN_RULES if (emails if n == "email" else n in wanted)]


def _compile_extra(extra: Mapping[str, str]) -> dict[str, re.Pattern[str]]:
    out: dict[str, re.Pattern[str]] = {}
    for name, pattern in extra.items():
        if not isinstance(name, str) or not _NAME.fullmatch(name) or name in _SPECS:
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


def _render(placeholder: str, kind: str) -> str:
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
