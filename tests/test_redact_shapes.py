"""The redactor remembers the key tuples of dicts whose keys are all innocent
(``Redactor._clean_keys``): a remembered shape must skip only the key checks, never the
values, and a shape with a secret-named key is never remembered."""

from __future__ import annotations

from memstream.producers.redact import Redactor

KEY = "sk-" + "a1B2c3D4e5F6g7H8i9J0k1L2"


def test_values_of_a_remembered_shape_are_still_scrubbed() -> None:
    red = Redactor()
    plain = {"role": "user", "content": "hello", "meta": {"model": "m"}}
    assert red.scrub(plain) is plain  # remembers both shapes
    leaky = {"role": "user", "content": f"use {KEY}", "meta": {"model": KEY}}
    out = red.scrub(leaky)
    assert KEY not in repr(out)
    assert out == red._scrub(leaky)


def test_a_secret_named_key_is_checked_every_time() -> None:
    red = Redactor()
    for _ in range(3):
        out = red.scrub({"user": "ann", "password": "hunter2hunter2"})
        assert "hunter2" not in repr(out)
    # Its already-redacted value passes, and the shape is still not taken as innocent.
    done = red.scrub({"user": "ann", "password": "hunter2hunter2"})
    assert red.scrub(done) == done
    assert "hunter2" not in repr(red.scrub({"user": "bob", "password": "s3cr3t-pw-x"}))
