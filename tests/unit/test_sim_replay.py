"""Replay: every message is a valid wire payload and agrees with the ground truth of the same run."""

from __future__ import annotations

import bisect
import itertools
import json
from pathlib import Path
from typing import Any

import pytest

from shopfloor.cli import main
from shopfloor.codec import encode, plan_reads
from shopfloor.config import SiteConfig, default_site_path
from shopfloor.contracts import (
    Sample,
    SignalValue,
    TelemetryBatch,
    Topic,
    TopicKind,
    parse_status,
    parse_telemetry,
)
from simulators.replay import Message, ReplayOptions, SimulatedPlc, parse_when, replay_messages, run_replay
from simulators.scenario import load_scenario, scenarios_dir
from simulators.truth import GroundTruth
from simulators.world import World

T0 = 1_800_000_000_000


def replay(site: SiteConfig, name: str, **kw: Any) -> tuple[World, list[Message]]:
    world = World(site, load_scenario(scenarios_dir() / f"{name}.yaml", site), 1, T0)
    return world, list(replay_messages(world, "replay-1", ReplayOptions(**kw)))


def batches(messages: list[Message]) -> list[TelemetryBatch]:
    return [m.batch for m in messages if m.batch is not None]


def samples_of(messages: list[Message], machine: str) -> list[Sample]:
    return [s for b in batches(messages) if b.machine == machine for s in b.samples]


def held(samples: list[Sample], until_ms: int) -> dict[str, SignalValue]:
    """What a consumer knows at until_ms from report-by-exception samples: each signal's last value."""
    values: dict[str, SignalValue] = {}
    for sample in samples:
        if sample.ts > until_ms:
            break
        values.update(sample.values)
    return values


def test_messages_are_valid_payloads_in_sequence(example_site: SiteConfig) -> None:
    world, messages = replay(example_site, "e2e-two-tenants", max_batch_samples=7)
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
    assert [(t, s.status, s.ts, s.agent, s.heartbeat_ms) for t, s in statuses] == [
        (f"shopfloor/v1/bdg/{m}/status", "online", T0, "replay-1", 60_000) for m in world.machines
    ]  # nothing goes wrong on the network: each machine is online from its first poll


def test_samples_agree_with_the_ground_truth(example_site: SiteConfig) -> None:
    world, messages = replay(example_site, "e2e-two-tenants")
    truth = world.ground_truth()
    for machine_id, intervals in truth.intervals.items():
        samples = samples_of(messages, machine_id)
        # The first poll is a key frame: every signal of the profile.
        profile = example_site.profile(example_site.machine(machine_id).profile)  # type: ignore[union-attr]
        assert samples[0].ts == T0 and set(samples[0].values) == {r.signal for r in profile.registers}
        # Report by exception: after it, a signal is sent only when its value changed (no heartbeat in 60 s).
        for name in samples[0].values:
            sent = [s.values[name] for s in samples if name in s.values]
            assert all(a != b for a, b in itertools.pairwise(sent)), (machine_id, name)
        assert len(samples) < 60  # far fewer than one per 1 s poll
        starts = [iv.start_ms for iv in intervals]
        for t in range(T0, T0 + 60_000, 1000):
            iv = intervals[bisect.bisect_right(starts, t) - 1]
            now = held(samples, t)
            got = tuple(now[k] for k in ("state", "badge", "job", "stop_reason"))
            assert got == (iv.state.value, iv.badge, iv.job, iv.stop_reason), (machine_id, t)
        machine = truth.machines[machine_id]
        last = T0 + 59_000
        end = held(samples, last)
        good = end["good_count"] - samples[0].values["good_count"]  # type: ignore[operator]
        assert good == machine.parts(T0, last + 1)[0]
        kwh = end["energy_kwh"] - samples[0].values["energy_kwh"]  # type: ignore[operator]
        assert kwh == pytest.approx(machine.kwh(T0, last), abs=0.011)  # register resolution 0.01 kWh


def test_fault_windows_have_no_samples(example_site: SiteConfig) -> None:
    world, messages = replay(example_site, "faults")
    stamps = {m: [s.ts - T0 for s in samples_of(messages, m)] for m in world.machines}
    assert not [t for t in stamps["cnc-01"] if 40_000 <= t < 55_000]  # unreachable
    assert not [t for t in stamps["cnc-02"] if 20_000 <= t < 30_000]  # exception replies
    assert not [t for t in stamps["cnc-02"] if 50_000 <= t < 65_000]  # 3 s replies, 2 s timeout
    # Back from an outage nothing is assumed: the first poll after it is a key frame.
    assert set(next(s for s in samples_of(messages, "cnc-01") if s.ts >= T0 + 55_000).values) == set(
        samples_of(messages, "cnc-01")[0].values
    )
    cnc = samples_of(messages, "cnc-01")
    assert int(held(cnc, T0 + 71_000)["good_count"]) < int(held(cnc, T0 + 55_000)["good_count"])  # reset at 70 s


