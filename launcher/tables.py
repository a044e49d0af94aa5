"""Render report rows (flat or nested dicts) as JSON, CSV or an aligned text table."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Mapping, Sequence
from typing import Any


def flatten(row: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Flatten nested mappings into dotted keys (losses.setup_s); lists become JSON text."""
    out: dict[str, Any] = {}
    for key, value in row.items():
        name = f"{prefix}{key}"
        if isinstance(value, Mapping):
            out.update(flatten(value, f"{name}."))
        elif isinstance(value, list | tuple):
            out[name] = json.dumps(value, separators=(",", ":"), default=str)
        else:
            out[name] = value
    return out


def _columns(rows: Sequence[Mapping[str, Any]]) -> list[str]:
    columns: list[str] = []
    seen: set[str] = set()
    for row in rows:
        for key in row:
            if key not in seen:
                seen.add(key)
                columns.append(key)
    return columns


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.6g}" if abs(value) < 1e6 else f"{value:.0f}"
    return str(value)


def render(rows: Sequence[Mapping[str, Any]], fmt: str) -> str:
    """Return rows as json (a list of objects), csv (flattened, a header row) or table (flattened, aligned)."""
    if fmt == "json":
        return json.dumps(list(rows), indent=2, default=str) + "\n"
    flat = [flatten(r) for r in rows]
    columns = _columns(flat)
    if fmt == "csv":
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=columns, lineterminator="\n")
        writer.writeheader()
        for row in flat:
            writer.writerow({c: _cell(row.get(c)) if not isinstance(row.get(c), int) else row[c] for c in columns})
        return buffer.getvalue()
    if fmt == "table":
        if not flat:
            return "(no rows)\n"
        cells = [[_cell(r.get(c)) for c in columns] for r in flat]
        widths = [max(len(c), *(len(row[i]) for row in cells)) for i, c in enumerate(columns)]
        lines = ["  ".join(c.ljust(w) for c, w in zip(columns, widths, strict=True))]
        lines.append("  ".join("-" * w for w in widths))
        lines.extend("  ".join(v.ljust(w) for v, w in zip(row, widths, strict=True)) for row in cells)
        return "\n".join(lines) + "\n"
    raise ValueError(f"unknown format {fmt!r}: json, csv or table")
