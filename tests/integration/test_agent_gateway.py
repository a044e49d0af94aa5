"""Two machines behind one Modbus TCP gateway (one host:port, two unit ids) polled by one agent share ONE connection.

A raw TCP proxy in front of a real RegisterServer counts the connections it accepts, so the test sees what went over
the wire rather than what the client says it did.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from edge_agent.agent import AgentOptions, EdgeAgent
from edge_agent.cli import check_report
from launcher.services import Mosquitto, free_ports
from shopfloor.codec import encode
from shopfloor.config import AgentSpec, SiteConfig, SiteInfo
from shopfloor.contracts import LinkStatus, Sample, SignalValue, Topic, TopicKind, parse_status, parse_telemetry
from shopfloor.modbus import RegisterServer, UnitMemory
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings

pytestmark = pytest.mark.integration

UNIT_1: dict[str, SignalValue] = {
    "state": "RUNNING",
    "stop_reason": 0,
    "alarms": 0,
    "badge": 1001,
    "good_count": 100,
    "reject_count": 1,
    "spindle_rpm": 8000,
    "job": "A-1",
    "energy_kwh": 10.5,
    "power_kw": 5.5,
}
UNIT_2: dict[str, SignalValue] = {
    "state": "SETUP",
    "stop_reason": 3,
    "alarms": 2,
    "badge": 2001,
    "good_count": 200,
    "reject_count": 7,
    "spindle_rpm": 0,
    "job": "B-22",
    "energy_kwh": 20.25,
    "power_kw": 0.75,
}


class CountingProxy:
    """A TCP proxy that forwards byte for byte to a server and counts the connections it accepts."""

    def __init__(self, port: int, target_port: int) -> None:
        self.port, self.target_port = port, target_port
        self.accepted = 0
        self.open = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", self.port)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.accepted += 1
        self.open += 1
        try:
            server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            client_w.close()
            self.open -= 1
            return
        pumps = [
            asyncio.create_task(self._pump(client_r, server_w)),
            asyncio.create_task(self._pump(server_r, client_w)),
        ]
        self._tasks.update(pumps)
        try:
            await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in pumps:
                task.cancel()
            for writer in (client_w, server_w):
                writer.close()
            self.open -= 1

    @staticmethod
    async def _pump(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError, asyncio.CancelledError):
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()

    async def stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)


class Bus:
    """Telemetry and machine statuses of one site, as a subscriber sees them."""

    def __init__(self, url: str, site: str) -> None:
        self._lock = threading.Lock()
        self.samples: dict[str, list[Sample]] = {}
        self.seqs: dict[str, list[int]] = {}
        self.status: dict[str, LinkStatus] = {}
        self.link = MqttLink(MqttSettings.from_url(url), f"test-{uuid.uuid4().hex[:8]}", on_message=self._on)
        self.link.subscribe([f"shopfloor/v1/{site}/#"], qos=1)
        self.link.start()
        assert self.link.wait_connected(10)

    def _on(self, msg: InboundMessage) -> None:
        topic = Topic.parse(msg.topic)
        with self._lock:
            if topic.kind is TopicKind.TELEMETRY:
                batch = parse_telemetry(topic, msg.payload)
                self.samples.setdefault(topic.machine, []).extend(batch.samples)
                self.seqs.setdefault(topic.machine, []).append(batch.seq)
            elif topic.kind is TopicKind.MACHINE_STATUS:
                self.status[topic.machine] = parse_status(topic, msg.payload).status

    def of(self, machine: str) -> list[Sample]:
        with self._lock:
            return list(self.samples.get(machine, []))


@contextmanager
def listening(url: str, site: str) -> Iterator[Bus]:
    bus = Bus(url, site)
    try:
        yield bus
    finally:
        bus.link.stop()


async def until(condition: Callable[[], bool], what: str, timeout_s: float = 15.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        await asyncio.sleep(0.02)


def gateway_site(example: SiteConfig, port: int) -> SiteConfig:
    """cnc-01 as unit 1 and cnc-02 as unit 2 of one gateway at 127.0.0.1:port."""
    machines = [
        m.model_copy(update={"port": port, "unit_id": unit, "poll_interval_s": 0.1, "timeout_s": 0.5})
        for unit, m in enumerate((example.machine("cnc-01"), example.machine("cnc-02")), start=1)
        if m is not None
    ]
    agents = [AgentSpec(id="edge-1", machines=[m.id for m in machines])]
    info = SiteInfo(id=f"t{uuid.uuid4().hex[:10]}")
    return example.model_copy(update={"site": info, "machines": machines, "agents": agents})


def test_units_behind_one_gateway_share_one_connection(
    mosquitto: Mosquitto, example_site: SiteConfig, tmp_path: Path
) -> None:
    proxy_port, server_port = free_ports(2)
    site = gateway_site(example_site, proxy_port)
    profile = example_site.profile("cnc-mill-v1")
    agent = EdgeAgent(
        site, "edge-1", MqttSettings.from_url(mosquitto.url), tmp_path, options=AgentOptions(heartbeat_s=1)
    )
    assert "shares its connection with cnc-02" in check_report(agent)

    async def main() -> None:
        units = {1: UnitMemory(), 2: UnitMemory()}
        units[1].set(encode(profile, UNIT_1))
        units[2].set(encode(profile, UNIT_2))
        server = RegisterServer("127.0.0.1", server_port, units)
        await server.start()
        proxy = CountingProxy(proxy_port, server_port)
        await proxy.start()
        task = asyncio.create_task(agent.run())
        try:
            with listening(mosquitto.url, site.site.id) as bus:
                # Key frames every second: three each means both units were polled for a few seconds.
                await until(lambda: len(bus.of("cnc-01")) >= 3 and len(bus.of("cnc-02")) >= 3, "3 samples each")
                assert proxy.accepted == 1, f"{proxy.accepted} connections for one gateway"
                assert all(s.values == UNIT_1 for s in bus.of("cnc-01"))
                assert all(s.values == UNIT_2 for s in bus.of("cnc-02"))

                # One unit answering with a Modbus exception is unreachable; the other goes on over the same
                # connection (a well-formed exception reply leaves the stream in step).
                units[2].behaviour.exception_code = 11
                await until(lambda: bus.status.get("cnc-02") is LinkStatus.UNREACHABLE, "cnc-02 unreachable")
                before = len(bus.of("cnc-01"))
                await until(lambda: len(bus.of("cnc-01")) >= before + 2, "cnc-01 still reporting")
                assert bus.status["cnc-01"] is LinkStatus.ONLINE
                units[2].behaviour.exception_code = None
                await until(lambda: bus.status.get("cnc-02") is LinkStatus.ONLINE, "cnc-02 online again")
                await until(lambda: len(bus.of("cnc-02")) >= 4, "cnc-02 reporting again")
                assert proxy.accepted == 1, f"{proxy.accepted} connections for one gateway"
                assert bus.of("cnc-02")[-1].values == UNIT_2
                for machine in ("cnc-01", "cnc-02"):
                    assert bus.seqs[machine] == list(range(len(bus.seqs[machine])))
        finally:
            agent.stop()
            await asyncio.wait_for(task, 15)
            await proxy.stop()
            await server.stop()
        assert agent.stats["polls"] > 40
        assert agent.stats["outages"] == 1

    asyncio.run(main())
