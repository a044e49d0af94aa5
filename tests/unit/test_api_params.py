"""The from/to window: ISO 8601 with an offset, sane bounds, errors that name the parameter."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest
from fastapi.exceptions import RequestValidationError

from api.params import Window, parse_group_by, parse_instant, parse_window

NOW = datetime(2026, 11, 28, 12, 0, tzinfo=UTC)
NOW_MS = int(NOW.timestamp() * 1000)
H = 3_600_000


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-28T08:00:00+07:00", datetime(2026, 11, 28, 1, 0, tzinfo=UTC)),
        ("2026-11-28T01:00:00Z", datetime(2026, 11, 28, 1, 0, tzinfo=UTC)),
        ("2026-11-28T01:00Z", datetime(2026, 11, 28, 1, 0, tzinfo=UTC)),
        ("2026-11-28T01:00:00.250-02:30", datetime(2026, 11, 28, 3, 30, 0, 250000, tzinfo=UTC)),
        ("2000-01-01T00:00:00Z", datetime(2000, 1, 1, tzinfo=UTC)),
        ("2099-12-31T23:59:59+00:00", datetime(2099, 12, 31, 23, 59, 59, tzinfo=UTC)),
    ],
)
def test_valid_instants(text: str, expected: datetime) -> None:
    assert parse_instant("from", text) == int(expected.timestamp() * 1000)


@pytest.mark.parametrize(
    "text",
    [
        "2026-11-28T08:00:00",  # naive
        "2026-11-28",  # a date, no time
        "2026-11-28 08:00:00+07:00",  # space instead of T
        "1764291600000",  # epoch ms
        "2026-13-01T00:00:00Z",  # month 13
        "2026-02-30T00:00:00Z",
        "2026-11-28T25:00:00Z",
        "2026-11-28T08:00:00+24:00",
        "1999-12-31T23:59:59Z",  # before 2000
        "2100-01-01T00:00:00Z",  # 2100 and later
        "0001-01-01T00:00:00Z",
        "９９９９-11-28T08:00:00Z",  # non-ASCII digits
        "2026-11-28T08:00:00Z' OR 1=1 --",
        "now",
        "",
        "2026-11-28T08:00:00.1234567Z",
    ],
)
def test_invalid_instants_name_the_parameter(text: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_instant("to", text)
    (error,) = info.value.errors()
    assert error["loc"] == ("query", "to")
    assert error["msg"].startswith("to:")


def test_defaults_are_the_last_24_hours() -> None:
    assert parse_window(None, None, NOW) == Window(NOW_MS - 24 * H, NOW_MS)
    assert parse_window(None, "2026-11-28T10:00:00Z", NOW) == Window(NOW_MS - 26 * H, NOW_MS - 2 * H)
    assert parse_window("2026-11-28T11:00:00+01:00", None, NOW) == Window(NOW_MS - 2 * H, NOW_MS)


def test_non_utc_now_is_fine() -> None:
    now = NOW.astimezone(timezone(timedelta(hours=7)))
    assert parse_window(None, None, now) == Window(NOW_MS - 24 * H, NOW_MS)


@pytest.mark.parametrize(
    ("start", "end", "param", "msg"),
    [
        ("2026-11-28T10:00:00Z", "2026-11-28T10:00:00Z", "from", "earlier than to"),
        ("2026-11-28T10:00:00Z", "2026-11-28T09:00:00Z", "from", "earlier than to"),
        ("2026-11-28T17:00:00+07:00", "2026-11-28T10:00:00Z", "from", "earlier than to"),
        ("2026-11-29T00:00:00Z", None, "from", "earlier than to"),  # from in the future, to = now
        ("2026-08-28T00:00:00Z", "2026-11-28T10:00:00Z", "from", "longer than 92 days"),
        ("2026-11-28T10:00:00", "2026-11-28T11:00:00Z", "from", "ISO 8601"),
        ("2026-11-28T10:00:00Z", "tomorrow", "to", "ISO 8601"),
    ],
)
def test_bad_windows(start: str | None, end: str | None, param: str, msg: str) -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_window(start, end, NOW)
    (error,) = info.value.errors()
    assert error["loc"] == ("query", param)
    assert msg in error["msg"]


def test_both_bad_parameters_are_named() -> None:
    with pytest.raises(RequestValidationError) as info:
        parse_window("yesterday", "1999-01-01T00:00:00Z", NOW)
    assert [e["loc"] for e in info.value.errors()] == [("query", "from"), ("query", "to")]


def test_92_days_exactly_is_allowed() -> None:
    window = parse_window("2026-08-28T10:00:00Z", "2026-11-28T10:00:00Z", NOW)
    assert window.end_ms - window.start_ms == 92 * 24 * H


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, ("machine",)),
        ("machine", ("machine",)),
        ("tenant,machine", ("tenant", "machine")),
        ("day, shift", ("day", "shift")),
        ("machine,tenant,job,shift,day", ("machine", "tenant", "job", "shift", "day")),
    ],
)
def test_group_by_keeps_the_order_given(text: str | None, expected: tuple[str, ...]) -> None:
    assert parse_group_by(text) == expected


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("", "not one of"),
        ("machine,", "not one of"),
        ("badge", "'badge' not one of"),
        ("Machine", "not one of"),
        ("machine,machine", "more than once"),
        ("machine;tenant", "not one of"),
        ("x" * 65, "longer than 64"),
        ("tenant\x00", "not one of"),
    ],
)
def test_bad_group_by_is_a_422_naming_it(text: str, says: str) -> None:
    with pytest.raises(RequestValidationError) as err:
        parse_group_by(text)
    (error,) = err.value.errors()
    assert error["loc"] == ("query", "group_by")
    assert says in error["msg"]
