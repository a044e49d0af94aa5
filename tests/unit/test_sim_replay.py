"""Replay: every message is a valid wire payload and agrees with the ground truth of the same run."""

from __future__ import annotations

import bisect
import itertools
import json
from pathlib import Path

import pytest

from shopfloor.cli import main
from shopfloor.config import SiteConfig, default_site_path
from shopfloor.contracts import TelemetryBatch, Topic, TopicKind, parse_status, parse_telemetry
from simulators.replay import Message, parse_when, replay_messages, run_replay
from simulators.scenario import load_scenario, scenarios_dir
from simulators.truth import GroundTruth
from simulators.world import World

T0 = 1_800_000_000_000


def replay(site: SiteConfig, name: str, **kw: int) -> tuple[World, list[Message]]:
    world = World(site, load_scenario(scenarios_dir() / f"{name}.yaml", site), 1, T0)
    return world, list(replay_messages(world, "replay-1", **kw))


def batches(messages: list[Message]) -> list[TelemetryBatch]:
    return [m.batch for m in messages if m.batch is not None]


def test_messages_are_valid_payloads_in_sequence(example_site: SiteConfig) -> None:
    world, messages = replay(example_site, "e2e-two-tenants", batch_size=7)
    seqs: dict[str, list[int]] = {}
    for message in messages:
        if message.batch is None:
            continue
        batch = parse_telemetry(Topic.parse(message.topic), message.batch.to_json())
        assert batch.agent == "replay-1" and batch.site == "bdg"
        seqs.setdefault(batch.machine, []).append(batch.seq)
        assert len(batch.samples) <= 7
    assert set(seqs) == set(world.machines)
    assert all(s == list(range(len(s))) for s in seqs.values())
    firsts = [m.ts for m in messages]
    assert firsts == sorted(firsts)  # interleaved across machines in time order
    statuses = [(m.topic, m.status) for m in messages if m.status is not None]
    assert [(t, s.status, s.ts, s.agent) for t, s in statuses] == [
        (f"shopfloor/v1/bdg/{m}/status", "online", T0, "replay-1") for m in world.machines
    ]  # nothing goes wrong on the network: each machine is online from its first poll


def test_samples_agree_with_the_ground_truth(example_site: SiteConfig) -> None:
    world, messages = replay(example_site, "e2e-two-tenants")
    truth = world.ground_truth()
    for machine_id, intervals in truth.intervals.items():
        samples = [s for b in batches(messages) if b.machine == machine_id for s in b.samples]
        assert [s.ts for s in samples] == list(range(T0, T0 + 60_000, 1000))  # one per 1 s poll
        starts = [iv.start_ms for iv in intervals]
        for sample in samples:
            iv = intervals[bisect.bisect_right(starts, sample.ts) - 1]
            got = tuple(sample.values[k] for k in ("state", "badge", "job", "stop_reason"))
            assert got == (iv.state.value, iv.badge, iv.job, iv.stop_reason), (machine_id, sample.ts)
        machine = truth.machines[machine_id]
        good = samples[-1].values["good_count"] - samples[0].values["good_count"]  # type: ignore[operator]
        assert good == machine.parts(T0, samples[-1].ts + 1)[0]
        kwh = samples[-1].values["energy_kwh"] - samples[0].values["energy_kwh"]  # type: ignore[operator]
        assert kwh == pytest.approx(machine.kwh(T0, samples[-1].ts), abs=0.011)  # register resolution 0.01 kWh


def test_fault_windows_have_no_samples(example_site: SiteConfig) -> None:
    world, messages = replay(example_site, "faults")
    stamps = {m: [s.ts - T0 for b in batches(messages) if b.machine == m for s in b.samples] for m in world.machines}
    assert not [t for t in stamps["cnc-01"] if 40_000 <= t < 55_000]  # unreachable
    assert not [t for t in stamps["cnc-02"] if 20_000 <= t < 30_000]  # exception replies
    assert not [t for t in stamps["cnc-02"] if 50_000 <= t < 65_000]  # 3 s replies, 2 s timeout
    assert len(stamps["laser-01"]) == 180  # nothing wrong on its network side
    cnc = {s.ts - T0: s.values for b in batches(messages) if b.machine == "cnc-01" for s in b.samples}
    assert int(cnc[71_000]["good_count"]) < int(cnc[55_000]["good_count"])  # counter reset at 70 s


def test_custom_poll_interval_and_bad_arguments(example_site: SiteConfig) -> None:
    world = World(example_site, load_scenario(scenarios_dir() / "e2e-two-tenants.yaml", example_site), 1, T0)
    sent: list[Message] = []
    stats = run_replay(world, sent.append, batch_size=1000, poll_ms=10_000)
    assert (stats.messages, stats.samples, stats.statuses) == (10, 30, 5)  # 5 batches, 5 online statuses
    with pytest.raises(ValueError, match="agent id"):
        list(replay_messages(world, "Bad Agent"))
    with pytest.raises(ValueError, match="batch size"):
        list(replay_messages(world, "a", batch_size=1001))


@pytest.mark.parametrize(
    ("text", "iso"),
    [
        ("2026-11-01", "2026-11-01T00:00:00+07:00"),
        ("2026-11-01T08:30", "2026-11-01T08:30:00+07:00"),
        ("2026-11-01T08:30:00+00:00", "2026-11-01T08:30:00+00:00"),
    ],
)
def test_parse_when(text: str, iso: str) -> None:
    from datetime import datetime

    assert parse_when(text, "Asia/Jakarta") == int(datetime.fromisoformat(iso).timestamp() * 1000)


@pytest.mark.parametrize("text", ["yesterday", "2026-13-01", "", "2026-11-01T25:00"])
def test_parse_when_rejects_garbage(text: str) -> None:
    with pytest.raises(ValueError):
        parse_when(text, "UTC")


