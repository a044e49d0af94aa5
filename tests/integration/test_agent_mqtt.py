"""The edge agent against real pymodbus servers and a real Mosquitto: telemetry, seq, status, last will.

The agent reports by exception: static registers give one key frame (every signal) and then nothing until the next
heartbeat. Tests that need a message per poll make the PLC's registers change at every read (`changing`); the others
use a one-second heartbeat so key frames come every second.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import os
import re
import signal
import struct
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from edge_agent.agent import AgentOptions, EdgeAgent
from launcher.services import Mosquitto, free_port
from shopfloor.codec import encode
from shopfloor.config import AgentSpec, SiteConfig, SiteInfo, Table, default_site_path
from shopfloor.contracts import (
    LinkStatus,
    SignalValue,
    StatusMessage,
    TelemetryBatch,
    Topic,
    TopicKind,
    parse_status,
    parse_telemetry,
)
from shopfloor.modbus import RegisterServer, UnitMemory
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings

pytestmark = pytest.mark.integration

GOOD: dict[str, SignalValue] = {
    "state": "RUNNING",
    "stop_reason": 0,
    "alarms": 5,
    "badge": 1001,
    "good_count": 812,
    "reject_count": 3,
    "spindle_rpm": 9000,
    "job": "J-42",
    "energy_kwh": 12.5,
    "power_kw": 7.25,
}
REPO = Path(__file__).resolve().parents[2]


def make_site(example: SiteConfig, machines: list[str], poll_s: float = 0.1, timeout_s: float = 0.3) -> SiteConfig:
    """Copy the example site under a unique site id (retained messages of other tests stay apart)."""
    chosen = [
        m.model_copy(update={"port": free_port(), "poll_interval_s": poll_s, "timeout_s": timeout_s})
        for m in example.machines
        if m.id in machines
    ]
    info = SiteInfo(id=f"t{uuid.uuid4().hex[:10]}", timezone="UTC")
    agents = [AgentSpec(id="edge-1", machines=[m.id for m in chosen])]
    return example.model_copy(update={"site": info, "machines": chosen, "agents": agents})


class Listener:
    """Records every message under one site, decoded and validated with the shared contract."""

    def __init__(self, url: str, site: str) -> None:
        self._lock = threading.Lock()
        self._messages: list[tuple[Topic, bytes, bool]] = []
        self.link = MqttLink(MqttSettings.from_url(url), f"test-{uuid.uuid4().hex[:8]}", on_message=self._on)
        self.link.start()
        assert self.link.wait_connected(10)
        self.link.subscribe([f"shopfloor/v1/{site}/#"], qos=1)

    def _on(self, msg: InboundMessage) -> None:
        with self._lock:
            self._messages.append((Topic.parse(msg.topic), msg.payload, msg.retain))

    def telemetry(self, machine: str) -> list[TelemetryBatch]:
        with self._lock:
            msgs = list(self._messages)
        return [parse_telemetry(t, p) for t, p, _ in msgs if t.kind is TopicKind.TELEMETRY and t.machine == machine]

    def statuses(self, machine: str = "", agent: str = "") -> list[StatusMessage]:
        with self._lock:
            msgs = list(self._messages)
        return [
            parse_status(t, p)
            for t, p, _ in msgs
            if (t.kind is TopicKind.MACHINE_STATUS and t.machine == machine)
            or (t.kind is TopicKind.AGENT_STATUS and t.agent == agent)
        ]

    def last_status(self, machine: str = "", agent: str = "") -> LinkStatus | None:
        found = self.statuses(machine, agent)
        return found[-1].status if found else None

    def close(self) -> None:
        self.link.stop()


@contextmanager
def listening(url: str, site: str) -> Iterator[Listener]:
    listener = Listener(url, site)
    try:
        yield listener
    finally:
        listener.close()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    """Wait until condition holds; fail naming what did not happen."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def retained(url: str, site: str, machine: str = "", agent: str = "") -> LinkStatus | None:
    """Read the retained status as a newcomer would."""
    with listening(url, site) as fresh:
        deadline = time.monotonic() + 5
        while time.monotonic() < deadline and fresh.last_status(machine, agent) is None:
            time.sleep(0.02)
        return fresh.last_status(machine, agent)


