"""Units behind one Modbus TCP gateway share one connection; a dead endpoint never holds up another one.

A raw TCP proxy in front of a real RegisterServer counts connections and stamps every request and reply, so
the tests see what went over the wire rather than what the client says it did.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Coroutine
from dataclasses import dataclass, field
from typing import Any

import pytest

from launcher.services import free_port
from shopfloor.codec import ReadBlock
from shopfloor.config import Table
from shopfloor.modbus import EndpointPool, PlcError, PlcReader, RegisterServer, UnitMemory

pytestmark = pytest.mark.integration

HOLD = ReadBlock(Table.HOLDING, 0, 4)
INP = ReadBlock(Table.INPUT, 10, 2)


@dataclass
class Event:
    """One frame seen by the proxy: a request from the client or a reply from the server, at loop time t."""

    kind: str  # "request" | "reply"
    t: float
    tid: int
    unit: int


@dataclass
class Proxy:
    """A TCP proxy to a Modbus server that logs every frame in both directions."""

    target_port: int
    port: int = 0
    connections: int = 0
    events: list[Event] = field(default_factory=list)
    _server: asyncio.Server | None = None

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        self.connections += 1
        server_r, server_w = await asyncio.open_connection("127.0.0.1", self.target_port)
        pumps = [
            asyncio.create_task(self._pump("request", client_r, server_w)),
            asyncio.create_task(self._pump("reply", server_r, client_w)),
        ]
        await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
        for task in pumps:
            task.cancel()
        client_w.close()
        server_w.close()

    async def _pump(self, kind: str, src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        loop = asyncio.get_running_loop()
        try:
            while True:
                header = await src.readexactly(7)
                tid, _, length, unit = struct.unpack(">HHHB", header)
                body = await src.readexactly(length - 1)
                self.events.append(Event(kind, loop.time(), tid, unit))
                dst.write(header + body)
                await dst.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass


def units() -> dict[int, UnitMemory]:
    one, two = UnitMemory(), UnitMemory()
    one.set({(Table.HOLDING, 0): 11, (Table.HOLDING, 3): 13, (Table.INPUT, 11): 1})
    two.set({(Table.HOLDING, 0): 21, (Table.HOLDING, 3): 23, (Table.INPUT, 11): 2})
    return {1: one, 2: two}


WANT = {
    1: {HOLD: [11, 0, 0, 13], INP: [0, 1]},
    2: {HOLD: [21, 0, 0, 23], INP: [0, 2]},
}


async def gateway(memory: dict[int, UnitMemory]) -> tuple[RegisterServer, Proxy]:
    server = RegisterServer("127.0.0.1", free_port(), memory)
    await server.start()
    proxy = Proxy(server.port)
    await proxy.start()
    return server, proxy


def run(body: Coroutine[Any, Any, None]) -> None:
    asyncio.run(asyncio.wait_for(body, 30))


def test_units_behind_one_gateway_share_one_connection_one_request_at_a_time() -> None:
    async def body() -> None:
        server, proxy = await gateway(units())
        pool = EndpointPool()
        readers = {u: PlcReader(pool.get("127.0.0.1", proxy.port), u, timeout_s=1.0) for u in (1, 2)}
        assert readers[1].endpoint is readers[2].endpoint is pool.get("127.0.0.1", proxy.port)
        try:

            async def poll(unit: int) -> None:
                for _ in range(25):
                    assert await readers[unit].read([HOLD, INP]) == WANT[unit]

            await asyncio.gather(poll(1), poll(2))
        finally:
            pool.close()
            await proxy.stop()
            await server.stop()
        assert proxy.connections == 1
        requests = [e for e in proxy.events if e.kind == "request"]
        assert len(requests) == 2 * 25 * 2
        assert {e.unit for e in requests} == {1, 2}
        # Serialised: every request is followed by its reply before the next request goes out.
        kinds = [e.kind for e in proxy.events]
        assert kinds == ["request", "reply"] * len(requests)
        assert all(q.tid == a.tid for q, a in zip(proxy.events[::2], proxy.events[1::2], strict=True))

    run(body())


def test_request_delay_is_kept_between_a_reply_and_the_next_request() -> None:
    delay = 0.03

    async def body() -> None:
        server, proxy = await gateway(units())
        pool = EndpointPool()
        endpoint = pool.get("127.0.0.1", proxy.port, request_delay_s=delay)
        readers = [PlcReader(endpoint, u, timeout_s=1.0) for u in (1, 2)]
        try:
            await asyncio.gather(*(r.read([HOLD, INP]) for r in readers for _ in range(3)))
        finally:
            pool.close()
            await proxy.stop()
            await server.stop()
        events = proxy.events
        assert len(events) == 2 * 2 * 3 * 2
        gaps = [nxt.t - rep.t for rep, nxt in zip(events[1::2], events[2::2], strict=False)]
        assert len(gaps) == 11
        # The proxy stamps a reply before the client can see it, and a request after the client sent it.
        assert min(gaps) >= delay - 1e-6, gaps

    run(body())


def test_a_unit_that_times_out_on_a_gateway_costs_only_its_own_timeout() -> None:
    async def body() -> None:
        memory = units()
        memory[2].behaviour.delay_s = 60  # unit 2 never answers; unit 1 does
        server, proxy = await gateway(memory)
        pool = EndpointPool()
        endpoint = pool.get("127.0.0.1", proxy.port)
        silent = PlcReader(endpoint, 2, timeout_s=0.4)
        healthy = PlcReader(endpoint, 1, timeout_s=0.1)
        try:
            silent_read = asyncio.create_task(silent.read([HOLD]))
            await asyncio.sleep(0)  # the silent unit's request goes out first
            # Waiting for the shared connection is not this unit's timeout: it is read once the other gave up.
            assert await healthy.read([HOLD, INP]) == WANT[1]
            assert silent_read.done()
            with pytest.raises(PlcError, match=r"^holding registers 0\.\.3: no reply within 0\.4 s$"):
                await silent_read
            assert await healthy.read([HOLD, INP]) == WANT[1]
        finally:
            pool.close()
            await proxy.stop()
            await server.stop()
        assert proxy.connections == 2  # the connection was dropped after the timeout and opened again

    run(body())


async def silent_server() -> asyncio.Server:
    """A TCP server that accepts connections and never answers (a PLC that hangs)."""

    async def hang(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.read()  # until the client goes away
        writer.close()

    return await asyncio.start_server(hang, "127.0.0.1", 0)


def test_a_dead_endpoint_never_delays_reads_on_another_endpoint() -> None:
    async def body() -> None:
        server, proxy = await gateway(units())
        hung = await silent_server()
        pool = EndpointPool()
        healthy = PlcReader(pool.get("127.0.0.1", proxy.port), 1, timeout_s=1.0)
        dead = PlcReader(pool.get("127.0.0.1", hung.sockets[0].getsockname()[1]), 1, timeout_s=0.5)
        done = 0
        try:
            dead_read = asyncio.create_task(dead.read([HOLD]))
            while not dead_read.done():
                assert await healthy.read([HOLD, INP]) == WANT[1]
                done += 1
            with pytest.raises(PlcError, match=r"no reply within 0\.5 s"):
                await dead_read
        finally:
            pool.close()
            hung.close()
            await proxy.stop()
            await server.stop()
        # The healthy endpoint kept going all the while the dead one waited out its timeout.
        assert done >= 20, done

    run(body())


def test_a_refused_connection_fails_at_once() -> None:
    async def body() -> None:
        hung = await silent_server()
        closed_port = free_port()
        refused = PlcReader("127.0.0.1", closed_port, 1, timeout_s=5.0)
        hanging = PlcReader("127.0.0.1", hung.sockets[0].getsockname()[1], 1, timeout_s=0.3)
        try:
            refusing = asyncio.create_task(refused.read([HOLD]))
            timing_out = asyncio.create_task(hanging.read([HOLD]))
            first, _ = await asyncio.wait([refusing, timing_out], return_when=asyncio.FIRST_COMPLETED)
            assert refusing in first  # refused before a 0.3 s timeout elapsed elsewhere, though its own is 5 s
            reason = rf"^cannot connect to 127\.0\.0\.1:{closed_port} \(connection refused\)$"
            with pytest.raises(PlcError, match=reason):
                await refusing
            with pytest.raises(PlcError, match="no reply"):
                await timing_out
        finally:
            refused.close()
            hanging.close()
            hung.close()

    run(body())


def test_coils_and_discrete_inputs_are_read_from_the_register_server() -> None:
    async def body() -> None:
        mem = UnitMemory()
        mem.set({(Table.COIL, 0): 1, (Table.COIL, 9): 1, (Table.DISCRETE, 3): 1, (Table.DISCRETE, 16): 5})
        mem.set({(Table.HOLDING, 0): 0x1234})
        server = RegisterServer("127.0.0.1", free_port(), {1: mem})
        await server.start()
        pool = EndpointPool()
        reader = PlcReader(pool.get("127.0.0.1", server.port), 1, timeout_s=1.0)
        coils, discrete, hold = ReadBlock(Table.COIL, 0, 10), ReadBlock(Table.DISCRETE, 2, 15), HOLD
        try:
            got = await reader.read([coils, discrete, hold])
            mem.set({(Table.COIL, 9): 0})
            again = await reader.read([coils])
        finally:
            pool.close()
            await server.stop()
        assert got == {
            coils: [1, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            discrete: [0, 1, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1],
            hold: [0x1234, 0, 0, 0],
        }
        assert again == {coils: [1, 0, 0, 0, 0, 0, 0, 0, 0, 0]}
        assert mem.discrete[16] == 1  # any non-zero value sets a bit

    run(body())
