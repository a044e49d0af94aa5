"""The one module that speaks Modbus: a strict Modbus TCP reader, and a register server (pymodbus, pinned 3.11.x).

The edge agent reads through PlcReader; the simulator serves through RegisterServer. Both speak plain
Python (ReadBlock, dict of registers or bits), so nothing else depends on Modbus framing or pymodbus' API.

The reader is a small client of its own over an asyncio Protocol rather than pymodbus' client: pymodbus
accepts a reply with more registers than asked, or with another function code, as data; skips a reply with a
wrong transaction or unit id and then waits out the timeout; takes about a second to report a refused
connection; and costs several times the CPU per read. Here every reply is checked (transaction id, protocol,
unit id, function code, byte count) and any mismatch is a failed read, after which the connection is dropped
so that a stream out of step can never hand a late reply to the next request.

Several units behind one Modbus TCP gateway share one ModbusEndpoint (one connection, requests one at a
time, an optional pause between them); EndpointPool hands out one endpoint per host:port.
"""

from __future__ import annotations

import asyncio
import logging
import struct
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import overload

from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.datastore.context import ModbusBaseDeviceContext
from pymodbus.server import ModbusTcpServer

from shopfloor.codec import ReadBlock
from shopfloor.config import Table

log = logging.getLogger(__name__)
# pymodbus logs every failed request at ERROR; our callers log once per outage instead.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)

MAX_READ_BITS = 2000  # Modbus limit for one read of coils / discrete inputs
MAX_READ_WORDS = 125  # Modbus limit for one read of holding / input registers
_MAX_MBAP_LENGTH = 254  # unit id + a PDU of at most 253 bytes
_MBAP = struct.Struct(">HHHB")  # transaction id, protocol id (0), length (unit id + PDU), unit id
_REQUEST = struct.Struct(">BHH")  # function code, start, count


class PlcError(Exception):
    """A PLC did not answer a read, or answered with an error or with a reply that does not fit the request.

    ``kind`` groups failures for counting: connect, timeout, exception, bad-reply, io.
    """

    def __init__(self, message: str, kind: str = "io") -> None:
        super().__init__(message)
        self.kind = kind


class _BadReply(Exception):
    """The bytes on the connection are not the reply to the request in flight."""


class _ExceptionReply(Exception):
    """The PLC answered the request in flight with a Modbus exception (a well-formed reply)."""


@dataclass(frozen=True, slots=True)
class _Plan:
    """Everything about one block's request that does not change between polls."""

    function: int
    pdu: bytes
    byte_count: int
    count: int
    bits: bool
    what: str
    words: struct.Struct | None


# (function code, what the table's items are called, whether items are bits)
_TABLES: dict[Table, tuple[int, str, bool]] = {
    Table.COIL: (1, "coils", True),
    Table.DISCRETE: (2, "discrete inputs", True),
    Table.HOLDING: (3, "holding registers", False),
    Table.INPUT: (4, "input registers", False),
}
# byte -> its 8 bits, least significant first (the order Modbus packs coils in)
_BYTE_BITS = [[(b >> i) & 1 for i in range(8)] for b in range(256)]


def describe_block(block: ReadBlock) -> str:
    """How read failures name a block: 'holding registers 0..21', 'coils 0..9'."""
    return f"{_TABLES[block.table][1]} {block.start}..{block.end - 1}"


def _plan(block: ReadBlock) -> _Plan:
    try:
        function, noun, bits = _TABLES[block.table]
    except KeyError:
        raise ValueError(f"cannot read from Modbus table {block.table!r}") from None
    what = f"{noun} {block.start}..{block.end - 1}"
    limit = MAX_READ_BITS if bits else MAX_READ_WORDS
    if not 1 <= block.count <= limit or block.start < 0 or block.end > 0x10000:
        raise ValueError(f"{what}: a Modbus read takes 1..{limit} {noun} within addresses 0..65535")
    byte_count = (block.count + 7) // 8 if bits else 2 * block.count
    words = None if bits else struct.Struct(f">{block.count}H")
    pdu = _REQUEST.pack(function, block.start, block.count)
    return _Plan(function, pdu, byte_count, block.count, bits, what, words)


def _expire(waiter: asyncio.Future[bytes]) -> None:
    if not waiter.done():
        waiter.set_exception(TimeoutError())


