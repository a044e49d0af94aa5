"""The dead-letter file: record format, truncation and the one-step rotation that bounds it."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest

from collector.deadletter import DeadLetter, DeadLetterFile
from shopfloor.contracts import MAX_PAYLOAD_BYTES


def _records(path: Path) -> list[dict[str, object]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_record_format_round_trips_binary_payload(tmp_path: Path) -> None:
    payload = bytes(range(256))
    dl = DeadLetterFile(tmp_path / "sub" / "dl.jsonl")
    dl.append(DeadLetter(1764291600123, "shopfloor/v1/bdg/cnc-01/telemetry", "malformed-json", 'bad "x"\n', payload))
    [rec] = _records(tmp_path / "sub" / "dl.jsonl")
    assert rec == {
        "received_ms": 1764291600123,
        "topic": "shopfloor/v1/bdg/cnc-01/telemetry",
        "kind": "malformed-json",
        "detail": 'bad "x"\n',
        "payload_bytes": 256,
        "payload_b64": base64.b64encode(payload).decode(),
    }


def test_oversize_payload_is_truncated() -> None:
    letter = DeadLetter(1, "t", "oversize", "too big", b"x" * (MAX_PAYLOAD_BYTES + 10))
    rec = json.loads(letter.to_json_line())
    assert rec["payload_bytes"] == MAX_PAYLOAD_BYTES + 10
    assert len(base64.b64decode(rec["payload_b64"])) == MAX_PAYLOAD_BYTES


def test_hostile_topic_and_detail_stay_one_line(tmp_path: Path) -> None:
    dl = DeadLetterFile(tmp_path / "dl.jsonl")
    dl.append(DeadLetter(1, "a\nb\u2028c", "k", "\x00\r\n\u2029", b""))
    dl.append(DeadLetter(2, "t", "k", "d", b""))
    assert len((tmp_path / "dl.jsonl").read_bytes().split(b"\n")) == 3  # two lines and the final newline
    assert [r["received_ms"] for r in _records(tmp_path / "dl.jsonl")] == [1, 2]


def test_rotates_once_and_stays_bounded(tmp_path: Path) -> None:
    path = tmp_path / "dl.jsonl"
    line_len = len(DeadLetter(0, "t", "k", "d", b"12345").to_json_line())
    dl = DeadLetterFile(path, max_bytes=3 * line_len)
    for i in range(10):
        dl.append(DeadLetter(i, "t", "k", "d", b"12345"))
    assert [r["received_ms"] for r in _records(path)] == [9]
    assert [r["received_ms"] for r in _records(dl.rotated)] == [6, 7, 8]
    assert dl.rotated.name == "dl.jsonl.1"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["dl.jsonl", "dl.jsonl.1"]
    assert path.stat().st_size <= 3 * line_len and dl.rotated.stat().st_size <= 3 * line_len


def test_a_record_larger_than_the_bound_is_still_kept(tmp_path: Path) -> None:
    dl = DeadLetterFile(tmp_path / "dl.jsonl", max_bytes=10)
    dl.append(DeadLetter(1, "t", "k", "d", b"x" * 100))
    dl.append(DeadLetter(2, "t", "k", "d", b"x" * 100))
    assert [r["received_ms"] for r in _records(tmp_path / "dl.jsonl")] == [2]
    assert [r["received_ms"] for r in _records(dl.rotated)] == [1]


@pytest.mark.parametrize("max_bytes", [0, -1])
def test_refuses_non_positive_bound(tmp_path: Path, max_bytes: int) -> None:
    with pytest.raises(ValueError, match="max_bytes must be positive"):
        DeadLetterFile(tmp_path / "dl.jsonl", max_bytes=max_bytes)
