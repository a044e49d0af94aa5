"""The live hub and GET /v1/stream on a real Mosquitto and a real uvicorn (SSE over a socket).

Each test gets its own broker (retained statuses of one test must not leak into the next), an in-memory store and
an API with the hub, and publishes what an agent would: telemetry batches, machine statuses and agent statuses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from fastapi.testclient import TestClient

from api.app import create_app
from api.core.owners import Owners
from api.directory import load_directory
from api.live import LiveHub
from api.routes import stream
from api.server import serve, stop
from launcher.services import Mosquitto, free_port
from shopfloor.calendar import zone_of
from shopfloor.config import ApiKey, Role, SiteConfig
from shopfloor.contracts import LinkStatus, Sample, StatusMessage, TelemetryBatch, Topic
from shopfloor.keys import hash_key
from shopfloor.memstore import MemoryStore
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings

pytestmark = pytest.mark.integration

ADMIN = "sfk_live_admin"
ACME = "sfk_live_acme"
SITE = "bdg"
AGENT = "edge-1"
QUEUE_SIZE = 32  # small, so a client that stops reading overflows soon
RING_SIZE = 40
WAIT_S = 15.0  # liveness bound for anything to arrive (never asserted as a duration)


def _ms() -> int:
    return int(time.time() * 1000)


@dataclass
class Live:
    """A running API with its hub, a publisher on the same broker, and the keys."""

    base: str
    hub: LiveHub
    site: SiteConfig
    publisher: MqttLink
    broker: Mosquitto
    seq: dict[str, int] = field(default_factory=dict)

    def telemetry(self, machine: str, ts: int | None = None, agent: str = AGENT, **values: Any) -> None:
        """Publish one sample of machine as its agent would."""
        self.seq[machine] = self.seq.get(machine, 0) + 1
        batch = TelemetryBatch(
            v=1,
            agent=agent,
            site=SITE,
            machine=machine,
            seq=self.seq[machine],
            samples=[Sample(ts=ts or _ms(), values=values)],
        )
        self.raw(str(Topic.telemetry(SITE, machine)), batch.to_json())

    def machine_status(self, machine: str, status: LinkStatus, **extra: Any) -> None:
        """Publish a retained machine status."""
        msg = StatusMessage(status=status, ts=_ms(), agent=AGENT, **extra)
        self.raw(str(Topic.machine_status(SITE, machine)), msg.to_json(), retain=True)

    def raw(self, topic: str, payload: bytes, retain: bool = False) -> None:
        """Publish bytes as given and wait for the broker's ack."""
        assert self.publisher.publish(topic, payload, qos=1, retain=retain).wait(5), f"publish to {topic} failed"


def _site(example_site: SiteConfig) -> SiteConfig:
    keys = [
        ApiKey(name="admin", sha256=hash_key(ADMIN), role=Role.ADMIN),
        ApiKey(name="acme", sha256=hash_key(ACME), role=Role.TENANT, tenant="acme"),
    ]
    return example_site.model_copy(update={"api_keys": keys})


def _owners_from(app: Any, site: SiteConfig) -> Callable[[], Owners]:
    def owners() -> Owners:
        with app.state.db() as session:
            return load_directory(session, zone_of(site.site.timezone)).owners

    return owners


@pytest.fixture
def live(example_site: SiteConfig, fresh_mosquitto: Mosquitto) -> Iterator[Live]:
    site = _site(example_site)
    store = MemoryStore()
    app = create_app(site, store)
    settings = MqttSettings.from_url(fresh_mosquitto.url)
    hub = LiveHub(
        site,
        store,
        settings,
        owners_provider=_owners_from(app, site),
        queue_size=QUEUE_SIZE,
        ring_size=RING_SIZE,
        tick_s=0.2,
    )
    app.state.live = hub
    stream.include(app)
    hub.start()
    publisher = MqttLink(settings, f"test-publisher-{free_port()}")
    publisher.start()
    assert publisher.wait_connected(10)
    deadline = time.monotonic() + 10
    while not hub.connected and time.monotonic() < deadline:
        time.sleep(0.02)
    assert hub.connected
    port = free_port()
    server, thread = serve(app, "127.0.0.1", port)
    try:
        yield Live(f"http://127.0.0.1:{port}", hub, site, publisher, fresh_mosquitto)
    finally:
        hub.stop()  # ends every stream first: uvicorn waits for open responses when it stops
        stop(server, thread)
        publisher.stop()