def test_custom_poll_interval_and_bad_arguments(example_site: SiteConfig) -> None:
    world = World(example_site, load_scenario(scenarios_dir() / "e2e-two-tenants.yaml", example_site), 1, T0)
    sent: list[Message] = []
    stats = run_replay(world, sent.append, options=ReplayOptions(poll_ms=10_000))
    # 5 machines online at T0; every sample on the 10 s poll grid; the 60 s run fits one publish interval, so
    # each machine's samples go in one message.
    assert stats.statuses == 5
    assert stats.messages - stats.statuses == 5
    assert all((s.ts - T0) % 10_000 == 0 for m in sent if m.batch for s in m.batch.samples)
    with pytest.raises(ValueError, match="agent id"):
        list(replay_messages(world, "Bad Agent"))
    for bad, match in [
        ({"max_batch_samples": 1001}, "batch size"),
        ({"max_batch_samples": 0}, "batch size"),
        ({"publish_interval_s": 0}, "publish interval"),
        ({"heartbeat_s": 0.5}, "heartbeat"),
        ({"heartbeat_s": float("nan")}, "heartbeat"),
        ({"poll_ms": 0}, "poll interval"),
    ]:
        with pytest.raises(ValueError, match=match):
            ReplayOptions(**bad)  # type: ignore[arg-type]


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
    n_samples = sum(len(json.loads(line)["payload"].get("samples", [])) for line in lines)
    assert 5 <= n_samples < 300  # report by exception: far fewer than one per poll (5 machines x 60 polls)
    assert f"replay: {len(lines)} messages ({len(lines) - 5} telemetry, 5 status), {n_samples} samples" in err
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
        ["--from", "2026-11-01", "--to", "2026-11-02", "--out", "x", "--batch", "0"],
        ["--from", "2026-11-01", "--to", "2026-11-02", "--out", "x", "--publish-interval", "-1"],
        ["--from", "2026-11-01", "--to", "2026-11-02", "--out", "x", "--heartbeat", "99999"],
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
    assert "0-1      input    uint32   2      CDAB   0.01   0       energy_kwh" in out
    assert main(["simulate", "--site", str(default_site_path()), "--print-registers", "nope"]) == 2


def first_poll_at_or_after(t_ms: int, step_ms: int) -> int:
    return T0 + -(-(t_ms - T0) // step_ms) * step_ms


@pytest.mark.parametrize("poll_ms", [1000, 700, 4000])
def test_status_messages_follow_the_fault_windows(example_site: SiteConfig, poll_ms: int) -> None:
    world = World(example_site, load_scenario(scenarios_dir() / "faults.yaml", example_site), 1, T0)
    messages = list(replay_messages(world, "replay-1", ReplayOptions(poll_ms=poll_ms)))
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
    cnc = [m for m in replay_messages(world, "replay-1") if m.topic.split("/")[3] == "cnc-01"]
    kinds = [("status", m.status.status.value) if m.status else ("telemetry", "") for m in cnc]
    # Samples before the outage go out before the status that ends them, as the agent does; after it the online
    # status comes before the samples it covers.
    assert kinds[:4] == [("status", "online"), ("telemetry", ""), ("status", "unreachable"), ("status", "online")]
    assert set(kinds[4:]) == {("telemetry", "")}
    down = cnc[2].status.ts  # type: ignore[union-attr]
    assert all(s.ts < down for s in cnc[1].batch.samples)  # type: ignore[union-attr]
    up = cnc[3].status.ts  # type: ignore[union-attr]
    assert all(s.ts >= up for m in cnc[4:] for s in m.batch.samples)  # type: ignore[union-attr]


def test_simulated_plc_shows_exactly_what_encode_gives(example_site: SiteConfig) -> None:
    # SimulatedPlc only re-encodes what changed: it must still equal encode() of the whole poll, every poll.
    world = World(example_site, load_scenario(scenarios_dir() / "faults.yaml", example_site), 3, T0)
    for machine_id, sim in world.machines.items():
        profile = example_site.profile(example_site.machine(machine_id).profile)  # type: ignore[union-attr]
        blocks = plan_reads(profile)
        plc = SimulatedPlc(profile, blocks)
        for t in range(T0, world.end_ms, 700):
            sim.advance(t)
            values = sim.values(t)
            if t % 7 == 0:
                values.pop("job", None)  # a signal the PLC stops showing
            memory = encode(profile, values)
            expected = {b: [memory.get((b.table, a), 0) for a in range(b.start, b.end)] for b in blocks}
            assert plc.read(values) == expected, (machine_id, t)
