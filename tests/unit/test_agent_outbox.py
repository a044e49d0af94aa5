"""The agent's outbox: seq per machine, batches kept until committed, bounds that drop the oldest and fold their
values forward, full disk, offsets; hostile files are refused clearly."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edge_agent.outbox import Loss, Outbox, OutboxError, OutboxFull
from shopfloor.contracts import Sample, SignalValue, TelemetryBatch

T0 = 1_764_291_600_000
DAY_MS = 86_400_000
SAMPLES = [Sample(ts=T0, values={"good_count": 1})]


def s(ts: int, **values: SignalValue) -> Sample:
    return Sample(ts=ts, values=values)


def first_values(payload: bytes) -> dict[str, SignalValue]:
    values: dict[str, SignalValue] = json.loads(payload)["samples"][0]["values"]
    return values


def payload_size(machine: str, seq: int, samples: list[Sample], site: str = "bdg") -> int:
    return len(TelemetryBatch(v=1, agent="edge-1", site=site, machine=machine, seq=seq, samples=samples).to_json())


def test_seq_counts_per_machine_and_survives_reopen(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    assert outbox.last_seq("bdg", "cnc-01") is None
    seqs = [outbox.seal("bdg", "cnc-01", SAMPLES, T0).seq for _ in range(3)]
    other = outbox.seal("bdg", "laser-01", SAMPLES, T0)
    outbox.close()
    assert seqs == [0, 1, 2]
    assert other.seq == 0
    reopened = Outbox(tmp_path, "edge-1")
    sealed = reopened.seal("bdg", "cnc-01", SAMPLES, T0)
    assert (sealed.site, sealed.machine, sealed.seq, sealed.n_samples) == ("bdg", "cnc-01", 3, 1)
    assert reopened.last_seq("bdg", "cnc-01") == 3
    assert reopened.last_seq("other-site", "cnc-01") is None
    reopened.close()


def test_legacy_seal_returns_a_batch_and_stores_it(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    batch = outbox.seal("edge-1", "bdg", "cnc-01", SAMPLES)
    assert (batch.seq, batch.agent, batch.site, batch.machine, batch.samples) == (0, "edge-1", "bdg", "cnc-01", SAMPLES)
    [row] = outbox.pending(10)
    assert row.payload == batch.to_json()
    outbox.close()


def test_payload_is_the_contract_serialised_once(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    samples = [s(T0, state="RUNNING", good_count=5), s(T0 + 250, good_count=6)]
    sealed = outbox.seal("bdg", "cnc-01", samples, T0 + 300)
    expected = TelemetryBatch(v=1, agent="edge-1", site="bdg", machine="cnc-01", seq=0, samples=samples)
    assert sealed.payload == expected.to_json()
    assert (sealed.first_ts, sealed.last_ts, sealed.n_samples) == (T0, T0 + 250, 2)
    [row] = outbox.pending(10)
    assert (row.machine, row.seq, row.sealed_ms, row.payload) == ("cnc-01", 0, T0 + 300, sealed.payload)
    outbox.close()


def test_seal_many_is_one_call_for_several_machines(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    outbox.seal("bdg", "cnc-02", SAMPLES, T0)
    out = outbox.seal_many([("bdg", "cnc-01", SAMPLES), ("bdg", "cnc-02", SAMPLES), ("bdg", "cnc-01", SAMPLES)], T0 + 1)
    # cnc-02 had seq 0 already; cnc-01 appears twice in the tick and gets two consecutive seqs.
    assert [(x.machine, x.seq) for x in out] == [("cnc-01", 0), ("cnc-02", 1), ("cnc-01", 1)]
    assert outbox.stats(T0 + 1)["depth"] == 4
    outbox.close()


def test_commit_deletes_covered_rows_and_pending_is_oldest_first(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    for i in range(5):
        outbox.seal_many([("bdg", "cnc-01", SAMPLES), ("bdg", "laser-01", SAMPLES)], T0 + i)
    rows = outbox.pending(100)
    # Seal order across machines: cnc-01/0, laser-01/0, cnc-01/1, ...
    assert [(r.machine, r.seq) for r in rows][:4] == [("cnc-01", 0), ("laser-01", 0), ("cnc-01", 1), ("laser-01", 1)]
    # cnc-01 seqs 0..4: ranges [0,1] and [3,3] delete 3 rows; 7 is not there; laser-01 untouched.
    assert outbox.commit("bdg", "cnc-01", [(0, 1), (3, 3), (7, 9)]) == 3
    assert outbox.commit("other", "cnc-01", [(0, 100)]) == 0
    left = [(r.machine, r.seq) for r in outbox.pending(100)]
    assert left == [
        ("laser-01", 0),
        ("laser-01", 1),
        ("cnc-01", 2),
        ("laser-01", 2),
        ("laser-01", 3),
        ("cnc-01", 4),
        ("laser-01", 4),
    ]
    assert [(r.machine, r.seq) for r in outbox.pending(2, after_id=rows[3].id)] == [("cnc-01", 2), ("laser-01", 2)]
    assert [r.seq for r in outbox.pending(3, exclude_inflight={("laser-01", 0), ("laser-01", 1)})] == [2, 2, 3]
    stats = outbox.stats(T0 + 10)
    assert (stats["depth"], stats["oldest_age_ms"]) == (7, 10)  # the oldest row left was sealed at T0
    assert stats["bytes"] == sum(len(r.payload) for r in outbox.pending(100))
    outbox.close()
    reopened = Outbox(tmp_path, "edge-1")
    assert reopened.stats(T0 + 10)["depth"] == 7
    reopened.close()


def test_byte_bound_drops_oldest_and_folds_values_into_next_batch(tmp_path: Path) -> None:
    b0 = [s(T0, state="RUNNING", good_count=1), s(T0 + 100, good_count=2, job="J1")]
    b1 = [s(T0 + 200, good_count=3)]
    b2 = [s(T0 + 300, good_count=4)]
    sizes = [payload_size("cnc-01", 0, b0), payload_size("cnc-01", 1, b1), payload_size("cnc-01", 2, b2)]
    # Room for all three but one byte: sealing b2 must drop b0, and only b0.
    outbox = Outbox(tmp_path, "edge-1", max_bytes=sum(sizes) - 1)
    outbox.seal("bdg", "cnc-01", b0, T0)
    outbox.seal("bdg", "cnc-01", b1, T0 + 200)
    outbox.seal("bdg", "cnc-01", b2, T0 + 300)
    rows = outbox.pending(10)
    assert [r.seq for r in rows] == [1, 2]
    # b0 folded in order (good_count 1 then 2, later wins) under b1's own values (good_count 3 wins); same seq 1.
    assert first_values(rows[0].payload) == {"state": "RUNNING", "good_count": 3, "job": "J1"}
    assert json.loads(rows[0].payload)["seq"] == 1
    assert first_values(rows[1].payload) == {"good_count": 4}
    # The loss: b0's two samples T0..T0+100; seq 2 was the first sealed after it.
    assert outbox.losses() == [Loss(1, "bdg", "cnc-01", T0, T0 + 100, 1, 2, 2)]
    stats = outbox.stats(T0 + 300)
    assert (stats["dropped_batches"], stats["dropped_samples"]) == (1, 2)
    assert stats["bytes"] == sum(len(r.payload) for r in rows)
    outbox.close()
    reopened = Outbox(tmp_path, "edge-1")  # counters and losses are persisted
    assert (reopened.stats()["dropped_batches"], reopened.stats()["dropped_samples"]) == (1, 2)
    [loss] = reopened.losses()
    assert reopened.forget_loss(loss)
    assert reopened.losses() == []
    reopened.close()


def test_age_bound_keeps_a_carry_when_nothing_of_the_machine_remains(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1", max_age_s=86_400)
    outbox.seal("bdg", "cnc-01", [s(T0, state="RUNNING", badge=7)], T0)
    outbox.seal("bdg", "cnc-01", [s(T0 + 1000, state="STOPPED", stop_reason=3)], T0 + 1000)
    outbox.seal("bdg", "laser-01", [s(T0 + 2000, state="IDLE")], T0 + DAY_MS)
    # A day after T0 + 1 s: both cnc-01 rows are too old, laser-01's row (sealed at T0 + 1 day) is not.
    assert outbox.enforce(T0 + DAY_MS + 1001) == 2
    assert [(r.machine, r.seq) for r in outbox.pending(10)] == [("laser-01", 0)]
    assert [(x.machine, x.first_ts, x.last_ts, x.batches, x.samples, x.after_seq) for x in outbox.losses()] == [
        ("cnc-01", T0, T0 + 1000, 2, 2, 2)
    ]
    outbox.close()
    # The carry survives a restart and goes into the next batch's first sample, under its own values.
    reopened = Outbox(tmp_path, "edge-1", max_age_s=86_400)
    sealed = reopened.seal("bdg", "cnc-01", [s(T0 + DAY_MS + 2000, good_count=9), s(T0 + DAY_MS + 3000, badge=0)], 0)
    assert sealed.seq == 2
    body = json.loads(sealed.payload)
    assert body["samples"][0]["values"] == {"state": "STOPPED", "badge": 7, "stop_reason": 3, "good_count": 9}
    assert body["samples"][1]["values"] == {"badge": 0}
    # Only once: the next batch carries nothing extra.
    assert first_values(reopened.seal("bdg", "cnc-01", [s(T0 + DAY_MS + 4000, good_count=10)], 0).payload) == {
        "good_count": 10
    }
    reopened.close()


def test_repeated_drops_extend_one_loss_per_machine(tmp_path: Path) -> None:
    size = payload_size("cnc-01", 0, SAMPLES)
    outbox = Outbox(tmp_path, "edge-1", max_bytes=2 * size + 1)
    for i in range(6):
        outbox.seal("bdg", "cnc-01", [s(T0 + i, good_count=i)], T0 + i)
    # Seqs 0..5, two fit: 0..3 dropped one by one as 2..5 came in; one loss covering all four.
    assert [r.seq for r in outbox.pending(10)] == [4, 5]
    [loss] = outbox.losses()
    assert (loss.first_ts, loss.last_ts, loss.batches, loss.samples, loss.after_seq) == (T0, T0 + 3, 4, 4, 5)
    outbox.close()


def test_full_disk_drops_oldest_then_reports_what_it_could_not_store(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1", max_pages=60)
    big = [s(T0 + i, job="x" * 200, good_count=i) for i in range(40)]  # ~10 kB a batch
    stored, full = 0, 0
    for i in range(60):
        try:
            outbox.seal("bdg", "cnc-01", big, T0 + i)
            stored += 1
        except OutboxFull:
            full += 1
    stats = outbox.stats()
    # The page limit (60 x 4 kB) holds far fewer than 60 batches: the oldest were dropped to make room.
    assert stats["dropped_batches"] > 0
    assert stored + full == 60
    assert stats["dropped_batches"] == 60 - stats["depth"]
    seqs = [r.seq for r in outbox.pending(100)]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs)))
    assert [x.machine for x in outbox.losses()] == ["cnc-01"]
    # One batch larger than the whole file can hold: refused with OutboxFull, counted, never a crash.
    huge = [s(T0 + i, job="y" * 250) for i in range(900)]
    before = outbox.stats()["dropped_samples"]
    with pytest.raises(OutboxFull, match="cannot store 1 batch"):
        outbox.seal("bdg", "laser-01", huge, T0 + 100)
    assert outbox.stats()["dropped_samples"] == before + 900
    outbox.close()


def test_offsets_persist(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    assert outbox.offsets("bdg", "cnc-01") == {}
    outbox.set_offset("bdg", "cnc-01", "good_count", 65536.0)
    outbox.set_offset("bdg", "cnc-01", "good_count", 131072.0)
    outbox.set_offset("bdg", "cnc-01", "energy_kwh", 4294967.296)
    outbox.close()
    reopened = Outbox(tmp_path, "edge-1")
    assert reopened.offsets("bdg", "cnc-01") == {"good_count": 131072.0, "energy_kwh": 4294967.296}
    assert reopened.offsets("bdg", "cnc-02") == {}
    reopened.close()


def test_oversize_and_empty_batches_are_refused_before_storing(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    with pytest.raises(ValueError, match="over the 262144 byte limit"):
        outbox.seal("bdg", "cnc-01", [s(T0 + i, job="z" * 250) for i in range(1000)], T0)
    with pytest.raises(ValueError, match="at least one sample"):
        outbox.seal("bdg", "cnc-01", [], T0)
    assert outbox.last_seq("bdg", "cnc-01") is None
    assert outbox.stats()["depth"] == 0
    outbox.close()


@pytest.mark.parametrize(("kwargs", "match"), [({"max_bytes": 0}, "max_bytes"), ({"max_age_s": 0}, "max_age_s")])
def test_refuses_bad_bounds(tmp_path: Path, kwargs: dict[str, float], match: str) -> None:
    with pytest.raises(ValueError, match=match):
        Outbox(tmp_path, "edge-1", **kwargs)  # type: ignore[arg-type]


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


def test_closing_twice_leaves_alone_the_file_that_took_the_lock_files_number(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path, "edge-1")
    lock_fd = outbox._lock_fd
    outbox.close()
    # The lowest free number is handed out next: a file opened now takes the lock file's old number.
    with open(tmp_path / "other", "wb") as other:
        assert other.fileno() == lock_fd
        outbox.close()  # again (a second stop path): the number is not closed a second time
        other.write(b"still open")
        other.flush()
    assert (tmp_path / "other").read_bytes() == b"still open"
    Outbox(tmp_path, "edge-1").close()  # and the data dir was released