# ---- an SSE client ------------------------------------------------------------------------------------------------


@dataclass
class Sse:
    """One parsed server-sent event."""

    event: str | None
    id: int | None
    data: Any
    comment: bool = False


class SseClient:
    """Reads one /v1/stream connection in a task; keeps every byte and every parsed event."""

    def __init__(self, client: httpx.AsyncClient, base: str, key: str, last_event_id: str | None = None) -> None:
        self.client = client
        self.url = f"{base}/v1/stream"
        self.headers = {"Authorization": f"Bearer {key}"}
        if last_event_id is not None:
            self.headers["Last-Event-ID"] = last_event_id
        self.raw = bytearray()
        self.events: list[Sse] = []
        self.retry: str | None = None
        self.status: int | None = None
        self.response_headers: httpx.Headers | None = None
        self._task: asyncio.Task[None] | None = None
        self._opened = asyncio.Event()

    async def __aenter__(self) -> SseClient:
        self._task = asyncio.create_task(self._read())
        await asyncio.wait_for(self._opened.wait(), WAIT_S)
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _read(self) -> None:
        async with self.client.stream("GET", self.url, headers=self.headers, timeout=None) as resp:
            self.status = resp.status_code
            self.response_headers = resp.headers
            self._opened.set()
            buffer = b""
            async for chunk in resp.aiter_raw():
                self.raw += chunk
                buffer += chunk
                while b"\n\n" in buffer:
                    block, buffer = buffer.split(b"\n\n", 1)
                    self._parse(block.decode())

    def _parse(self, block: str) -> None:
        event: str | None = None
        event_id: int | None = None
        data: Any = None
        for line in block.split("\n"):
            if line.startswith(":"):
                self.events.append(Sse(None, None, line, comment=True))
                return
            name, _, value = line.partition(": ")
            if name == "retry":
                self.retry = value
                return
            if name == "event":
                event = value
            elif name == "id":
                assert value.isdigit(), f"id {value!r} is not an integer"
                event_id = int(value)
            elif name == "data":
                data = json.loads(value)
        self.events.append(Sse(event, event_id, data))

    def machine_events(self, machine: str, after: int = 0) -> list[Sse]:
        """The machine events of machine, from index after on."""
        return [e for e in self.events[after:] if e.event == "machine" and e.data["id"] == machine]

    async def wait_for(self, pred: Callable[[Sse], bool], after: int = 0) -> Sse:
        """Wait until an event from index after on satisfies pred; return it."""
        deadline = asyncio.get_running_loop().time() + WAIT_S
        while True:
            for e in self.events[after:]:
                if not e.comment and pred(e):
                    return e
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"no matching event within {WAIT_S} s; got {[x.event for x in self.events]}")
            await asyncio.sleep(0.02)

    def payload_text(self) -> str:
        """Every byte received except the id lines (ids are clock digits, checked to be integers by _parse)."""
        return "\n".join(line for line in self.raw.decode().split("\n") if not line.startswith("id: "))


def _machine(pred_id: str, **fields: Any) -> Callable[[Sse], bool]:
    def pred(e: Sse) -> bool:
        if e.event != "machine" or e.data["id"] != pred_id:
            return False
        return all(e.data.get(k) == v for k, v in fields.items())

    return pred