class _Connection(asyncio.Protocol):
    """One TCP connection carrying at most one request at a time; frames the reply by its MBAP length."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = False
        self._buf = b""
        self._waiter: asyncio.Future[bytes] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport, self.open = transport, True

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            partial = f" after {len(self._buf)} bytes of a reply" if self._buf else ""
            reason = f" ({exc})" if exc is not None else ""
            waiter.set_exception(_BadReply(f"connection closed by the PLC{partial}{reason}"))

    def data_received(self, data: bytes) -> None:
        buf = self._buf + data if self._buf else data
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for: the stream is out of step; start afresh with the next request.
            self.close()
            return
        if len(buf) >= 6:
            if buf[2] or buf[3]:
                waiter.set_exception(_BadReply(f"reply is not Modbus TCP (protocol id {buf[2] << 8 | buf[3]})"))
                return
            length = buf[4] << 8 | buf[5]
            if not 3 <= length <= _MAX_MBAP_LENGTH:
                waiter.set_exception(_BadReply(f"reply declares a length of {length} (valid: 3..254)"))
                return
            total = 6 + length
            if len(buf) >= total:
                self._buf = b""
                if len(buf) > total:
                    waiter.set_exception(_BadReply(f"reply is followed by {len(buf) - total} unexpected bytes"))
                else:
                    waiter.set_result(buf)
                return
        self._buf = buf

    async def exchange(self, request: bytes, timeout_s: float) -> bytes:
        """Send one request and return the one frame that answers it."""
        assert self.transport is not None
        loop = asyncio.get_running_loop()
        waiter: asyncio.Future[bytes] = loop.create_future()
        self._waiter, self._buf = waiter, b""
        # A timer handle, not asyncio.wait_for: wait_for wraps every read in a task and costs more than the I/O.
        timer = loop.call_later(timeout_s, _expire, waiter)
        try:
            self.transport.write(request)
            return await waiter
        finally:
            timer.cancel()
            self._waiter = None

    def close(self) -> None:
        self.open = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(_BadReply("connection closed by this reader"))
        if self.transport is not None:
            self.transport.close()


class ModbusEndpoint:
    """One Modbus TCP connection to host:port (a PLC, or a gateway to several units), one request at a time.

    The connection opens at the first request and again at the first request after any failure; a refused
    connection fails at once. With request_delay_s, at least that long passes between the end of one exchange
    and the start of the next (slow serial gateways need it).
    """

    def __init__(self, host: str, port: int, request_delay_s: float = 0.0) -> None:
        if request_delay_s < 0:
            raise ValueError(f"request_delay_s {request_delay_s!r} must not be negative")
        self.host, self.port, self.request_delay_s = host, port, request_delay_s
        self.connects = 0  # connections opened so far
        self._conn: _Connection | None = None
        self._lock = asyncio.Lock()
        self._tid = 0
        self._last_done = float("-inf")
        self._plans: dict[ReadBlock, _Plan] = {}

    @property
    def connected(self) -> bool:
        """Whether a connection is open now."""
        return self._conn is not None and self._conn.open

    async def read_block(self, unit_id: int, block: ReadBlock, timeout_s: float) -> list[int]:
        """Read one block (registers, or bits as 0/1) from unit_id; raise PlcError if anything is amiss."""
        plan = self._plans.get(block)
        if plan is None:
            plan = self._plans[block] = _plan(block)
        async with self._lock:
            if self.request_delay_s > 0:
                loop = asyncio.get_running_loop()
                # A loop, as a timer may fire a hair early.
                while (pause := self._last_done + self.request_delay_s - loop.time()) > 0:
                    await asyncio.sleep(pause)
            try:
                return await self._read(unit_id, plan, timeout_s)
            finally:
                if self.request_delay_s > 0:
                    self._last_done = asyncio.get_running_loop().time()

    async def _read(self, unit_id: int, plan: _Plan, timeout_s: float) -> list[int]:
        conn = self._conn
        if conn is None or not conn.open:
            conn = await self._connect(timeout_s)
        self._tid = tid = (self._tid + 1) & 0xFFFF
        try:
            frame = await conn.exchange(_MBAP.pack(tid, 0, len(plan.pdu) + 1, unit_id) + plan.pdu, timeout_s)
            return self._check(frame, tid, unit_id, plan)
        except _ExceptionReply as exc:
            # A well-formed answer: the stream is in step, so the connection stays.
            raise PlcError(f"{plan.what}: PLC replied with Modbus exception {exc}", "exception") from None
        except TimeoutError as exc:
            self._drop()
            raise PlcError(f"{plan.what}: no reply within {timeout_s} s", "timeout") from exc
        except _BadReply as exc:
            self._drop()
            raise PlcError(f"{plan.what}: {exc}", "bad-reply") from exc
        except OSError as exc:
            self._drop()
            raise PlcError(f"{plan.what}: {exc.strerror or exc}") from exc
        except BaseException:
            # Cancelled mid-request: its reply may still come, so this connection cannot carry the next one.
            self._drop()
            raise

    @staticmethod
    def _check(frame: bytes, tid: int, unit_id: int, plan: _Plan) -> list[int]:
        got_tid = frame[0] << 8 | frame[1]
        if got_tid != tid:
            raise _BadReply(f"reply has transaction id {got_tid}, expected {tid}")
        if frame[6] != unit_id:
            raise _BadReply(f"reply is from unit {frame[6]}, expected unit {unit_id}")
        function = frame[7]
        if function != plan.function:
            if function == plan.function | 0x80 and len(frame) == 9:
                raise _ExceptionReply(frame[8])
            raise _BadReply(f"reply has function code {function}, expected {plan.function}")
        byte_count = frame[8] if len(frame) > 8 else -1
        if byte_count != len(frame) - 9:
            raise _BadReply(f"reply's byte count {byte_count} does not match its {len(frame) - 9} data bytes")
        if byte_count != plan.byte_count:
            if plan.bits:
                raise _BadReply(
                    f"reply has {byte_count} data bytes, expected {plan.byte_count} for {plan.count} bits"
                )
            if byte_count % 2:
                raise _BadReply(f"reply has {byte_count} data bytes, expected {plan.byte_count}")
            raise _BadReply(f"reply has {byte_count // 2} registers, expected {plan.count}")
        if plan.words is not None:
            return list(plan.words.unpack_from(frame, 9))
        bits: list[int] = []
        for b in frame[9:]:
            bits += _BYTE_BITS[b]
        del bits[plan.count :]
        return bits

    async def _connect(self, timeout_s: float) -> _Connection:
        loop = asyncio.get_running_loop()
        where = f"{self.host}:{self.port}"
        try:
            async with asyncio.timeout(timeout_s):
                _, conn = await loop.create_connection(_Connection, self.host, self.port)
        except TimeoutError as exc:
            raise PlcError(f"cannot connect to {where} (no answer within {timeout_s} s)", "connect") from exc
        except ConnectionRefusedError as exc:
            raise PlcError(f"cannot connect to {where} (connection refused)", "connect") from exc
        except OSError as exc:
            raise PlcError(f"cannot connect to {where} ({exc.strerror or exc})", "connect") from exc
        self._conn = conn
        self.connects += 1
        return conn

    def _drop(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None

    def close(self) -> None:
        """Drop the connection (the next request opens a new one)."""
        self._drop()


class EndpointPool:
    """One ModbusEndpoint per host:port, so units behind one gateway share its connection."""

    def __init__(self) -> None:
        self._endpoints: dict[tuple[str, int], ModbusEndpoint] = {}

    def get(self, host: str, port: int, request_delay_s: float = 0.0) -> ModbusEndpoint:
        """Return the endpoint for host:port, made on first use; the longest request delay asked for wins."""
        endpoint = self._endpoints.get((host, port))
        if endpoint is None:
            endpoint = self._endpoints[(host, port)] = ModbusEndpoint(host, port, request_delay_s)
        elif request_delay_s > endpoint.request_delay_s:
            endpoint.request_delay_s = request_delay_s
        return endpoint

    def close(self) -> None:
        """Drop every endpoint's connection and forget them."""
        for endpoint in self._endpoints.values():
            endpoint.close()
        self._endpoints.clear()


