"""The body readers every request decoder is made of."""

from __future__ import annotations

import pytest

from weavenet.runtime import request as r
from weavenet.runtime.bus import USAGE


def test_readers_return_checked_values():
    body = {"s": "abc", "n": 5, "f": True, "l": ["a", "b"], "m": {"k": 1}, "none": None}
    assert r.text(body, "s", 3) == "abc"
    assert r.optional_text(body, "none", 3) is None and r.optional_text(body, "s", 3) == "abc"
    assert r.integer(body, "n", 1, 5) == 5 and r.optional_integer(body, "absent", 1, 2) is None
    assert r.flag(body, "f") is True and r.flag(body, "absent") is False
    assert r.flag(body, "absent", default=True) is True
    assert r.texts(body, "l", 2, 1) == ("a", "b")
    assert r.mapping(body, "m") == {"k": 1}
    assert r.text({"e": ""}, "e", 3, empty=True) == ""


@pytest.mark.parametrize(("read", "body"), [
    (lambda b: r.text(b, "x", 3), {}),
    (lambda b: r.text(b, "x", 3), {"x": ""}),
    (lambda b: r.text(b, "x", 3), {"x": "abcd"}),
    (lambda b: r.text(b, "x", 3), {"x": b"abc"}),
    (lambda b: r.integer(b, "x", 0, 9), {"x": True}),
    (lambda b: r.integer(b, "x", 0, 9), {"x": 1.0}),
    (lambda b: r.integer(b, "x", 0, 9), {"x": 10}),
    (lambda b: r.flag(b, "x"), {"x": 1}),
    (lambda b: r.texts(b, "x", 2, 5), {"x": ["a", "b", "c"]}),
    (lambda b: r.texts(b, "x", 2, 5, min_items=1), {"x": []}),
    (lambda b: r.texts(b, "x", 2, 5), {"x": ["toolong"]}),
    (lambda b: r.texts(b, "x", 2, 5), {"x": [""]}),
    (lambda b: r.mapping(b, "x"), {"x": [1]}),
])
def test_bad_values_are_one_line_usage_errors(read, body):
    with pytest.raises(r.UsageError) as ei:
        read(body)
    assert ei.value.code == USAGE and "\n" not in ei.value.reason


def test_a_request_without_fields_has_an_empty_body():
    class Ping(r.Request):
        TYPE = "ping"
        HANDLER = r.SUPERVISOR

    assert Ping().to_body() == {} and isinstance(Ping.from_body({"x": 1}), Ping)
