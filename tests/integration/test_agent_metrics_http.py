"""The agent's /metrics and /healthz over real HTTP: scrape and parse, health codes, hostile requests."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import threading
import time
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from edge_agent.metrics import (
    MAX_HEAD_BYTES,
    AgentMetrics,
    LatencyHistogram,
    MetricsServer,
    MetricsSource,
    make_health,
    serve_metrics,
)

pytestmark = pytest.mark.integration

HEAD_TIMEOUT_S = 1.0


@dataclass
class Running:
    """A metrics server on its own event loop thread (as in the agent), and the state it reports."""

    loop: asyncio.AbstractEventLoop
    server: MetricsServer
    stats: Counter[str]
    up: dict[str, bool]
    broker: dict[str, float | None] = field(default_factory=lambda: {"down_s": None})

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def call(self, fn: Any) -> Any:
        """Run fn() on the server's loop (state belongs to the loop, as in the agent) and return its result."""
        done = threading.Event()
        box: list[Any] = []

        def run() -> None:
            box.append(fn())
            done.set()

        self.loop.call_soon_threadsafe(run)
        assert done.wait(5)
        return box[0]


@pytest.fixture
def running() -> Iterator[Running]:
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    stats: Counter[str] = Counter(polls=42, samples_sent=40)
    up = {"cnc-01": True, "cnc-02": False}
    broker: dict[str, float | None] = {"down_s": None}
    lateness = LatencyHistogram((0.01, 0.1))
    lateness.observe(0.002)
    lateness.observe(0.5)
    metrics = AgentMetrics(
        MetricsSource(
            counters=lambda: stats,
            poll_errors=lambda: {"timeout": 3},
            machines_up=lambda: up,
            poll_lateness=lateness,
        ),
        agent_id="edge-1",
        site_id="bdg",
    )
    health = make_health(lambda: broker["down_s"], lambda: up, max_broker_down_s=30)
    server = asyncio.run_coroutine_threadsafe(
        serve_metrics("127.0.0.1", 0, metrics, health, head_timeout_s=HEAD_TIMEOUT_S, max_connections=4), loop
    ).result(5)
    try:
        yield Running(loop, server, stats, up, broker)
    finally:
        asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(5)
        loop.close()