@dataclass
class Plc:
    """A real Modbus TCP server for one machine, serving encoded signal values."""

    server: RegisterServer
    memory: UnitMemory


async def start_plc(site: SiteConfig, machine_id: str, values: dict[str, SignalValue]) -> Plc:
    machine = site.machine(machine_id)
    assert machine is not None
    memory = UnitMemory()
    memory.set(encode(site.profile(machine.profile), values))
    server = RegisterServer("127.0.0.1", machine.port, {machine.unit_id: memory})
    await server.start()
    return Plc(server, memory)


def changing(site: SiteConfig, machine_id: str, plc: Plc) -> None:
    """Make good_count rise at every read the PLC serves, so every poll has a change to report."""
    machine = site.machine(machine_id)
    assert machine is not None
    profile = site.profile(machine.profile)
    count = [int(GOOD["good_count"])]

    def bump() -> None:
        count[0] += 1
        plc.memory.set(encode(profile, {"good_count": count[0]}))

    plc.memory.on_read = bump


async def with_agent(agent: EdgeAgent, body: Callable[[], Awaitable[None]]) -> None:
    task = asyncio.create_task(agent.run())
    try:
        await body()
    finally:
        agent.stop()
        await asyncio.wait_for(task, 15)


KEYFRAME_EVERY_S = AgentOptions(heartbeat_s=1)


def test_telemetry_batches_seq_and_status(mosquitto: Mosquitto, example_site: SiteConfig, tmp_path: Path) -> None:
    site = make_site(example_site, ["cnc-01", "cnc-02"])
    sid = site.site.id

    async def main() -> None:
        plcs = [await start_plc(site, m, GOOD) for m in ("cnc-01", "cnc-02")]
        agent = EdgeAgent(site, "edge-1", MqttSettings.from_url(mosquitto.url), tmp_path, options=KEYFRAME_EVERY_S)
        with listening(mosquitto.url, sid) as bus:

            async def body() -> None:
                await until(lambda: all(len(bus.telemetry(m)) >= 3 for m in ("cnc-01", "cnc-02")), "3 batches each")
                await until(lambda: bus.last_status(agent="edge-1") is LinkStatus.ONLINE, "agent online")
                assert bus.last_status("cnc-01") is LinkStatus.ONLINE

            await with_agent(agent, body)
            await until(lambda: bus.last_status(agent="edge-1") is LinkStatus.OFFLINE, "agent offline on stop")
            for machine in ("cnc-01", "cnc-02"):
                batches = bus.telemetry(machine)
                assert [b.seq for b in batches] == list(range(len(batches)))
                assert {(b.agent, b.site, b.machine) for b in batches} == {("edge-1", sid, machine)}
                # Static registers: only key frames, each with every value decoded exactly, a heartbeat apart.
                samples = [s for b in batches for s in b.samples]
                assert all(s.values == GOOD for s in samples)
                stamps = [s.ts for s in samples]
                assert all(b - a >= 1000 for a, b in itertools.pairwise(stamps)), stamps
                # Machine statuses say who polls the machine and how long it may stay silent.
                status = bus.statuses(machine)[-1]
                assert (status.status, status.agent, status.heartbeat_ms) == (LinkStatus.ONLINE, "edge-1", 1000)
            # The agent's own status carries no heartbeat: it is not a machine.
            assert bus.statuses(agent="edge-1")[-1].heartbeat_ms is None
        for plc in plcs:
            await plc.server.stop()
        assert retained(mosquitto.url, sid, agent="edge-1") is LinkStatus.OFFLINE
        assert retained(mosquitto.url, sid, machine="cnc-01") is LinkStatus.ONLINE
        stats = agent.stats
        assert stats["messages"] >= 6
        sent = [s for m in ("cnc-01", "cnc-02") for b in bus.telemetry(m) for s in b.samples]
        assert stats["samples"] == len(sent)
        assert stats["failures"] == 0
        # Between key frames every poll was quiet: its values were suppressed, not sent.
        assert stats["quiet_polls"] > stats["samples"]
        assert stats["values_suppressed"] == stats["quiet_polls"] * len(GOOD)
        assert stats["values_sent"] == stats["samples"] * len(GOOD)

    asyncio.run(main())