class PlcReader:
    """Reads blocks of registers or bits from one PLC unit over Modbus TCP.

    PlcReader(endpoint, unit_id, timeout_s) reads through a (shared) endpoint, which the caller closes;
    PlcReader(host, port, unit_id, timeout_s) makes a private endpoint, which close() drops.
    """

    @overload
    def __init__(self, endpoint: ModbusEndpoint, unit_id: int, timeout_s: float, /) -> None: ...

    @overload
    def __init__(self, endpoint: ModbusEndpoint, unit_id: int, /, *, timeout_s: float) -> None: ...

    @overload
    def __init__(self, endpoint: str, port: int, unit_id: int, /, timeout_s: float) -> None: ...

    def __init__(
        self, endpoint: ModbusEndpoint | str, a: int, b: float | None = None, /, timeout_s: float | None = None
    ) -> None:
        if isinstance(endpoint, ModbusEndpoint):
            unit_id, timeout = a, b if timeout_s is None else timeout_s
            self.endpoint, self._owns_endpoint = endpoint, False
        else:
            unit_id, timeout = int(b) if b is not None else -1, timeout_s
            self.endpoint, self._owns_endpoint = ModbusEndpoint(endpoint, a), True
        if timeout is None or not timeout > 0:
            raise ValueError(f"timeout_s {timeout!r} must be above 0")
        if not 0 <= unit_id <= 255:
            raise ValueError(f"unit id {unit_id!r} must be 0..255")
        self.host, self.port = self.endpoint.host, self.endpoint.port
        self.unit_id, self.timeout_s = unit_id, timeout

    async def read(self, blocks: list[ReadBlock]) -> dict[ReadBlock, list[int]]:
        """Read every block (exactly count values each; bits as 0/1); raise PlcError naming the block that failed."""
        endpoint, unit_id, timeout_s = self.endpoint, self.unit_id, self.timeout_s
        return {block: await endpoint.read_block(unit_id, block, timeout_s) for block in blocks}

    def close(self) -> None:
        """Drop the connection if this reader owns its endpoint (a shared one belongs to its pool)."""
        if self._owns_endpoint:
            self.endpoint.close()


