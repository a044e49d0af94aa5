"""The agent's disk state: the seq counter per machine, in SQLite (the outbox of later issues lives here too)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
from pathlib import Path

from shopfloor.contracts import Sample, TelemetryBatch

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seq (
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    last INTEGER NOT NULL CHECK (last >= 0),
    PRIMARY KEY (site, machine)
)
"""


class OutboxError(Exception):
    """The agent's data directory cannot be used."""


class Outbox:
    """Seals batches with the next seq of their machine; the counter survives restarts."""

    def __init__(self, data_dir: Path, agent_id: str) -> None:
        self.path = data_dir / f"{agent_id}.sqlite3"
        lock_path = data_dir / f"{agent_id}.lock"
        try:
            data_dir.mkdir(parents=True, exist_ok=True)
            self._lock_fd = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise OutboxError(f"data dir {str(data_dir)!r}: cannot create {lock_path.name} ({exc})") from exc
        try:
            fcntl.flock(self._lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(self._lock_fd)
            raise OutboxError(
                f"data dir {str(data_dir)!r}: another agent {agent_id!r} is running with it; "
                "stop it or use another --data-dir"
            ) from exc
        try:
            # isolation_level=None: we open transactions ourselves, so each seal is one atomic commit.
            self._db = sqlite3.connect(self.path, isolation_level=None)
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a crash of the agent (kill -9) and costs no fsync per commit; FULL
            # fsynced every message and capped the agent at ~400 messages/s (bench/e2e_throughput.py). After a
            # power loss the last seqs may be handed out again, which the collector sees as a replay.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.DatabaseError as exc:
            self._unlock()
            raise OutboxError(
                f"{self.path}: not a usable SQLite file ({exc}); move it away to start the seq counters afresh"
            ) from exc

    def last_seq(self, site: str, machine: str) -> int | None:
        """Return the seq of machine's last sealed batch, or None before the first."""
        row = self._db.execute("SELECT last FROM seq WHERE site = ? AND machine = ?", (site, machine)).fetchone()
        return None if row is None else int(row[0])

    def seal(self, agent: str, site: str, machine: str, samples: list[Sample]) -> TelemetryBatch:
        """Give samples the next seq of machine (persisted before it is returned) and make the batch."""
        self._db.execute("BEGIN IMMEDIATE")
        try:
            row = self._db.execute(
                "INSERT INTO seq (site, machine, last) VALUES (?, ?, 0) "
                "ON CONFLICT (site, machine) DO UPDATE SET last = last + 1 RETURNING last",
                (site, machine),
            ).fetchone()
            self._db.execute("COMMIT")
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        return TelemetryBatch(v=1, agent=agent, site=site, machine=machine, seq=int(row[0]), samples=samples)

    def close(self) -> None:
        """Close the database and release the data directory."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        with contextlib.suppress(OSError):
            fcntl.flock(self._lock_fd, fcntl.LOCK_UN)
            os.close(self._lock_fd)