def test_seq_survives_restart_and_batching(mosquitto: Mosquitto, example_site: SiteConfig, tmp_path: Path) -> None:
    site = make_site(example_site, ["cnc-01"], poll_s=0.05)
    settings = MqttSettings.from_url(mosquitto.url)

    async def main() -> None:
        plc = await start_plc(site, "cnc-01", GOOD)
        changing(site, "cnc-01", plc)
        with listening(mosquitto.url, site.site.id) as bus:
            every_poll = AgentOptions(publish_interval_s=0.05)
            first = EdgeAgent(site, "edge-1", settings, tmp_path, options=every_poll)
            await with_agent(first, lambda: until(lambda: len(bus.telemetry("cnc-01")) >= 3, "3 batches"))
            await until(lambda: len(bus.telemetry("cnc-01")) == first.stats["messages"], "all batches delivered")
            seen = len(bus.telemetry("cnc-01"))
            second = EdgeAgent(site, "edge-1", settings, tmp_path, options=AgentOptions(publish_interval_s=0.2))

            def distinct() -> int:
                return len({b.seq for b in bus.telemetry("cnc-01")})

            await with_agent(second, lambda: until(lambda: distinct() >= seen + 3, "3 more"))
            await until(lambda: distinct() == seen + second.stats["messages"], "all delivered")
            received = bus.telemetry("cnc-01")
        await plc.server.stop()
        # No collector commits here, so the second agent resent the first one's batches from the outbox after it
        # connected: byte for byte the same batches, seq and all.
        by_seq: dict[int, TelemetryBatch] = {}
        for b in received:
            assert by_seq.setdefault(b.seq, b) == b
        assert len(received) > len(by_seq)
        batches = [by_seq[seq] for seq in sorted(by_seq)]
        # seq +1 per message, carried on across the restart from the outbox's persisted counter.
        assert [b.seq for b in batches] == list(range(len(batches)))
        # Publishing at the poll interval: a message after each poll; a changing counter makes every poll a sample.
        first_sizes = [len(b.samples) for b in batches[:seen]]
        assert set(first_sizes) == {1}, first_sizes
        assert sum(first_sizes) == first.stats["samples"] == first.stats["polls"]
        # Publishing every 0.2 s at 0.05 s polls: a batch goes when holding it for another poll would make its
        # oldest sample 0.2 s old, so four samples, or five when the oldest was read a little late (fewer if
        # a slow poll skipped a tick, or for the batch flushed on stop); nothing lost on the way.
        sizes = [len(b.samples) for b in batches[seen:]]
        assert max(sizes) in (4, 5), (sizes, second.stats)
        assert sum(sizes) == second.stats["samples"]
        # Each agent starts with a key frame; after it only the counter changed.
        assert batches[seen].samples[0].values.keys() == GOOD.keys()
        assert all(s.values.keys() == {"good_count"} for b in batches[seen:] for s in b.samples[1:])
        counts = [s.values["good_count"] for b in batches for s in b.samples]
        assert counts == sorted(counts) and len(set(counts)) == len(counts)

    asyncio.run(main())


def float_words(value: float) -> dict[tuple[Table, int], int]:
    hi, lo = struct.unpack(">HH", struct.pack(">f", value))
    return {(Table.INPUT, 2): hi, (Table.INPUT, 3): lo}