def _shows(machine: str, **fields: Any) -> Callable[[Sse], bool]:
    """A machine event of machine with fields, or a snapshot in which it has them."""
    one = _machine(machine, **fields)

    def pred(e: Sse) -> bool:
        if e.event == "snapshot":
            return any(one(Sse("machine", e.id, m)) for m in e.data["machines"])
        return one(e)

    return pred


def _client() -> httpx.AsyncClient:
    return httpx.AsyncClient(limits=httpx.Limits(max_connections=300, max_keepalive_connections=0))


async def _publish(live: Live, fn: Callable[[], None]) -> None:
    await asyncio.to_thread(fn)


# ---- tests ----------------------------------------------------------------------------------------------------------


def test_snapshot_first_then_each_change(live: Live) -> None:
    async def run() -> None:
        async with _client() as client, SseClient(client, live.base, ADMIN) as sse:
            first = await sse.wait_for(lambda e: True)
            assert sse.status == 200 and sse.response_headers is not None
            assert sse.response_headers["content-type"].startswith("text/event-stream")
            assert sse.response_headers["cache-control"] == "no-cache"
            assert sse.response_headers["x-accel-buffering"] == "no"
            assert sse.retry == "2000"
            assert first.event == "snapshot" and first.id is not None
            machines = first.data["machines"]
            assert [m["id"] for m in machines] == [m.id for m in live.site.machines]
            # Nothing in the store and nothing published yet: every machine UNKNOWN, never reported.
            assert {(m["state"], m["link"], m["reason"]) for m in machines} == {("UNKNOWN", "stale", "no-data")}
            fields = "id name profile state last_state link last_seen age_s tenant occupied unowned badge job"
            expected = {*fields.split(), "stop_reason", "counters", "power_kw", "reason", "shift"}
            assert set(machines[0]) == expected

            n = len(sse.events)
            await _publish(
                live,
                lambda: live.telemetry(
                    "cnc-01", state="RUNNING", badge=1001, job="ACME-HSG", good_count=7, reject_count=1, power_kw=3.5
                ),
            )
            change = await sse.wait_for(_machine("cnc-01", state="RUNNING"), n)
            assert change.id is not None and change.id > first.id
            d = change.data
            assert (d["link"], d["reason"], d["tenant"], d["badge"], d["job"], d["power_kw"]) == (
                "online",
                None,
                "acme",
                1001,
                "ACME-HSG",
                3.5,
            )
            assert d["counters"] == {"good_count": 7, "reject_count": 1, "energy_kwh": None}
            # The example site works three shifts around the clock: there is always a current one.
            assert d["shift"] is not None and d["shift"]["name"] in {"morning", "afternoon", "night"}

            n = len(sse.events)
            await _publish(live, lambda: live.telemetry("cnc-01", state="STOPPED", stop_reason=4))
            stopped = await sse.wait_for(_machine("cnc-01", state="STOPPED"), n)
            assert stopped.id is not None and change.id < stopped.id
            assert (stopped.data["stop_reason"], stopped.data["badge"]) == (4, 1001)  # the badge holds

    asyncio.run(run())


def test_unreachable_plc_turns_the_machine_unknown_with_its_reason(live: Live) -> None:
    async def run() -> None:
        async with _client() as client, SseClient(client, live.base, ADMIN) as sse:
            await sse.wait_for(lambda e: e.event == "snapshot")
            await _publish(live, lambda: live.machine_status("laser-01", LinkStatus.ONLINE, heartbeat_ms=60_000))
            await _publish(live, lambda: live.telemetry("laser-01", state="RUNNING"))
            await sse.wait_for(_machine("laser-01", state="RUNNING"))
            n = len(sse.events)
            await _publish(live, lambda: live.machine_status("laser-01", LinkStatus.UNREACHABLE, detail="timeout"))
            dark = await sse.wait_for(_machine("laser-01", state="UNKNOWN"), n)
            assert (dark.data["link"], dark.data["reason"], dark.data["last_state"]) == (
                "unreachable",
                "unreachable",
                "RUNNING",
            )
            n = len(sse.events)
            await _publish(live, lambda: live.machine_status("laser-01", LinkStatus.ONLINE))
            await _publish(live, lambda: live.telemetry("laser-01", state="IDLE"))
            back = await sse.wait_for(_machine("laser-01", state="IDLE"), n)
            assert (back.data["link"], back.data["reason"]) == ("online", None)

    asyncio.run(run())


