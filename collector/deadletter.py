"""A size-bounded JSON-lines file for messages that must not be written to the store."""

from __future__ import annotations

import base64
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path

from shopfloor.contracts import MAX_PAYLOAD_BYTES

DEFAULT_MAX_BYTES = 16 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One refused message, as kept for inspection."""

    received_ms: int
    topic: str
    kind: str
    detail: str
    payload: bytes

    def to_json_line(self) -> str:
        """Render as one JSON line; the payload is base64 and cut to MAX_PAYLOAD_BYTES."""
        record = {
            "received_ms": self.received_ms,
            "topic": self.topic,
            "kind": self.kind,
            "detail": self.detail,
            "payload_bytes": len(self.payload),
            "payload_b64": base64.b64encode(self.payload[:MAX_PAYLOAD_BYTES]).decode("ascii"),
        }
        return json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n"


class DeadLetterFile:
    """Append dead letters to path; when it would grow past max_bytes it becomes path.1 (one old file kept)."""

    def __init__(self, path: Path, max_bytes: int = DEFAULT_MAX_BYTES) -> None:
        if max_bytes <= 0:
            raise ValueError(f"dead-letter file {path}: max_bytes must be positive, got {max_bytes}")
        self.path = path
        self.max_bytes = max_bytes
        self._lock = threading.Lock()

    @property
    def rotated(self) -> Path:
        """Where the previous file goes on rotation."""
        return self.path.with_name(self.path.name + ".1")

    def append(self, letter: DeadLetter) -> None:
        """Append one record, rotating first if the file would exceed max_bytes; raise OSError on disk trouble."""
        line = letter.to_json_line().encode("ascii")
        with self._lock:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            try:
                size = self.path.stat().st_size
            except FileNotFoundError:
                size = 0
            if size and size + len(line) > self.max_bytes:
                os.replace(self.path, self.rotated)
            with self.path.open("ab") as fh:
                fh.write(line)
