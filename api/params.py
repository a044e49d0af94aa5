"""Query parameters that need more than a type: the from/to window."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi.exceptions import RequestValidationError

from shopfloor.contracts import MAX_TS_MS, MIN_TS_MS

MAX_WINDOW = timedelta(days=92)
DEFAULT_WINDOW = timedelta(hours=24)
MAX_PARAM_CHARS = 64
# ISO 8601 with an explicit offset; ASCII digits only (datetime.fromisoformat alone accepts too much).
_ISO = re.compile(
    r"\d{4}-\d{2}-\d{2}T\d{2}:\d{2}(:\d{2}(\.\d{1,6})?)?(Z|[+-]\d{2}:\d{2})",
    re.ASCII,
)


@dataclass(frozen=True, slots=True)
class Window:
    """A validated query window [start_ms, end_ms)."""

    start_ms: int
    end_ms: int


def invalid(param: str, msg: str, value: Any) -> RequestValidationError:
    """Return a 422 error naming a query parameter (FastAPI's validation error format)."""
    return RequestValidationError([{"type": "value_error", "loc": ("query", param), "msg": msg, "input": value}])


def parse_instant(param: str, text: str) -> int:
    """Parse an ISO 8601 time with an explicit offset into epoch ms; raise a 422 naming param."""
    if not _ISO.fullmatch(text):
        raise invalid(
            param,
            f"{param}: expected ISO 8601 with an offset, e.g. 2026-11-28T08:00:00+07:00 or 2026-11-28T01:00:00Z",
            text[:MAX_PARAM_CHARS],
        )
    try:
        when = datetime.fromisoformat(text)
    except ValueError as exc:
        raise invalid(param, f"{param}: not a valid date and time ({exc})", text) from exc
    if when.tzinfo is None:  # pragma: no cover - the pattern requires an offset
        raise invalid(param, f"{param}: needs an explicit offset (Z or +07:00)", text)
    ms = int(when.timestamp() * 1000)
    if not MIN_TS_MS <= ms < MAX_TS_MS:
        raise invalid(param, f"{param}: must be between 2000-01-01 and 2100-01-01", text)
    return ms


def parse_window(start: str | None, end: str | None, now: datetime) -> Window:
    """Validate from/to; default to the 24 hours before now; raise a 422 naming every offending parameter."""
    errors: list[Any] = []
    parsed: dict[str, int] = {}
    for name, text in (("from", start), ("to", end)):
        if text is None:
            continue
        try:
            parsed[name] = parse_instant(name, text)
        except RequestValidationError as exc:
            errors.extend(exc.errors())
    if errors:
        raise RequestValidationError(errors)
    end_ms = parsed.get("to", int(now.astimezone(UTC).timestamp() * 1000))
    start_ms = parsed.get("from", end_ms - int(DEFAULT_WINDOW.total_seconds() * 1000))
    if start_ms >= end_ms:
        raise invalid("from", "from: must be earlier than to", start)
    if end_ms - start_ms > MAX_WINDOW.total_seconds() * 1000:
        raise invalid("from", f"from: the window from..to is longer than {MAX_WINDOW.days} days", start)
    return Window(start_ms, end_ms)


GROUP_KEYS = ("machine", "tenant", "job", "shift", "day")


def parse_group_by(text: str | None, default: tuple[str, ...] = ("machine",)) -> tuple[str, ...]:
    """Parse group_by (comma-separated keys of GROUP_KEYS, each at most once) in the order given; 422 naming it."""
    if text is None:
        return default
    if len(text) > MAX_PARAM_CHARS:
        raise invalid("group_by", f"group_by: longer than {MAX_PARAM_CHARS} characters", text[:MAX_PARAM_CHARS])
    keys = tuple(part.strip() for part in text.split(","))
    unknown = [k for k in keys if k not in GROUP_KEYS]
    if unknown or not keys:
        shown = ", ".join(repr(k[:20]) for k in unknown[:3])
        raise invalid("group_by", f"group_by: {shown} not one of {', '.join(GROUP_KEYS)}", text)
    if len(set(keys)) != len(keys):
        raise invalid("group_by", "group_by: a key is given more than once", text)
    return keys