_AGENT_SCRIPT = """
import sys, time
from shopfloor.contracts import LinkStatus, StatusMessage, Topic
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings, Will
topic = str(Topic.agent_status("bdg", "edge-1"))
def status(s):
    return StatusMessage(status=s, ts=int(time.time() * 1000), agent="edge-1").to_json()
link = MqttLink(MqttSettings.from_url(sys.argv[1], keepalive_s=5), "edge-1-test",
                will=Will(topic, status(LinkStatus.OFFLINE)))
link.start()
assert link.wait_connected(10)
assert link.publish(topic, status(LinkStatus.ONLINE), retain=True).wait(5)
print("ready", flush=True)
time.sleep(600)
"""


def test_agent_killed_turns_its_machines_unknown_agent_offline(live: Live) -> None:
    agent = subprocess.Popen(
        [sys.executable, "-c", _AGENT_SCRIPT, live.broker.url], stdout=subprocess.PIPE, text=True, env=os.environ
    )
    try:
        assert agent.stdout is not None and agent.stdout.readline().strip() == "ready"

        async def run() -> None:
            async with _client() as client, SseClient(client, live.base, ADMIN) as sse:
                await sse.wait_for(lambda e: e.event == "snapshot")
                await _publish(live, lambda: live.telemetry("press-01", state="RUNNING"))
                await sse.wait_for(_machine("press-01", state="RUNNING"))
                n = len(sse.events)
                agent.send_signal(signal.SIGKILL)  # no DISCONNECT: the broker publishes the retained will
                dark = await sse.wait_for(_machine("press-01", state="UNKNOWN"), n)
                assert (dark.data["link"], dark.data["reason"]) == ("unreachable", "agent-offline")
                # Every machine of the agent, not only the one that reported.
                await sse.wait_for(_machine("brake-01", reason="agent-offline"), n)

        asyncio.run(run())
    finally:
        agent.kill()
        agent.wait()
    # A hub started after the will learns it from the retained message.
    later = LiveHub(live.site, MemoryStore(), MqttSettings.from_url(live.broker.url), tick_s=0.2)
    later.start()
    try:
        deadline = time.monotonic() + WAIT_S
        while later.snapshot().current["cnc-01"].reason != "agent-offline":
            assert time.monotonic() < deadline, "the retained will did not reach a new hub"
            time.sleep(0.05)
    finally:
        later.stop()