def raw(port: int, data: bytes, *, timeout_s: float = 5.0) -> bytes:
    """Send data on a fresh connection and return everything the server sends until it closes."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as sock:
        if data:
            sock.sendall(data)
        chunks = []
        while chunk := sock.recv(65536):
            chunks.append(chunk)
        return b"".join(chunks)


def test_port_zero_binds_a_free_port(running: Running) -> None:
    assert running.server.port > 0


def test_metrics_scrape_parses_and_follows_the_counters(running: Running) -> None:
    r = httpx.get(f"{running.url}/metrics", timeout=5)
    assert r.status_code == 200
    assert r.headers["content-type"].startswith("text/plain")
    families = {f.name: f for f in text_string_to_metric_families(r.text)}
    assert families["shopfloor_agent_polls"].samples[0].value == 42
    assert families["shopfloor_agent_polls"].type == "counter"
    errors = {s.labels["kind"]: s.value for s in families["shopfloor_agent_poll_errors"].samples}
    assert errors["timeout"] == 3
    machine_up = {s.labels["machine"]: s.value for s in families["shopfloor_agent_machine_up"].samples}
    assert machine_up == {"cnc-01": 1, "cnc-02": 0}
    lateness = {
        s.labels.get("le"): s.value
        for s in families["shopfloor_agent_poll_lateness_seconds"].samples
        if s.name.endswith("_bucket")
    }
    assert lateness == {"0.01": 1, "0.1": 1, "+Inf": 2}

    running.call(lambda: running.stats.update(polls=8))
    again = {f.name: f for f in text_string_to_metric_families(httpx.get(f"{running.url}/metrics").text)}
    assert again["shopfloor_agent_polls"].samples[0].value == 50


def test_head_and_query_string(running: Running) -> None:
    r = httpx.head(f"{running.url}/metrics?x=1", timeout=5)
    assert r.status_code == 200
    assert int(r.headers["content-length"]) > 0
    assert r.content == b""


def test_healthz_ok_then_503_with_reason(running: Running) -> None:
    r = httpx.get(f"{running.url}/healthz", timeout=5)
    assert r.status_code == 200
    assert r.json()["status"] == "ok"
    assert r.json()["machines_online"] == 1

    running.call(lambda: running.broker.update(down_s=45.0))
    r = httpx.get(f"{running.url}/healthz", timeout=5)
    assert r.status_code == 503
    assert r.json()["status"] == "unhealthy"
    assert r.json()["reason"] == "MQTT broker unreachable for 45 s (limit 30 s)"

    running.call(lambda: (running.broker.update(down_s=None), running.up.update({"cnc-01": False})))
    r = httpx.get(f"{running.url}/healthz", timeout=5)
    assert r.status_code == 503
    assert r.json()["reason"] == "all 2 machine(s) unreachable"


def test_unknown_path_404_and_other_methods_405(running: Running) -> None:
    assert httpx.get(f"{running.url}/nope", timeout=5).status_code == 404
    r = httpx.post(f"{running.url}/metrics", content=b"x", timeout=5)
    assert r.status_code == 405
    assert r.headers["allow"] == "GET, HEAD"


@pytest.mark.parametrize(
    "garbage",
    [
        b"\x00\xff\x16\x03\x01garbage\r\n\r\n",
        b"GET\r\n\r\n",
        b"GET /metrics\r\n\r\n",
        b"GET /metrics SPDY/3\r\n\r\n",
        b"GET /metrics HTTP/1.1\r\nno colon here\r\n\r\n",
    ],
)
def test_garbage_request_gets_400(running: Running, garbage: bytes) -> None:
    assert raw(running.server.port, garbage).startswith(b"HTTP/1.1 400 ")
    assert httpx.get(f"{running.url}/healthz", timeout=5).status_code == 200


def test_oversize_header_gets_431(running: Running) -> None:
    big = b"GET /metrics HTTP/1.1\r\nX-Big: " + b"a" * (MAX_HEAD_BYTES * 2) + b"\r\n\r\n"
    assert raw(running.server.port, big).startswith(b"HTTP/1.1 431 ")
    many = b"GET /metrics HTTP/1.1\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(100)) + b"\r\n"
    assert raw(running.server.port, many).startswith(b"HTTP/1.1 431 ")
    assert httpx.get(f"{running.url}/metrics", timeout=5).status_code == 200


def test_half_request_times_out_and_slow_clients_do_not_block_others(running: Running) -> None:
    port = running.server.port
    held = []
    try:
        for _ in range(3):  # three of the four slots, each with half a request line
            sock = socket.create_connection(("127.0.0.1", port), timeout=5)
            sock.sendall(b"GET /metr")
            held.append(sock)
        # Others are still served meanwhile.
        assert httpx.get(f"{running.url}/healthz", timeout=5).status_code == 200
        t0 = time.monotonic()
        answer = b"".join(iter(lambda: held[0].recv(4096), b""))
        waited = time.monotonic() - t0
        assert answer.startswith(b"HTTP/1.1 408 ")
        assert waited < HEAD_TIMEOUT_S + 2
    finally:
        for sock in held:
            sock.close()


def test_dripping_client_is_cut_at_the_head_deadline(running: Running) -> None:
    payload = b"GET /metrics HTTP/1.1\r\nX-Slow: " + b"a" * 1000
    got, closed = b"", False
    with socket.create_connection(("127.0.0.1", running.server.port), timeout=5) as sock:
        sock.settimeout(0.05)
        t0 = time.monotonic()
        for byte in payload:  # a byte every 50 ms: each read is prompt, the head never completes
            if time.monotonic() - t0 > HEAD_TIMEOUT_S + 2:
                break
            try:
                sock.sendall(bytes([byte]))
                chunk = sock.recv(4096)
            except TimeoutError:
                continue
            except OSError:
                closed = True
                break
            if not chunk:
                closed = True
                break
            got += chunk
        elapsed = time.monotonic() - t0
    assert got.startswith(b"HTTP/1.1 408 ") or closed
    assert elapsed < HEAD_TIMEOUT_S + 1


def test_connections_beyond_the_limit_are_shed(running: Running) -> None:
    port = running.server.port
    held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(4)]
    try:
        time.sleep(0.2)
        with contextlib.suppress(ConnectionResetError):  # the fifth is cut at once, unanswered
            assert raw(port, b"GET /healthz HTTP/1.1\r\n\r\n") == b""
    finally:
        for sock in held:
            sock.close()
    time.sleep(0.2)
    assert httpx.get(f"{running.url}/healthz", timeout=5).status_code == 200


def test_close_ends_open_connections() -> None:
    async def scenario() -> None:
        metrics = AgentMetrics(MetricsSource(), agent_id="a", site_id="s", process=False)
        server = await serve_metrics("127.0.0.1", 0, metrics, lambda: (True, {}), head_timeout_s=30)
        reader, writer = await asyncio.open_connection("127.0.0.1", server.port)
        writer.write(b"GET /")
        await writer.drain()
        await asyncio.sleep(0.1)
        await asyncio.wait_for(server.close(), 2)
        assert await asyncio.wait_for(reader.read(), 2) == b""
        writer.close()
        with pytest.raises(OSError):
            await asyncio.open_connection("127.0.0.1", server.port)

    asyncio.run(scenario())


def test_failing_provider_answers_500_and_failing_health_503() -> None:
    def broken() -> dict[str, int]:
        raise RuntimeError("counters gone")

    def sick() -> tuple[bool, dict[str, object]]:
        raise RuntimeError("no state")

    async def scenario() -> None:
        metrics = AgentMetrics(MetricsSource(counters=broken), agent_id="a", site_id="s", process=False)
        server = await serve_metrics("127.0.0.1", 0, metrics, sick)
        try:
            async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{server.port}", timeout=5) as client:
                r = await client.get("/metrics")
                assert r.status_code == 500
                assert "counters gone" in r.text
                r = await client.get("/healthz")
                assert r.status_code == 503
                assert r.json()["status"] == "error"
        finally:
            await server.close()

    asyncio.run(scenario())
