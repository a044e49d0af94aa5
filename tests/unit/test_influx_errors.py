"""How InfluxStore reads the store's refusals: Retry-After, error bodies of 1.x/2.x/3.x, lines a refusal names."""

from __future__ import annotations

import json

import pytest

from shopfloor.influx import InfluxStore, named_lines, parse_retry_after

NOW = 1_764_291_600.0  # 2025-11-28T01:00:00Z


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("", None),
        ("7", 7.0),
        (" 120 ", 120.0),
        ("0", 0.0),
        ("-3", None),  # not delta-seconds, not a date
        ("1.5", None),
        ("soon", None),
        # An HTTP date 90 s after NOW.
        ("Fri, 28 Nov 2025 01:01:30 GMT", 90.0),
        # A date in the past means "now".
        ("Fri, 28 Nov 2025 00:59:00 GMT", 0.0),
        # Without a zone the date is ambiguous: ignored rather than guessed.
        ("Fri, 28 Nov 2025 01:01:30", None),
    ],
)
def test_parse_retry_after(header: str | None, expected: float | None) -> None:
    assert parse_retry_after(header, now_s=NOW) == expected


LINES = [
    "t,m=a x=1i 1",
    "bad line here",
    't,m=a job="it\'s" 2',
    "t,m=a mode=3i 3",
]


@pytest.mark.parametrize(
    ("body", "expected"),
    [
        # 1.x: the unparsable line quoted as is (its own quotes unescaped).
        (
            json.dumps({"error": "partial write: unable to parse 'bad line here': invalid field format dropped=0"}),
            {1: "partial write: unable to parse 'bad line here': invalid field format dropped=0"},
        ),
        (
            json.dumps({"error": "unable to parse 't,m=a job=\"it's\" 2': bad"}),
            {2: "unable to parse 't,m=a job=\"it's\" 2': bad"},
        ),
        # 2.x: the same text under "message".
        (
            json.dumps({"code": "invalid", "message": "unable to parse 'bad line here': invalid field format"}),
            {1: "unable to parse 'bad line here': invalid field format"},
        ),
        # A field type conflict names no line: found by bisection instead.
        (
            json.dumps(
                {
                    "error": 'partial write: field type conflict: input field "mode" on measurement "t" '
                    "is type integer, already exists as type string dropped=1"
                }
            ),
            {},
        ),
        # 3.x: line numbers, 1-based; numbers outside the batch are ignored.
        (
            json.dumps(
                {
                    "error": "partial write of line protocol occurred",
                    "data": [
                        {"original_line": "bad line here", "line_number": 2, "error_message": "no fields"},
                        {"original_line": "x", "line_number": 9, "error_message": "out of range"},
                        {"line_number": True},
                    ],
                }
            ),
            {1: "no fields"},
        ),
        ("not json at all", {}),
        ("", {}),
    ],
)
def test_named_lines(body: str, expected: dict[int, str]) -> None:
    assert named_lines(body, LINES) == expected


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"username": "u", "token": "t"}, "not both"),
        ({"password": "p"}, "needs a username"),
    ],
)
def test_refuses_conflicting_auth(kwargs: dict[str, str], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        InfluxStore("http://127.0.0.1:1", "db", **kwargs)