def test_a_tenant_stream_never_carries_another_tenants_data(live: Live) -> None:
    secret_job, secret_count, secret_power = "ZZSECRET", 987_654_321, 4321.125

    async def run() -> None:
        async with (
            _client() as client,
            SseClient(client, live.base, ADMIN) as admin,
            SseClient(client, live.base, ACME) as acme,
        ):
            await acme.wait_for(lambda e: e.event == "snapshot")
            await admin.wait_for(lambda e: e.event == "snapshot")
            # batik (badge 2001) at cnc-02, acme (badge 1001) at cnc-01.
            await _publish(
                live,
                lambda: live.telemetry(
                    "cnc-02",
                    state="RUNNING",
                    badge=2001,
                    job=secret_job,
                    good_count=secret_count,
                    power_kw=secret_power,
                ),
            )
            occupied = await acme.wait_for(_machine("cnc-02", occupied=True))
            after = acme.events.index(occupied) + 1
            # batik's parts: each a new sample, each a change for the admin, none for acme.
            for k in range(1, 6):
                await _publish(live, functools.partial(live.telemetry, "cnc-02", good_count=secret_count + k))
            await admin.wait_for(
                _machine("cnc-02", counters={"good_count": secret_count + 5, "reject_count": None, "energy_kwh": None})
            )
            # acme's own machine after that: the stream is ordered, so anything about cnc-02 came before.
            await _publish(live, lambda: live.telemetry("cnc-01", state="RUNNING", badge=1001, job="ACME-OWN"))
            own = await acme.wait_for(_machine("cnc-01", job="ACME-OWN"))
            assert own.data["tenant"] == "acme" and own.data["shift"] is None
            assert own.data["counters"] == {"good_count": None, "reject_count": None, "energy_kwh": None}
            assert acme.machine_events("cnc-02", after) == [], "acme was told when batik's machine changed"
            other = occupied.data
            assert (other["state"], other["tenant"], other["badge"], other["job"], other["power_kw"]) == (
                None,
                None,
                None,
                None,
                None,
            )
            assert (other["last_seen"], other["age_s"], other["reason"], other["shift"]) == (None, None, None, None)
            text = acme.payload_text()
            for secret in ("batik", "2001", secret_job, str(secret_count), "987654", str(secret_power)):
                assert secret not in text, f"{secret!r} reached acme's stream"
            # The admin's stream has them: the search above can find what it looks for.
            assert secret_job in admin.payload_text() and str(secret_count) in admin.payload_text()

    asyncio.run(run())


def test_last_event_id_replays_what_was_missed(live: Live) -> None:
    async def run() -> None:
        async with _client() as client:
            async with SseClient(client, live.base, ADMIN) as first:
                await first.wait_for(lambda e: e.event == "snapshot")
                await _publish(live, lambda: live.telemetry("cnc-01", state="RUNNING", good_count=1))
                seen = await first.wait_for(_machine("cnc-01", state="RUNNING"))
            assert seen.id is not None
            async with SseClient(client, live.base, ADMIN) as witness:  # tells when the hub has the changes
                await witness.wait_for(lambda e: e.event == "snapshot")
                await _publish(live, lambda: live.telemetry("cnc-01", good_count=2))
                await _publish(live, lambda: live.telemetry("laser-01", state="SETUP"))
                await witness.wait_for(_machine("laser-01", state="SETUP"))
            async with SseClient(client, live.base, ADMIN, last_event_id=str(seen.id)) as again:
                await again.wait_for(_machine("laser-01", state="SETUP"))
                replayed = [e for e in again.events if not e.comment]
                assert [e.event for e in replayed] == ["machine", "machine"], "a resume is not a snapshot"
                assert [e.data["id"] for e in replayed] == ["cnc-01", "laser-01"]
                assert replayed[0].data["counters"]["good_count"] == 2
                assert all(e.id is not None and e.id > seen.id for e in replayed)
            # Ids that do not name a buffered point get a snapshot: garbage, one from the future, one long gone.
            for bad in ("not-a-number", "-5", str(10**19), "1", "9" * 400):
                async with SseClient(client, live.base, ADMIN, last_event_id=bad) as fresh:
                    e = await fresh.wait_for(lambda e: True)
                    assert e.event == "snapshot", bad
            # More changes than the ring holds: the old id is no longer covered.
            for k in range(RING_SIZE + 5):
                await _publish(live, functools.partial(live.telemetry, "press-01", good_count=k + 1))
            deadline = time.monotonic() + WAIT_S
            while live.hub.snapshot().current["press-01"].view.counters.good_count != RING_SIZE + 5:
                assert time.monotonic() < deadline
                await asyncio.sleep(0.02)
            async with SseClient(client, live.base, ADMIN, last_event_id=str(seen.id)) as late:
                e = await late.wait_for(lambda e: True)
                assert e.event == "snapshot"

    asyncio.run(run())