def test_garbage_registers_omit_only_those_signals(
    mosquitto: Mosquitto, example_site: SiteConfig, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    site = make_site(example_site, ["cnc-01"])

    async def main() -> None:
        plc = await start_plc(site, "cnc-01", GOOD)
        # Unknown state code, NaN power, non-ASCII job text.
        plc.memory.set({(Table.HOLDING, 0): 99, (Table.HOLDING, 20): 0xC3A9, **float_words(math.nan)})
        agent = EdgeAgent(site, "edge-1", MqttSettings.from_url(mosquitto.url), tmp_path, options=KEYFRAME_EVERY_S)
        with listening(mosquitto.url, site.site.id) as bus:
            await with_agent(agent, lambda: until(lambda: len(bus.telemetry("cnc-01")) >= 3, "3 batches"))
            batches = bus.telemetry("cnc-01")
            assert bus.last_status("cnc-01") is LinkStatus.ONLINE
        await plc.server.stop()
        expected = {k: v for k, v in GOOD.items() if k not in ("state", "job", "power_kw")}
        assert all(s.values == expected for b in batches for s in b.samples)
        # Omitted at every poll, quiet or not; logged once per signal however many polls there were.
        assert agent.stats["polls"] >= 20
        assert agent.stats["omitted_values"] == 3 * agent.stats["polls"]
        warnings = [r.getMessage() for r in caplog.records if "not decoded" in r.getMessage()]
        assert sorted(w.split("signal ")[1].split(" ")[0] for w in warnings) == ["'job'", "'power_kw'", "'state'"]

    with caplog.at_level(logging.WARNING):
        asyncio.run(main())


def test_plc_that_stops_answering_is_unreachable_then_recovers(
    mosquitto: Mosquitto, example_site: SiteConfig, tmp_path: Path
) -> None:
    site = make_site(example_site, ["cnc-01"])
    machine = site.machines[0]
    recovered = {**GOOD, "good_count": 900}

    async def main() -> None:
        plc = await start_plc(site, "cnc-01", GOOD)
        changing(site, "cnc-01", plc)
        agent = EdgeAgent(site, "edge-1", MqttSettings.from_url(mosquitto.url), tmp_path)
        with listening(mosquitto.url, site.site.id) as bus:

            async def body() -> None:
                await until(lambda: len(bus.telemetry("cnc-01")) >= 2, "telemetry")
                await plc.server.stop()
                await until(lambda: bus.last_status("cnc-01") is LinkStatus.UNREACHABLE, "unreachable")
                down = bus.statuses("cnc-01")[-1]
                assert down.agent == "edge-1"
                assert down.heartbeat_ms == round(machine.heartbeat_s * 1000)
                assert "read failed" in down.detail
                failures = agent.stats["failures"]
                await until(lambda: agent.stats["failures"] >= failures + 5, "more failed polls")
                during = len(bus.telemetry("cnc-01"))
                assert all(s.ts < down.ts for b in bus.telemetry("cnc-01") for s in b.samples)
                # Serve again on the same port, with static registers: the agent reconnects by itself.
                memory = UnitMemory()
                memory.set(encode(site.profile(machine.profile), recovered))
                again = RegisterServer("127.0.0.1", machine.port, {machine.unit_id: memory})
                await again.start()
                try:
                    await until(lambda: bus.last_status("cnc-01") is LinkStatus.ONLINE, "online again")
                    await until(lambda: len(bus.telemetry("cnc-01")) > during, "telemetry again")
                finally:
                    await again.stop()
                up = bus.statuses("cnc-01")[-1]
                assert up.ts > down.ts
                assert [s.status for s in bus.statuses("cnc-01")] == [
                    LinkStatus.ONLINE,
                    LinkStatus.UNREACHABLE,
                    LinkStatus.ONLINE,
                ]
                # No sample was taken, let alone invented, while the PLC was away.
                samples = [s for b in bus.telemetry("cnc-01") for s in b.samples]
                assert not [s.ts for s in samples if down.ts <= s.ts < up.ts]
                # The first sample after the outage is a key frame: every signal, though only one changed.
                after = [s for s in samples if s.ts >= up.ts]
                assert after[0].values == recovered
                # Before the outage only the rising counter went out after the first key frame.
                before = [s for s in samples if s.ts < down.ts]
                assert before[0].values.keys() == GOOD.keys()
                assert all(s.values.keys() == {"good_count"} for s in before[1:])

            await with_agent(agent, body)
        assert agent.stats["outages"] == 1

    asyncio.run(main())


@pytest.mark.parametrize(
    ("fault", "detail"),
    [
        ({"exception_code": 4}, r"^holding registers 0\.\.27 read failed \(PLC replied with Modbus exception 4\)$"),
        ({"exception_code": 2}, r"PLC replied with Modbus exception 2"),
        ({"delay_s": 1.5}, r"^holding registers 0\.\.27 read failed \(no reply within 0\.3 s\)$"),
    ],
)
def test_exception_and_slow_replies_are_unreachable(
    fault: dict[str, Any], detail: str, mosquitto: Mosquitto, example_site: SiteConfig, tmp_path: Path
) -> None:
    site = make_site(example_site, ["cnc-01"])

    async def main() -> None:
        plc = await start_plc(site, "cnc-01", GOOD)
        agent = EdgeAgent(site, "edge-1", MqttSettings.from_url(mosquitto.url), tmp_path, options=KEYFRAME_EVERY_S)
        with listening(mosquitto.url, site.site.id) as bus:

            async def body() -> None:
                await until(lambda: bus.last_status("cnc-01") is LinkStatus.ONLINE, "online")
                await until(lambda: len(bus.telemetry("cnc-01")) >= 1, "the first key frame")
                for key, value in fault.items():
                    setattr(plc.memory.behaviour, key, value)
                await until(lambda: bus.last_status("cnc-01") is LinkStatus.UNREACHABLE, "unreachable")
                down = bus.statuses("cnc-01")[-1]
                assert re.search(detail, down.detail)
                plc.memory.behaviour.exception_code = None
                plc.memory.behaviour.delay_s = 0.0
                await until(lambda: bus.last_status("cnc-01") is LinkStatus.ONLINE, "online again")
                up = bus.statuses("cnc-01")[-1]
                # Recovery brings a key frame at once, not a heartbeat later.
                await until(lambda: any(s.ts >= up.ts for b in bus.telemetry("cnc-01") for s in b.samples), "data")
                samples = [s for b in bus.telemetry("cnc-01") for s in b.samples]
                assert not [s for s in samples if down.ts <= s.ts < up.ts]
                assert next(s for s in samples if s.ts >= up.ts).values == GOOD

            await with_agent(agent, body)
        await plc.server.stop()

    asyncio.run(main())


def test_never_reachable_plc_gets_no_samples(mosquitto: Mosquitto, example_site: SiteConfig, tmp_path: Path) -> None:
    site = make_site(example_site, ["cnc-01"])  # nothing serves its port

    async def main() -> None:
        agent = EdgeAgent(site, "edge-1", MqttSettings.from_url(mosquitto.url), tmp_path, options=KEYFRAME_EVERY_S)
        with listening(mosquitto.url, site.site.id) as bus:

            async def body() -> None:
                await until(lambda: bus.last_status("cnc-01") is LinkStatus.UNREACHABLE, "unreachable")
                # Well past a heartbeat: an unreachable PLC gets no key frames either.
                await until(lambda: agent.stats["failures"] >= 15, "15 failed polls")

            await with_agent(agent, body)
            assert bus.telemetry("cnc-01") == []
            assert len(bus.statuses("cnc-01")) == 1
            assert "cannot connect" in bus.statuses("cnc-01")[0].detail
            assert bus.statuses("cnc-01")[0].heartbeat_ms == 1000
        assert agent.stats["samples"] == 0

    asyncio.run(main())


def test_status_republished_after_broker_restart(
    fresh_mosquitto: Mosquitto, example_site: SiteConfig, tmp_path: Path
) -> None:
    site = make_site(example_site, ["cnc-01"])
    sid = site.site.id

    async def main() -> None:
        agent = EdgeAgent(site, "edge-1", MqttSettings.from_url(fresh_mosquitto.url), tmp_path)

        async def body() -> None:
            with listening(fresh_mosquitto.url, sid) as bus:
                await until(lambda: bus.last_status("cnc-01") is LinkStatus.UNREACHABLE, "unreachable")
            # The broker keeps no retained messages across this restart (persistence off).
            await asyncio.to_thread(fresh_mosquitto.kill)
            await asyncio.to_thread(fresh_mosquitto.start)
            await until(lambda: agent.stats["mqtt_connects"] >= 2, "reconnect")
            status_agent = await asyncio.to_thread(retained, fresh_mosquitto.url, sid, "", "edge-1")
            status_machine = await asyncio.to_thread(retained, fresh_mosquitto.url, sid, "cnc-01")
            assert (status_agent, status_machine) == (LinkStatus.ONLINE, LinkStatus.UNREACHABLE)

        await with_agent(agent, body)

    asyncio.run(main())


def write_site(path: Path, site_id: str, port: int) -> Path:
    profiles = default_site_path().parent / "profiles"
    path.write_text(
        f"site: {{id: {site_id}}}\n"
        f"profiles: ['{profiles / 'cnc-mill-v1.yaml'}']\n"
        f"machines:\n  - {{id: cnc-01, profile: cnc-mill-v1, port: {port}, poll_interval_s: 0.1, timeout_s: 0.3}}\n"
    )
    return path


@contextmanager
def agent_process(site_file: Path, url: str, data_dir: Path) -> Iterator[subprocess.Popen[bytes]]:
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "edge_agent",
            "--site",
            str(site_file),
            "--mqtt",
            url,
            "--agent-id",
            "edge-9",
            "--data-dir",
            str(data_dir),
            "--log-level",
            "WARNING",
        ],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        assert proc.stdout is not None and proc.stderr is not None
        proc.stdout.close()
        proc.stderr.close()


