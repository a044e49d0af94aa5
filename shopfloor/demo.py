"""`shopfloor demo`: the whole chain on one machine (placeholder until implemented)."""

from __future__ import annotations

from typing import Any


def add_parser(sub: Any) -> None:
    """Register `shopfloor demo`."""