def test_a_client_that_never_reads_does_not_hold_up_the_others(live: Live) -> None:
    port = int(live.base.rsplit(":", 1)[1])
    slow = socket.socket()
    slow.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # before connect: a small window
    slow.connect(("127.0.0.1", port))
    slow.sendall(f"GET /v1/stream HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ADMIN}\r\n\r\n".encode())
    try:

        async def run() -> None:
            deadline = time.monotonic() + WAIT_S
            while live.hub.stats()["subscribers"] < 1:
                assert time.monotonic() < deadline, "the slow client never subscribed"
                await asyncio.sleep(0.02)
            async with _client() as client, SseClient(client, live.base, ADMIN) as fast:
                await fast.wait_for(lambda e: e.event == "snapshot")
                # Until the slow client's socket buffers are full and its queue overflowed (kernel buffers on
                # loopback grow to a few MB: thousands of events), bounded so a hub that waits for it fails here.
                sent = 0
                while live.hub.stats()["overflows"] == 0:
                    assert sent < 40_000, "the slow client never overflowed"

                    def burst(start: int = sent) -> None:
                        for k in range(start, start + 500):
                            live.telemetry(live.site.machines[k % 5].id, good_count=k + 1, job="J" * 8)

                    await _publish(live, burst)
                    sent += 500
                last = live.site.machines[(sent - 1) % 5].id
                counters = {"good_count": sent, "reject_count": None, "energy_kwh": None}
                # The reading client has every change: event by event, or (where a burst outran its small queue)
                # through a fresh snapshot; either way the newest state, while the other one is stuck.
                await fast.wait_for(_shows(last, counters=counters))

        asyncio.run(run())
    finally:
        slow.close()


def test_hostile_messages_never_reach_a_stream_nor_stop_the_hub(live: Live) -> None:
    t = str(Topic.telemetry(SITE, "cnc-01"))
    now = _ms()

    def batch(**over: Any) -> bytes:
        body: dict[str, Any] = {
            "v": 1,
            "agent": AGENT,
            "site": SITE,
            "machine": "cnc-01",
            "seq": 99,
            "samples": [{"ts": now, "values": {"state": "RUNNING", "job": "EVIL"}}],
        }
        body.update(over)
        return json.dumps(body).encode()

    hostile: list[tuple[str, bytes]] = [
        (t, b"\xff\xfe garbage"),
        (t, b"{" * 100_000),  # nested too deeply
        (t, b'{"v": 1, "pad": "' + b"x" * 300_000 + b'"}'),  # oversize
        (t, batch(site="other")),  # payload of another site on our topic
        (t, batch(machine="cnc-02")),
        (t, batch(samples=[{"ts": now, "values": {"state": 42}}])),
        (t, batch(samples=[{"ts": now, "values": {"badge": "EVIL"}}])),
        (t, batch(samples=[{"ts": now, "values": {"job": "EVIL\n<script>"}}])),
        (t, batch(samples=[{"ts": now, "values": {"evil_signal": 1}}])),  # not in the profile
        (t, batch(samples=[{"ts": now + 3_600_000, "values": {"job": "EVIL"}}])),  # an hour ahead
        (t, batch(agent="edge-9")),  # not the agent serving cnc-01
        (t, batch(v=2)),
        (t, b"[]"),
        (str(Topic.telemetry(SITE, "nosuch")), batch(machine="nosuch")),
        (str(Topic.telemetry("other", "cnc-01")), batch(site="other")),  # not subscribed, not ours either
        (str(Topic.machine_status(SITE, "cnc-01")), b'{"v":1,"status":"EVIL","ts":1,"agent":"edge-1"}'),
        (
            str(Topic.agent_status(SITE, "edge-9")),
            StatusMessage(status=LinkStatus.OFFLINE, ts=now, agent="edge-9").to_json(),
        ),
        (
            str(Topic.agent_status(SITE, AGENT)),
            StatusMessage(status=LinkStatus.OFFLINE, ts=now, agent="edge-2").to_json(),
        ),
        (f"shopfloor/v1/{SITE}/cnc-01/telemetry/extra", batch()),
    ]

    async def run() -> None:
        async with _client() as client, SseClient(client, live.base, ADMIN) as sse:
            await sse.wait_for(lambda e: e.event == "snapshot")
            n = len(sse.events)
            for topic, payload in hostile:
                await _publish(live, functools.partial(live.raw, topic, payload))
            await _publish(live, lambda: live.telemetry("cnc-01", state="IDLE", job="GOOD"))
            good = await sse.wait_for(_machine("cnc-01", job="GOOD"), n)
            later = [e for e in sse.events[n:] if not e.comment]
            assert later == [good], "a hostile message made a change"
            assert "EVIL" not in sse.payload_text() and "edge-9" not in sse.payload_text()
            invalid = live.hub.stats()["invalid"]
            # Each kind the checks name (counted, not folded); the other-site topic is not even subscribed.
            for kind in (
                "malformed-json",
                "oversize",
                "topic-mismatch",
                "invalid-payload",
                "unknown-signal",
                "too-new",
                "agent-not-serving",
                "unknown-version",
                "unknown-machine",
                "unknown-agent",
            ):
                assert invalid.get(kind, 0) >= 1, (kind, invalid)
            assert sum(invalid.values()) == len(hostile) - 2  # all but the unsubscribed topic and the extra level
            assert live.hub.connected
            # What no subscription delivers, handed to the hub directly: refused all the same, never raised.
            live.hub.feed(InboundMessage("shopfloor/v1/bdg/cnc-01/telemetry/extra", batch(), 1, False, 1))
            live.hub.feed(InboundMessage(str(Topic.commits(SITE, AGENT)), b"{}", 1, False, 2))
            assert live.hub.stats()["invalid"]["bad-topic"] == 2

    asyncio.run(run())