@dataclass
class UnitBehaviour:
    """Faults a served unit can show, set by the simulator at run time."""

    exception_code: int | None = None  # reply to reads with this Modbus exception code
    delay_s: float = 0.0  # answer this late


@dataclass
class UnitMemory:
    """Registers and bits of one served unit, sparse, with behaviour switches."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    coils: dict[int, int] = field(default_factory=dict)
    discrete: dict[int, int] = field(default_factory=dict)
    behaviour: UnitBehaviour = field(default_factory=UnitBehaviour)
    # Called before a read is served, so a simulator can refresh registers lazily for the current time.
    on_read: Callable[[], None] | None = None

    def set(self, values: dict[tuple[Table, int], int]) -> None:
        """Set registers (16-bit) and bits (0/1, anything non-zero is 1) from a (table, address) -> value map."""
        for (table, address), value in values.items():
            if table is Table.HOLDING:
                self.holding[address] = value & 0xFFFF
            elif table is Table.INPUT:
                self.input[address] = value & 0xFFFF
            elif table is Table.COIL:
                self.coils[address] = 1 if value else 0
            elif table is Table.DISCRETE:
                self.discrete[address] = 1 if value else 0
            else:
                raise ValueError(f"unknown Modbus table {table!r}")


class _UnitContext(ModbusBaseDeviceContext):
    """pymodbus device context backed by a UnitMemory, with fault injection."""

    def __init__(self, memory: UnitMemory) -> None:
        self.memory = memory

    def reset(self) -> None:
        """Clear all registers and bits."""
        for table in (self.memory.holding, self.memory.input, self.memory.coils, self.memory.discrete):
            table.clear()

    async def async_getValues(
        self, func_code: int, address: int, count: int = 1
    ) -> list[int] | list[bool] | ExcCodes:
        behaviour = self.memory.behaviour
        if behaviour.delay_s > 0:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.exception_code is not None:
            return ExcCodes(behaviour.exception_code)
        if self.memory.on_read is not None:
            self.memory.on_read()
        return self.getValues(func_code, address, count)

    def getValues(self, func_code: int, address: int, count: int = 1) -> list[int] | list[bool] | ExcCodes:
        if func_code in (3, 6, 16, 22, 23):
            regs = self.memory.holding
        elif func_code == 4:
            regs = self.memory.input
        elif func_code in (1, 2):
            bits = self.memory.coils if func_code == 1 else self.memory.discrete
            return [bool(bits.get(a, 0)) for a in range(address, address + count)]
        else:
            return ExcCodes.ILLEGAL_FUNCTION
        return [regs.get(a, 0) for a in range(address, address + count)]

    def setValues(self, func_code: int, address: int, values: list[int] | list[bool]) -> ExcCodes | None:
        # A monitored machine's PLC is read-only for us.
        return ExcCodes.ILLEGAL_FUNCTION


class RegisterServer:
    """A Modbus TCP server on one port serving one or more unit ids from UnitMemory objects."""

    def __init__(self, host: str, port: int, units: dict[int, UnitMemory]) -> None:
        self.host, self.port = host, port
        self.units = units
        devices = {unit_id: _UnitContext(mem) for unit_id, mem in units.items()}
        self._server = ModbusTcpServer(ModbusServerContext(devices=devices, single=False), address=(host, port))

    async def start(self) -> None:
        """Start listening; return once the port is bound."""
        try:
            await self._server.serve_forever(background=True)
        except RuntimeError as exc:
            raise OSError(f"cannot serve Modbus on {self.host}:{self.port}: {exc}") from exc

    async def stop(self) -> None:
        """Stop listening and drop every connection."""
        await self._server.shutdown()