def wait_status(url: str, site: str, want: LinkStatus, agent: str = "edge-9", timeout_s: float = 15) -> StatusMessage:
    with listening(url, site) as bus:
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            found = bus.statuses(agent=agent)
            if found and found[-1].status is want:
                return found[-1]
            time.sleep(0.02)
    raise AssertionError(f"agent status never became {want}")


def test_last_will_says_offline_after_kill_9(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site_id = f"t{uuid.uuid4().hex[:10]}"
    site_file = write_site(tmp_path / "site.yaml", site_id, free_port())
    with agent_process(site_file, mosquitto.url, tmp_path / "data") as proc:
        online = wait_status(mosquitto.url, site_id, LinkStatus.ONLINE)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    offline = wait_status(mosquitto.url, site_id, LinkStatus.OFFLINE)
    assert offline.detail == "connection lost (last will)"
    assert offline.ts <= online.ts


def test_sigterm_stops_cleanly_with_offline(mosquitto: Mosquitto, tmp_path: Path) -> None:
    site_id = f"t{uuid.uuid4().hex[:10]}"
    site_file = write_site(tmp_path / "site.yaml", site_id, free_port())
    with agent_process(site_file, mosquitto.url, tmp_path / "data") as proc:
        wait_status(mosquitto.url, site_id, LinkStatus.ONLINE)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    offline = wait_status(mosquitto.url, site_id, LinkStatus.OFFLINE)
    assert offline.detail == "stopped"
