"""Read a file of wire messages (what `shopfloor simulate --replay --out` writes) as the collector would store them.

Each line is {"topic": ..., "retain": ..., "payload": {...}}. Every message goes through the collector's own registry
(the same checks as on the broker, with backfill on: a file holds old data) and its own conversion to points, so an
offline report computes from exactly what the pipeline would have stored. Refused lines are counted by reason and
the first few are kept with their line numbers; nothing is silently dropped.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from collector.convert import agent_status_to_point, batch_to_points, status_to_point
from collector.registry import Registry
from shopfloor.config import SiteConfig
from shopfloor.contracts import PayloadError, Topic, TopicKind
from shopfloor.influx import Point

MAX_LINE_BYTES = 4 * 1024 * 1024  # a batch of thousands of samples fits; a line beyond this is not a wire message
KEEP_ERRORS = 20


@dataclass
class WireFile:
    """The points a file of wire messages yields, and what was refused."""

    points: list[Point] = field(default_factory=list)
    messages: int = 0
    refused: Counter[str] = field(default_factory=Counter)
    errors: list[str] = field(default_factory=list)  # the first KEEP_ERRORS refusals, "file:line: kind: detail"

    def refuse(self, where: str, kind: str, detail: str) -> None:
        """Count a refused line and keep the first few."""
        self.refused[kind] += 1
        if len(self.errors) < KEEP_ERRORS:
            self.errors.append(f"{where}: {kind}: {detail}")


def read_wire_file(path: Path, site: SiteConfig, now_ms: int) -> WireFile:
    """Read path's wire messages through the site's registry; raise OSError if the file cannot be read."""
    registry = Registry.from_site(site, backfill=True)
    out = WireFile()
    with path.open("rb") as stream:
        for number, raw in enumerate(stream, start=1):
            where = f"{path}:{number}"
            if not raw.strip():
                continue
            out.messages += 1
            if len(raw) > MAX_LINE_BYTES:
                out.refuse(where, "oversize", f"line of {len(raw)} bytes exceeds {MAX_LINE_BYTES}")
                continue
            try:
                _read_line(raw, registry, now_ms, out)
            except PayloadError as exc:
                out.refuse(where, exc.kind, exc.detail)
    return out


def _read_line(raw: bytes, registry: Registry, now_ms: int, out: WireFile) -> None:
    try:
        line = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PayloadError("invalid-json", f"not JSON ({exc})") from exc
    if not isinstance(line, dict) or not isinstance(line.get("topic"), str) or "payload" not in line:
        raise PayloadError("invalid-line", 'expected {"topic": "...", "retain": ..., "payload": {...}}')
    try:
        topic = Topic.parse(line["topic"])
    except ValueError as exc:
        raise PayloadError("invalid-topic", str(exc)) from exc
    payload = json.dumps(line["payload"], separators=(",", ":")).encode()
    if topic.kind is TopicKind.TELEMETRY:
        out.points.extend(batch_to_points(registry.check_telemetry(topic, payload, now_ms)))
    elif topic.kind is TopicKind.MACHINE_STATUS:
        out.points.append(status_to_point(topic, registry.check_machine_status(topic, payload, now_ms)))
    elif topic.kind is TopicKind.AGENT_STATUS:
        # A file has no receive time: the status's own ts stands for it (checked as the status's ts is).
        sent = line["payload"].get("ts") if isinstance(line["payload"], dict) else None
        received = sent if type(sent) is int else now_ms
        status = registry.check_agent_status(topic, payload, received)
        out.points.append(agent_status_to_point(topic, status, status.ts))
    else:
        raise PayloadError("unexpected-topic", f"{topic.kind.value} messages carry no data for a report")