def test_cli_replay_to_file_writes_messages_and_truth(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out, truth_path = tmp_path / "samples.jsonl", tmp_path / "truth.json"
    code = main(
        [
            "simulate",
            "--site",
            str(default_site_path()),
            "--replay",
            "e2e-two-tenants",
            "--from",
            "2026-11-01",
            "--to",
            "2026-11-01T00:01:00",
            "--out",
            str(out),
            "--ground-truth",
            str(truth_path),
            "--seed",
            "5",
        ]
    )
    assert code == 0
    lines = out.read_text().splitlines()
    kinds = []
    for line in lines:
        row = json.loads(line)
        topic, payload = Topic.parse(row["topic"]), json.dumps(row["payload"]).encode()
        if topic.kind is TopicKind.TELEMETRY:
            parse_telemetry(topic, payload)
        else:
            parse_status(topic, payload)
        assert row["retain"] is (topic.kind is TopicKind.MACHINE_STATUS)
        kinds.append(topic.kind)
    err = capsys.readouterr().err
    assert kinds.count(TopicKind.MACHINE_STATUS) == 5
    assert f"replay: {len(lines)} messages ({len(lines) - 5} telemetry, 5 status), 300 samples" in err
    truth = GroundTruth.from_json(truth_path.read_text())
    assert truth.seed == 5 and len(truth.sessions) == 3


@pytest.mark.parametrize(
    "extra",
    [
        ["--from", "2026-11-01", "--out", "x.jsonl"],  # no --to
        ["--from", "2026-11-01", "--to", "2026-11-02"],  # neither --mqtt nor --out
        ["--from", "2026-11-01", "--to", "2026-11-02", "--out", "x", "--mqtt", "mqtt://h"],  # both
        ["--from", "2026-11-02", "--to", "2026-11-01", "--out", "x"],  # backwards
        ["--from", "soon", "--to", "2026-11-01", "--out", "x"],
        ["--from", "2026-11-01", "--to", "2026-11-02", "--out", "x", "--agent-id", "NOPE"],
    ],
)
def test_cli_replay_refuses_bad_options(extra: list[str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["simulate", "--site", str(default_site_path()), "--replay", "e2e-two-tenants", *extra]) == 2
    assert not (tmp_path / "x").exists()


def test_cli_tables(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["simulate", "--site", str(default_site_path()), "--list-models"]) == 0
    assert "fiber-laser-v1" in capsys.readouterr().out
    assert main(["simulate", "--site", str(default_site_path()), "--print-registers", "cnc-mill-v1"]) == 0
    out = capsys.readouterr().out
    assert "0-1      input    uint32   2      little      0.01   energy_kwh" in out
    assert main(["simulate", "--site", str(default_site_path()), "--print-registers", "nope"]) == 2


def first_poll_at_or_after(t_ms: int, step_ms: int) -> int:
    return T0 + -(-(t_ms - T0) // step_ms) * step_ms


@pytest.mark.parametrize("poll_ms", [1000, 700, 4000])
def test_status_messages_follow_the_fault_windows(example_site: SiteConfig, poll_ms: int) -> None:
    world = World(example_site, load_scenario(scenarios_dir() / "faults.yaml", example_site), 1, T0)
    messages = list(replay_messages(world, "replay-1", poll_ms=poll_ms))
    truth = world.ground_truth()
    for machine_id in world.machines:
        topic = Topic.machine_status("bdg", machine_id)
        statuses = [
            (msg, parse_status(topic, msg.payload_json().encode())) for msg in messages if msg.topic == str(topic)
        ]
        assert all(msg.retain and s.agent == "replay-1" for msg, s in statuses)
        got = [(s.status.value, s.ts) for _, s in statuses]
        # Every fault window in faults.yaml fails polls (the slow replies come 3 s late, the timeout is 2 s).
        expected = [("online", T0)]
        for fault in (f for f in truth.faults if f.machine == machine_id):
            down, up = first_poll_at_or_after(fault.start_ms, poll_ms), first_poll_at_or_after(fault.end_ms, poll_ms)
            if down < up:  # a window shorter than a poll interval may fall between two polls
                expected += [("unreachable", down), ("online", up)]
        assert got == expected, machine_id
        # No sample while unreachable, and samples again from the poll that saw the machine back.
        stamps = [s.ts for b in batches(messages) if b.machine == machine_id for s in b.samples]
        for (a, ta), (_, tb) in itertools.pairwise(got):
            if a == "unreachable":
                assert not [t for t in stamps if ta <= t < tb] and tb in stamps
    details = [s.detail for s in (m.status for m in messages) if s is not None and s.status.value == "unreachable"]
    assert details == [
        "holding registers 0..27 read failed (PLC replied with Modbus exception 6)",
        "read failed (cannot connect to 127.0.0.1:15020 (connection refused))",
        "holding registers 0..27 read failed (no reply within 2.0 s)",
    ]


def test_status_is_published_in_order_with_the_telemetry(example_site: SiteConfig) -> None:
    world = World(example_site, load_scenario(scenarios_dir() / "faults.yaml", example_site), 1, T0)
    cnc = [m for m in replay_messages(world, "replay-1", batch_size=1000) if m.topic.split("/")[3] == "cnc-01"]
    kinds = [("status", m.status.status.value) if m.status else ("telemetry", len(m.batch.samples)) for m in cnc]  # type: ignore[union-attr]
    # Samples before the outage go out before the status that ends them, as the agent does.
    assert kinds == [
        ("status", "online"),
        ("telemetry", 40),
        ("status", "unreachable"),
        ("status", "online"),
        ("telemetry", 125),
    ]
