"""Secret redaction applied to every event payload before it is encoded and sent.

Secrets are redacted in the producer, before they leave the agent: nothing downstream (Redis,
workers, archives) ever sees them. :class:`Redactor` walks a payload (dicts, lists, tuples)
and rewrites the secret part of every string with a placeholder such as
``[REDACTED:bearer]``, keeping the context around it (the word ``Bearer``, a URL's user and
host, the ``password=`` key) so that events stay readable.

It runs on every append, so a string with no secret must be cheap: the rules and their
triggers are in :mod:`.redact_rules`; this module walks payloads and applies them.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from itertools import islice
from typing import Any, Final

from .errors import InvalidInputError
from .redact_rules import (
    BUILTIN_RULES,
    GENERIC,
    SECRET_KEY,
    SPECS,
    Rule,
    Trigger,
    any_fires,
    compile_extra,
    first_rule,
    gate_index,
    pick,
    render,
)

__all__ = ["BUILTIN_RULES", "Redactor"]

_SCALARS: Final = frozenset({int, float, bool, type(None), bytes})
_MAX_PASSES = 4
_KEY_CACHE_MAX = 4096


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
        specs: list[tuple[str, str | re.Pattern[str], tuple[Trigger, ...]]]
        specs = [(n, SPECS[n].pattern, SPECS[n].triggers) for n in pick(rules, emails)]
        specs += [(n, p, ()) for n, p in compile_extra(extra or {}).items()]
        self._rules = tuple(
            Rule(i, kind, re.compile(pattern), render(placeholder, kind), triggers)
            for i, (kind, pattern, triggers) in enumerate(specs)
        )
        self._done = tuple({r.placeholder for r in self._rules})
        for rule in self._rules:
            rule.done = self._done
        self._entries = tuple(e for r in self._rules for e in r.entries)
        self._by_gate = gate_index(self._entries)
        # Payloads are full of single words and ids (roles, tool names, tags) that hold no
        # gate character at all: one charset scan clears them before any trigger is tried.
        gates = re.escape("".join(sorted({e[1] for e in self._entries})))
        always = any(not e[1] for e in self._entries)
        self._gates = re.compile("(?s:.)" if always else f"[{gates}]" if gates else "(?!)")
        self._key_placeholder = next((r.placeholder for r in self._rules if r.kind == GENERIC), "")
        self._keys: dict[str, tuple[str | None, bool]] = {}
        self._plain_shapes: set[tuple[Any, ...]] = set()
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
        start = first_rule(self._entries, text, None)  # rules before it cannot match
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
                # The usual shape, remembered by _clean_keys, checked without the call.
                if tuple(item) not in self._plain_shapes and not self._clean_keys(item):
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
        return self._gates.search(text) is None or not any_fires(self._by_gate, text)

    def _clean_keys(self, item: dict[Any, Any]) -> bool:
        """True when no str key of ``item`` changes or hides its value (other keys are
        left alone by the walk too)."""
        # Payloads of one kind share their keys: a tuple of keys none of which is redacted
        # or names a secret is remembered, so the next dict with them skips the loop.
        shape = tuple(item)
        if shape in self._plain_shapes:
            return True
        plain = True
        for key, child in item.items():
            if isinstance(key, str):
                scrubbed, secret = self._keys.get(key) or self._key(key)
                if scrubbed is not None:
                    return False
                if secret:
                    plain = False
                    if isinstance(child, str) and child and not child.startswith(self._done):
                        return False
            else:
                plain = False  # a key of another type: its hash may cost anything
        if plain and len(shape) <= 32:
            if len(self._plain_shapes) >= _KEY_CACHE_MAX:
                self._plain_shapes.clear()
            self._plain_shapes.add(shape)
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
        secret = bool(self._key_placeholder) and SECRET_KEY.fullmatch(key) is not None
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
            if first_rule(rule.entries, text, lower) >= 0:
                scrubbed = rule.apply(text)
                if scrubbed != text:
                    text, lower = scrubbed, scrubbed.lower()
        return text

    def _check_placeholders(self) -> None:
        # A placeholder that some rule redacts again would never reach a fixed point.
        for placeholder in self._done:
            for rule in self._rules:
                if rule.apply(placeholder) != placeholder:
                    builtin = rule.kind in SPECS
                    field = "redaction.placeholder" if builtin else f"redaction.extra.{rule.kind}"
                    raise InvalidInputError(
                        field, f"rule {rule.kind!r} matches the placeholder", placeholder
                    )
