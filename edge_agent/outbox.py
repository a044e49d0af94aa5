"""The agent's disk state in SQLite (WAL): seq per machine, every sealed batch until a collector commits it, losses,
counter offsets.

Bounded by bytes and age: the oldest batches are dropped, counted and reported as a Loss per machine. Samples are
report-by-exception (a value holds until the next value of its signal), so the values of dropped samples are folded
into the first sample of the machine's oldest remaining batch (or kept as a "carry" for its next batch): later data
never inherits a value that was stretched across the gap, and the gap itself is published as a status.

One Outbox is used from one thread (the agent's event loop).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import sqlite3
import time
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, overload

from shopfloor.contracts import MAX_PAYLOAD_BYTES, Sample, SignalValue, TelemetryBatch

DEFAULT_MAX_BYTES = 256 * 1024 * 1024
DEFAULT_MAX_AGE_S = 7 * 24 * 3600

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seq (
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    last INTEGER NOT NULL CHECK (last >= 0),
    PRIMARY KEY (site, machine)
);
CREATE TABLE IF NOT EXISTS batch (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    seq INTEGER NOT NULL,
    sealed_ms INTEGER NOT NULL,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    n_samples INTEGER NOT NULL,
    payload BLOB NOT NULL,
    UNIQUE (site, machine, seq)
);
CREATE TABLE IF NOT EXISTS carry (
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    vals TEXT NOT NULL,
    PRIMARY KEY (site, machine)
);
CREATE TABLE IF NOT EXISTS loss (
    id INTEGER PRIMARY KEY,
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    first_ts INTEGER NOT NULL,
    last_ts INTEGER NOT NULL,
    batches INTEGER NOT NULL,
    samples INTEGER NOT NULL,
    after_seq INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counter (
    name TEXT PRIMARY KEY,
    value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS counter_offset (
    site TEXT NOT NULL,
    machine TEXT NOT NULL,
    signal TEXT NOT NULL,
    value REAL NOT NULL,
    PRIMARY KEY (site, machine, signal)
);
"""
_ROW = "id, site, machine, seq, sealed_ms, payload"


class OutboxError(Exception):
    """The agent's data directory or database cannot be used (for this operation)."""


class OutboxFull(OutboxError):
    """The disk (or the database's page limit) is full even after dropping the oldest batches."""


@dataclass(frozen=True, slots=True)
class Sealed:
    """A batch with its seq, stored; payload is the exact bytes to publish."""

    site: str
    machine: str
    seq: int
    payload: bytes
    first_ts: int
    last_ts: int
    n_samples: int


@dataclass(frozen=True, slots=True)
class Pending:
    """A stored batch not yet committed by a collector; id orders rows by seal time."""

    id: int
    site: str
    machine: str
    seq: int
    sealed_ms: int
    payload: bytes


@dataclass(frozen=True, slots=True)
class Loss:
    """Batches of one machine dropped unsent; after_seq is the first seq sealed after them."""

    id: int
    site: str
    machine: str
    first_ts: int
    last_ts: int
    batches: int
    samples: int
    after_seq: int


def _samples_of(payload: bytes) -> list[dict[str, Any]]:
    samples: list[dict[str, Any]] = json.loads(payload)["samples"]
    return samples


def _fold(values: dict[str, SignalValue], samples: Iterable[Mapping[str, Any]]) -> None:
    for sample in samples:
        values.update(sample["values"])


