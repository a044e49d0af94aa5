"""The agent's SQLite file: seq per machine, atomic, surviving restarts; hostile files are refused clearly."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge_agent.outbox import Outbox, OutboxError
from shopfloor.contracts import Sample

SAMPLES = [Sample(ts=1_764_291_600_000, values={"good_count": 1})]


def test_seq_counts_per_machine_and_survives_reopen(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    assert outbox.last_seq("bdg", "cnc-01") is None
    seqs = [outbox.seal("edge-1", "bdg", "cnc-01", SAMPLES).seq for _ in range(3)]
    other = outbox.seal("edge-1", "bdg", "laser-01", SAMPLES)
    outbox.close()
    assert seqs == [0, 1, 2]
    assert other.seq == 0
    reopened = Outbox(tmp_path, "edge-1")
    batch = reopened.seal("edge-1", "bdg", "cnc-01", SAMPLES)
    assert (batch.seq, batch.agent, batch.site, batch.machine, batch.samples) == (3, "edge-1", "bdg", "cnc-01", SAMPLES)
    assert reopened.last_seq("bdg", "cnc-01") == 3
    assert reopened.last_seq("other-site", "cnc-01") is None
    reopened.close()


def test_second_agent_on_same_data_dir_is_refused(tmp_path: Path) -> None:
    first = Outbox(tmp_path, "edge-1")
    with pytest.raises(OutboxError, match="another agent 'edge-1' is running"):
        Outbox(tmp_path, "edge-1")
    other = Outbox(tmp_path, "edge-2")  # another agent id has its own file
    other.close()
    first.close()
    Outbox(tmp_path, "edge-1").close()  # released on close


def test_garbage_file_is_refused_with_advice(tmp_path: Path) -> None:
    (tmp_path / "edge-1.sqlite3").write_bytes(b"this is not a database" * 100)
    with pytest.raises(OutboxError, match=r"not a usable SQLite file.*move it away"):
        Outbox(tmp_path, "edge-1")
    # The lock is released after the failure.
    (tmp_path / "edge-1.sqlite3").unlink()
    Outbox(tmp_path, "edge-1").close()


def test_unusable_data_dir(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(OutboxError, match="data dir"):
        Outbox(blocker / "sub", "edge-1")