def test_a_hundred_boards_share_the_event_loop_not_threads(live: Live) -> None:
    boards = 100

    async def run() -> None:
        async with _client() as client:
            # One request first, so the server's worker pool has started before counting.
            async with SseClient(client, live.base, ADMIN) as one:
                await one.wait_for(lambda e: e.event == "snapshot")
            before = threading.active_count()
            clients = [SseClient(client, live.base, ADMIN if k % 2 else ACME) for k in range(boards)]
            await asyncio.gather(*(c.__aenter__() for c in clients))
            try:
                await asyncio.gather(*(c.wait_for(lambda e: e.event == "snapshot") for c in clients))
                assert live.hub.stats()["subscribers"] == boards
                await _publish(live, lambda: live.telemetry("cnc-01", state="RUNNING", badge=1001))
                await asyncio.gather(*(c.wait_for(_machine("cnc-01", state="RUNNING")) for c in clients))
                during = threading.active_count()
                # The key check (a sync dependency) borrows threads from anyio's pool of 40 while connections
                # open; a thread per board would be 100 more.
                assert during - before <= 40, (before, during)
            finally:
                await asyncio.gather(*(c.__aexit__(None, None, None) for c in clients))
            deadline = time.monotonic() + WAIT_S
            while live.hub.stats()["subscribers"] != 0:
                assert time.monotonic() < deadline, "closed streams were not unsubscribed"
                await asyncio.sleep(0.05)

    asyncio.run(run())


def test_stream_needs_a_key_and_a_hub(example_site: SiteConfig) -> None:
    site = _site(example_site)
    app = create_app(site, MemoryStore())
    stream.include(app)
    with TestClient(app) as client:
        assert client.get("/v1/stream").status_code == 401
        resp = client.get("/v1/stream", headers={"Authorization": f"Bearer {ADMIN}"})
        assert resp.status_code == 503 and "live board" in resp.json()["detail"]