class Outbox:
    """Seals batches with the next seq of their machine and keeps them until a collector commits them."""

    def __init__(
        self,
        data_dir: Path,
        agent_id: str,
        *,
        max_bytes: int = DEFAULT_MAX_BYTES,
        max_age_s: float = DEFAULT_MAX_AGE_S,
        max_pages: int | None = None,
    ) -> None:
        if max_bytes < 1:
            raise ValueError(f"outbox: max_bytes must be positive, got {max_bytes!r}")
        if not max_age_s > 0:
            raise ValueError(f"outbox: max_age_s must be positive, got {max_age_s!r}")
        self.agent_id = agent_id
        self.max_bytes = max_bytes
        self.max_age_ms = round(max_age_s * 1000)
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
            if max_pages is not None:
                self._db.execute(f"PRAGMA max_page_count={int(max_pages)}")
            self._db.executescript(_SCHEMA)
            self._load()
            self._room: int | None = None
            # What a failed transaction could not persist: merged into the next one that succeeds.
            self._unsaved_carry: dict[tuple[str, str], dict[str, SignalValue]] = {}
            self._unsaved_losses: list[tuple[str, str, int, int, int, int]] = []
            self._unsaved_batches = 0
            self._unsaved_samples = 0
        except sqlite3.DatabaseError as exc:
            with contextlib.suppress(sqlite3.Error):
                self._db.close()
            self._unlock()
            raise OutboxError(
                f"{self.path}: not a usable SQLite file ({exc}); move it away to start the seq counters afresh"
            ) from exc

    def _load(self) -> None:
        rows, size = self._db.execute("SELECT count(*), coalesce(sum(length(payload)), 0) FROM batch").fetchone()
        self._rows, self._bytes = int(rows), int(size)
        self._refresh_oldest()
        self._carried = {(s, m) for s, m in self._db.execute("SELECT site, machine FROM carry")}
        counters = dict(self._db.execute("SELECT name, value FROM counter").fetchall())
        self._dropped_batches = int(counters.get("dropped_batches", 0))
        self._dropped_samples = int(counters.get("dropped_samples", 0))

    def _refresh_oldest(self) -> None:
        row = self._db.execute("SELECT sealed_ms FROM batch ORDER BY id LIMIT 1").fetchone()
        self._oldest_ms: int | None = None if row is None else int(row[0])

    # ---- seq --------------------------------------------------------------------------------------------------

    def last_seq(self, site: str, machine: str) -> int | None:
        """Return the seq of machine's last sealed batch, or None before the first."""
        row = self._db.execute("SELECT last FROM seq WHERE site = ? AND machine = ?", (site, machine)).fetchone()
        return None if row is None else int(row[0])

    # ---- sealing ----------------------------------------------------------------------------------------------

    @overload
    def seal(self, site: str, machine: str, samples: list[Sample], now_ms: int, /) -> Sealed: ...

    @overload
    def seal(self, agent: str, site: str, machine: str, samples: list[Sample], /) -> TelemetryBatch: ...

    def seal(self, a: str, b: str, c: Any, d: Any, /) -> Sealed | TelemetryBatch:
        """Store samples as machine's next batch (seq persisted in the same transaction) and return it.

        seal(site, machine, samples, now_ms) -> Sealed. The older form seal(agent, site, machine, samples) ->
        TelemetryBatch is kept for callers not yet on Delivery; it stores the batch too.
        """
        if isinstance(c, str):
            sealed = self.seal_many([(b, c, d)], time.time_ns() // 1_000_000)[0]
            return TelemetryBatch.model_validate_json(sealed.payload)
        return self.seal_many([(a, b, c)], d)[0]

    def seal_many(self, items: Sequence[tuple[str, str, list[Sample]]], now_ms: int) -> list[Sealed]:
        """Seal several (site, machine, samples) in one transaction; drop the oldest rows first if over a bound.

        Raises OutboxFull (disk or page limit full even after dropping old rows) or OutboxError (other SQLite
        error); the items are then not stored, and counted and reported as a loss like dropped batches.
        """
        if not items:
            return []
        try:
            return self._seal_txn(items, now_ms, extra_room=0)
        except sqlite3.Error as first:
            if _is_full(first):
                # Less disk than max_bytes: make room as the byte bound would, then try once more.
                try:
                    average = self._bytes // max(1, self._rows)
                    room = 2 * average * len(items) + self._bytes // 20
                    return self._seal_txn(items, now_ms, extra_room=room)
                except sqlite3.Error as second:
                    first = second
            self._lose_unsealed(items)
            kind = OutboxFull if _is_full(first) else OutboxError
            raise kind(
                f"{self.path}: cannot store {len(items)} batch(es) ({first}); their samples are counted as dropped"
            ) from first

    def _seal_txn(self, items: Sequence[tuple[str, str, list[Sample]]], now_ms: int, extra_room: int) -> list[Sealed]:
        db = self._db
        db.execute("BEGIN IMMEDIATE")
        try:
            self._persist_unsaved()
            next_seq: dict[tuple[str, str], int] = {}
            planned: list[tuple[str, str, list[Sample], int, bytes]] = []
            for site, machine, samples in items:
                if not samples:
                    raise ValueError(f"machine {machine!r}: a batch needs at least one sample")
                key = (site, machine)
                seq = next_seq.get(key)
                if seq is None:
                    seq = _next(self.last_seq(site, machine))
                next_seq[key] = seq + 1
                # Serialised once; only a carry (rare: after a drop) makes us serialise again below.
                payload = b"" if key in self._carried else self._serialise(site, machine, seq, samples)
                planned.append((site, machine, samples, seq, payload))
            # After a full disk, drop as if the bound were extra_room below what is stored now.
            self._room = max(0, self._bytes - extra_room) if extra_room else None
            try:
                self._enforce(now_ms, sum(len(p[4]) for p in planned))
            finally:
                self._room = None
            out: list[Sealed] = []
            for site, machine, samples, seq, payload in planned:
                if (site, machine) in self._carried:
                    samples = self._merge_carry(site, machine, samples)
                    payload = self._serialise(site, machine, seq, samples)
                db.execute(
                    "INSERT INTO seq (site, machine, last) VALUES (?, ?, ?) "
                    "ON CONFLICT (site, machine) DO UPDATE SET last = excluded.last",
                    (site, machine, seq),
                )
                first_ts, last_ts = min(s.ts for s in samples), max(s.ts for s in samples)
                db.execute(
                    "INSERT INTO batch (site, machine, seq, sealed_ms, first_ts, last_ts, n_samples, payload) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (site, machine, seq, now_ms, first_ts, last_ts, len(samples), payload),
                )
                out.append(Sealed(site, machine, seq, payload, first_ts, last_ts, len(samples)))
            db.execute("COMMIT")
        except BaseException:
            self._rollback()
            self._load()  # in-memory figures back in step with what the rollback kept
            raise
        self._rows += len(out)
        self._bytes += sum(len(s.payload) for s in out)
        if self._oldest_ms is None:
            self._oldest_ms = now_ms
        self._unsaved_carry.clear()
        self._unsaved_losses.clear()
        self._unsaved_batches = self._unsaved_samples = 0
        return out

    def _rollback(self) -> None:
        # SQLite rolls back by itself on some errors (SQLITE_FULL among them).
        if self._db.in_transaction:
            self._db.execute("ROLLBACK")

    def _serialise(self, site: str, machine: str, seq: int, samples: list[Sample]) -> bytes:
        payload = TelemetryBatch(
            v=1, agent=self.agent_id, site=site, machine=machine, seq=seq, samples=samples
        ).to_json()
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(
                f"machine {machine!r}: batch of {len(samples)} samples is {len(payload)} bytes, "
                f"over the {MAX_PAYLOAD_BYTES} byte limit; split it"
            )
        return payload

    def _merge_carry(self, site: str, machine: str, samples: list[Sample]) -> list[Sample]:
        row = self._db.execute("SELECT vals FROM carry WHERE site = ? AND machine = ?", (site, machine)).fetchone()
        self._db.execute("DELETE FROM carry WHERE site = ? AND machine = ?", (site, machine))
        self._carried.discard((site, machine))
        if row is None:
            return samples
        carried: dict[str, SignalValue] = json.loads(row[0])
        first = samples[0]
        merged = Sample(ts=first.ts, values={**carried, **first.values})
        return [merged, *samples[1:]]

    def _lose_unsealed(self, items: Sequence[tuple[str, str, list[Sample]]]) -> None:
        """Count items that could not be stored and remember their values and loss for the next transaction."""
        for site, machine, samples in items:
            if not samples:
                continue
            self._unsaved_batches += 1
            self._unsaved_samples += len(samples)
            carry = self._unsaved_carry.setdefault((site, machine), {})
            for sample in samples:
                carry.update(sample.values)
            last = self.last_seq(site, machine)
            self._unsaved_losses.append(
                (site, machine, min(s.ts for s in samples), max(s.ts for s in samples), len(samples), _next(last))
            )

    def _persist_unsaved(self) -> None:
        for (site, machine), values in self._unsaved_carry.items():
            self._store_carry(site, machine, values)
        for site, machine, first_ts, last_ts, n, after in self._unsaved_losses:
            self._add_loss(site, machine, first_ts, last_ts, 1, n, after)
        if self._unsaved_batches:
            self._dropped_batches += self._unsaved_batches
            self._dropped_samples += self._unsaved_samples
            self._save_counters()

    # ---- bounds -----------------------------------------------------------------------------------------------

    def enforce(self, now_ms: int) -> int:
        """Drop rows past the age bound (or over the byte bound); return how many were dropped."""
        if not self._over(now_ms, 0):
            return 0
        before = self._dropped_batches
        self._db.execute("BEGIN IMMEDIATE")
        try:
            self._enforce(now_ms, 0)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            self._load()
            raise
        return self._dropped_batches - before

    def _over(self, now_ms: int, incoming: int) -> bool:
        too_old = self._oldest_ms is not None and self._oldest_ms < now_ms - self.max_age_ms
        return too_old or self._bytes + incoming > self._limit

    @property
    def _limit(self) -> int:
        return self.max_bytes if self._room is None else min(self.max_bytes, self._room)

    def _enforce(self, now_ms: int, incoming: int) -> None:
        """Inside a transaction: drop the oldest rows until under both bounds with incoming bytes added."""
        if not self._over(now_ms, incoming) or self._rows == 0:
            return
        cutoff = now_ms - self.max_age_ms
        dropped: list[tuple[int, str, str, int, int, bytes]] = []
        freed = 0
        for row in self._db.execute(f"SELECT {_ROW} FROM batch ORDER BY id"):
            rid, site, machine, seq, sealed_ms, payload = row
            if sealed_ms >= cutoff and self._bytes - freed + incoming <= self._limit:
                break
            dropped.append((rid, site, machine, seq, sealed_ms, payload))
            freed += len(payload)
        if not dropped:
            return
        self._db.executemany("DELETE FROM batch WHERE id = ?", [(d[0],) for d in dropped])
        self._rows -= len(dropped)
        self._bytes -= freed
        per_machine: dict[tuple[str, str], list[bytes]] = {}
        for _, site, machine, _, _, payload in dropped:
            per_machine.setdefault((site, machine), []).append(payload)
        for (site, machine), payloads in per_machine.items():
            samples = [s for p in payloads for s in _samples_of(p)]
            values: dict[str, SignalValue] = {}
            _fold(values, samples)
            self._carry_forward(site, machine, values)
            last = self.last_seq(site, machine)
            stamps = [int(s["ts"]) for s in samples]
            self._add_loss(site, machine, min(stamps), max(stamps), len(payloads), len(samples), _next(last))
            self._dropped_batches += len(payloads)
            self._dropped_samples += len(samples)
        self._save_counters()
        self._refresh_oldest()

    def _carry_forward(self, site: str, machine: str, values: dict[str, SignalValue]) -> None:
        """Fold values into the first sample of machine's oldest remaining batch, or keep them as its carry."""
        row = self._db.execute(
            f"SELECT {_ROW} FROM batch WHERE site = ? AND machine = ? ORDER BY id LIMIT 1", (site, machine)
        ).fetchone()
        if row is None:
            self._store_carry(site, machine, values)
            return
        rid, payload = row[0], row[5]
        body = json.loads(payload)
        old = self._db.execute("SELECT vals FROM carry WHERE site = ? AND machine = ?", (site, machine)).fetchone()
        if old is not None:  # cannot normally coexist with rows; merge anyway, older values first
            values = {**json.loads(old[0]), **values}
            self._db.execute("DELETE FROM carry WHERE site = ? AND machine = ?", (site, machine))
            self._carried.discard((site, machine))
        first = body["samples"][0]
        first["values"] = {**values, **first["values"]}
        new = TelemetryBatch.model_validate(body).to_json()
        self._db.execute("UPDATE batch SET payload = ? WHERE id = ?", (new, rid))
        self._bytes += len(new) - len(payload)

    def _store_carry(self, site: str, machine: str, values: dict[str, SignalValue]) -> None:
        old = self._db.execute("SELECT vals FROM carry WHERE site = ? AND machine = ?", (site, machine)).fetchone()
        merged = {**json.loads(old[0]), **values} if old is not None else values
        self._db.execute(
            "INSERT INTO carry (site, machine, vals) VALUES (?, ?, ?) "
            "ON CONFLICT (site, machine) DO UPDATE SET vals = excluded.vals",
            (site, machine, json.dumps(merged, separators=(",", ":"))),
        )
        self._carried.add((site, machine))

    def _add_loss(
        self, site: str, machine: str, first_ts: int, last_ts: int, batches: int, samples: int, after_seq: int
    ) -> None:
        # One loss per machine while it is undelivered: a run of drops extends it rather than adding statuses.
        row = self._db.execute(
            "SELECT id FROM loss WHERE site = ? AND machine = ? ORDER BY id DESC LIMIT 1", (site, machine)
        ).fetchone()
        if row is None:
            self._db.execute(
                "INSERT INTO loss (site, machine, first_ts, last_ts, batches, samples, after_seq) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (site, machine, first_ts, last_ts, batches, samples, after_seq),
            )
        else:
            self._db.execute(
                "UPDATE loss SET first_ts = min(first_ts, ?), last_ts = max(last_ts, ?), batches = batches + ?, "
                "samples = samples + ?, after_seq = max(after_seq, ?) WHERE id = ?",
                (first_ts, last_ts, batches, samples, after_seq, row[0]),
            )

    def _save_counters(self) -> None:
        self._db.executemany(
            "INSERT INTO counter (name, value) VALUES (?, ?) ON CONFLICT (name) DO UPDATE SET value = excluded.value",
            [("dropped_batches", self._dropped_batches), ("dropped_samples", self._dropped_samples)],
        )

    # ---- commits and reading ----------------------------------------------------------------------------------

    def commit(self, site: str, machine: str, ranges: Iterable[tuple[int, int]]) -> int:
        """Delete machine's batches whose seq lies in one of the inclusive ranges; return how many."""
        return len(self.commit_many(site, {machine: list(ranges)}))

    def commit_many(self, site: str, machines: Mapping[str, Iterable[tuple[int, int]]]) -> list[tuple[str, int]]:
        """Apply one commit message in one transaction; return the (machine, seq) deleted."""
        deleted: list[tuple[str, int]] = []
        freed = 0
        self._db.execute("BEGIN IMMEDIATE")
        try:
            for machine, ranges in machines.items():
                for first, last in ranges:
                    for seq, size in self._db.execute(
                        "DELETE FROM batch WHERE site = ? AND machine = ? AND seq BETWEEN ? AND ? "
                        "RETURNING seq, length(payload)",
                        (site, machine, first, last),
                    ).fetchall():
                        deleted.append((machine, int(seq)))
                        freed += int(size)
            self._db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        if deleted:
            self._rows -= len(deleted)
            self._bytes -= freed
            self._refresh_oldest()
        return deleted

    def pending(
        self, limit: int, *, after_id: int = 0, exclude_inflight: Collection[tuple[str, int]] = ()
    ) -> list[Pending]:
        """Return up to limit uncommitted batches, oldest first across machines, after row id after_id."""
        out: list[Pending] = []
        cursor = self._db.execute(f"SELECT {_ROW} FROM batch WHERE id > ? ORDER BY id", (after_id,))
        for row in cursor:
            if (row[2], row[3]) in exclude_inflight:
                continue
            out.append(Pending(int(row[0]), row[1], row[2], int(row[3]), int(row[4]), bytes(row[5])))
            if len(out) >= limit:
                break
        cursor.close()
        return out

    def get(self, site: str, machine: str, seq: int) -> Pending | None:
        """Return the stored batch with this seq, or None if it was committed or dropped."""
        row = self._db.execute(
            f"SELECT {_ROW} FROM batch WHERE site = ? AND machine = ? AND seq = ?", (site, machine, seq)
        ).fetchone()
        return None if row is None else Pending(int(row[0]), row[1], row[2], int(row[3]), int(row[4]), bytes(row[5]))

    def losses(self) -> list[Loss]:
        """Return the losses not yet known to be delivered, oldest first."""
        rows = self._db.execute(
            "SELECT id, site, machine, first_ts, last_ts, batches, samples, after_seq FROM loss ORDER BY id"
        ).fetchall()
        return [Loss(*row) for row in rows]

    def forget_loss(self, loss: Loss) -> bool:
        """Delete a delivered loss unless it grew since it was read; return whether it was deleted."""
        cur = self._db.execute("DELETE FROM loss WHERE id = ? AND batches = ?", (loss.id, loss.batches))
        return cur.rowcount > 0

    def stats(self, now_ms: int | None = None) -> dict[str, int]:
        """Depth (rows), bytes, age of the oldest row (ms) and the cumulative drop counters."""
        now = time.time_ns() // 1_000_000 if now_ms is None else now_ms
        return {
            "depth": self._rows,
            "bytes": self._bytes,
            "oldest_age_ms": 0 if self._oldest_ms is None else max(0, now - self._oldest_ms),
            "dropped_batches": self._dropped_batches + self._unsaved_batches,
            "dropped_samples": self._dropped_samples + self._unsaved_samples,
        }

    # ---- counter offsets --------------------------------------------------------------------------------------

    def offsets(self, site: str, machine: str) -> dict[str, float]:
        """Return the persisted unwrap offset of each counter signal of machine."""
        rows = self._db.execute(
            "SELECT signal, value FROM counter_offset WHERE site = ? AND machine = ?", (site, machine)
        ).fetchall()
        return {str(signal): float(value) for signal, value in rows}

    def set_offset(self, site: str, machine: str, signal: str, value: float) -> None:
        """Persist the unwrap offset of one counter signal."""
        try:
            self._db.execute(
                "INSERT INTO counter_offset (site, machine, signal, value) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (site, machine, signal) DO UPDATE SET value = excluded.value",
                (site, machine, signal, float(value)),
            )
        except sqlite3.Error as exc:
            kind = OutboxFull if _is_full(exc) else OutboxError
            raise kind(f"{self.path}: cannot store the offset of {machine}/{signal} ({exc})") from exc

    def close(self) -> None:
        """Close the database and release the data directory."""
        with contextlib.suppress(sqlite3.Error):
            self._db.close()
        self._unlock()

    def _unlock(self) -> None:
        fd, self._lock_fd = self._lock_fd, -1
        if fd < 0:
            return  # released already: closing the number again would close whatever file took it since
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        with contextlib.suppress(OSError):
            os.close(fd)


def _next(last: int | None) -> int:
    return 0 if last is None else last + 1


def _is_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL or "full" in str(exc).lower()
