"""PlcReader against a raw TCP server that misbehaves on purpose: every bad reply is a PlcError, never data.

Each case is one row: how the server answers a request, and the reason the read must fail with. After every
failure the same server turns healthy and the next read must return the right values.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from shopfloor.codec import ReadBlock
from shopfloor.config import Table
from shopfloor.modbus import PlcError, PlcReader

pytestmark = pytest.mark.integration

TIMEOUT_S = 0.2
UNIT = 1
HOLDING = ReadBlock(Table.HOLDING, 0, 22)
COILS = ReadBlock(Table.COIL, 0, 10)


@dataclass(frozen=True)
class Request:
    """A request as the server parsed it."""

    tid: int
    unit: int
    function: int
    start: int
    count: int


def word(address: int) -> int:
    return (address * 7 + 1) & 0xFFFF


def bit(address: int) -> int:
    return 1 if address % 3 == 0 else 0


def expected(block: ReadBlock) -> list[int]:
    values = bit if block.table in (Table.COIL, Table.DISCRETE) else word
    return [values(a) for a in range(block.start, block.end)]


def frame(tid: int, unit: int, pdu: bytes, protocol: int = 0, length: int | None = None) -> bytes:
    """An MBAP header and pdu; length defaults to the true one."""
    return struct.pack(">HHHB", tid, protocol, len(pdu) + 1 if length is None else length, unit) + pdu


def data_pdu(function: int, data: bytes, byte_count: int | None = None) -> bytes:
    return bytes([function, len(data) if byte_count is None else byte_count]) + data


def good_data(req: Request, count: int | None = None) -> bytes:
    """The data bytes of a correct reply (count: registers or bits to send instead of the requested number)."""
    n = req.count if count is None else count
    if req.function in (1, 2):
        bits = [bit(a) for a in range(req.start, req.start + n)]
        return bytes(sum(b << i for i, b in enumerate(bits[k : k + 8])) for k in range(0, len(bits), 8))
    return b"".join(struct.pack(">H", word(a)) for a in range(req.start, req.start + n))


def correct(req: Request) -> bytes:
    return frame(req.tid, req.unit, data_pdu(req.function, good_data(req)))


@dataclass(frozen=True)
class Reply:
    """What the server does with one request: wait delay_s, send data (b"": nothing), then maybe close."""

    data: bytes
    close: bool = False
    delay_s: float = 0.0


Answer = Callable[[Request], Reply]


def reply(build: Callable[[Request], bytes], close: bool = False) -> Answer:
    return lambda req: Reply(build(req), close)


class MisbehavingServer:
    """A Modbus TCP server on a free port that answers each request as self.answer says."""

    def __init__(self) -> None:
        self.answer: Answer = reply(correct)
        self.connections = 0
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def stop(self) -> None:
        assert self._server is not None
        self._server.close()
        await self._server.wait_closed()

    async def push(self, data: bytes) -> None:
        """Send data unasked on every open connection."""
        for writer in self._writers:
            writer.write(data)
            await writer.drain()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        self._writers.add(writer)
        try:
            while True:
                tid, _, length, unit = struct.unpack(">HHHB", await reader.readexactly(7))
                function, start, count = struct.unpack(">BHH", await reader.readexactly(length - 1))
                answer = self.answer(Request(tid, unit, function, start, count))
                if answer.delay_s:
                    await asyncio.sleep(answer.delay_s)
                if answer.data:
                    writer.write(answer.data)
                    await writer.drain()
                if answer.close:
                    break
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            self._writers.discard(writer)
            writer.close()


def exception_reply(code: int) -> Answer:
    return reply(lambda r: frame(r.tid, r.unit, bytes([r.function | 0x80, code])))


@dataclass(frozen=True)
class Case:
    name: str
    answer: Answer
    reason: str  # regex the PlcError must match
    block: ReadBlock = HOLDING
    keeps_connection: bool = False


def with_tid(req: Request, tid: int) -> Request:
    return Request(tid, req.unit, req.function, req.start, req.count)


CASES = [
    Case(
        "wrong function code",
        reply(lambda r: frame(r.tid, r.unit, data_pdu(4, good_data(r)))),
        r"^holding registers 0\.\.21: reply has function code 4, expected 3$",
    ),
    Case(
        "wrong unit id",
        reply(lambda r: frame(r.tid, 9, data_pdu(r.function, good_data(r)))),
        r"^holding registers 0\.\.21: reply is from unit 9, expected unit 1$",
    ),
    Case(
        "extra registers",
        reply(lambda r: frame(r.tid, r.unit, data_pdu(r.function, good_data(r, r.count + 1)))),
        r"^holding registers 0\.\.21: reply has 23 registers, expected 22$",
    ),
    Case(
        "fewer registers",
        reply(lambda r: frame(r.tid, r.unit, data_pdu(r.function, good_data(r, r.count - 1)))),
        r"^holding registers 0\.\.21: reply has 21 registers, expected 22$",
    ),
    Case(
        "odd number of data bytes",
        reply(lambda r: frame(r.tid, r.unit, data_pdu(r.function, good_data(r)[:-1]))),
        r"^holding registers 0\.\.21: reply has 43 data bytes, expected 44$",
    ),
    Case(
        "byte count disagrees with the frame",
        reply(lambda r: frame(r.tid, r.unit, data_pdu(r.function, good_data(r)[:-2], byte_count=44))),
        r"^holding registers 0\.\.21: reply's byte count 44 does not match its 42 data bytes$",
    ),
    Case(
        "coils: one byte too many",
        reply(lambda r: frame(r.tid, r.unit, data_pdu(r.function, good_data(r) + b"\x00"))),
        r"^coils 0\.\.9: reply has 3 data bytes, expected 2 for 10 bits$",
        block=COILS,
    ),
    Case(
        "coils: one byte too few",
        reply(lambda r: frame(r.tid, r.unit, data_pdu(r.function, good_data(r, 8)))),
        r"^coils 0\.\.9: reply has 1 data bytes, expected 2 for 10 bits$",
        block=COILS,
    ),
    Case(
        "coils: reply to a register read",
        reply(lambda r: frame(r.tid, r.unit, data_pdu(3, good_data(r, 1)))),
        r"^coils 0\.\.9: reply has function code 3, expected 1$",
        block=COILS,
    ),
    *(
        Case(
            f"exception {code}",
            exception_reply(code),
            rf"^holding registers 0\.\.21: PLC replied with Modbus exception {code}$",
            keeps_connection=True,
        )
        for code in (1, 2, 3, 4, 5, 6, 8, 10, 11)
    ),
    Case(
        "exception reply for another function",
        reply(lambda r: frame(r.tid, r.unit, bytes([0x84, 2]))),
        r"^holding registers 0\.\.21: reply has function code 132, expected 3$",
    ),
    Case(
        "garbage bytes",
        reply(lambda r: b"HTTP/1.1 400 Bad Request\r\n\r\n"),
        r"^holding registers 0\.\.21: reply is not Modbus TCP \(protocol id \d+\)$",
    ),
    Case(
        "impossible length",
        reply(lambda r: frame(r.tid, r.unit, b"", length=0)),
        r"^holding registers 0\.\.21: reply declares a length of 0 \(valid: 3\.\.254\)$",
    ),
    Case(
        "two replies at once",
        reply(lambda r: correct(r) + correct(r)),
        r"^holding registers 0\.\.21: reply is followed by 53 unexpected bytes$",
    ),
    Case(
        "truncated frame, then close",
        reply(lambda r: correct(r)[:20], close=True),
        r"^holding registers 0\.\.21: connection closed by the PLC after 20 bytes of a reply$",
    ),
    Case(
        "close without a reply",
        reply(lambda r: b"", close=True),
        r"^holding registers 0\.\.21: connection closed by the PLC$",
    ),
    Case(
        "silent",
        reply(lambda r: b""),
        rf"^holding registers 0\.\.21: no reply within {TIMEOUT_S} s$",
    ),
    Case(
        "wrong transaction id",
        reply(lambda r: correct(with_tid(r, r.tid + 1))),
        r"^holding registers 0\.\.21: reply has transaction id \d+, expected \d+$",
    ),
]


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_a_bad_reply_fails_the_read_and_the_next_read_works(case: Case) -> None:
    async def scenario() -> None:
        server = MisbehavingServer()
        await server.start()
        reader = PlcReader("127.0.0.1", server.port, UNIT, timeout_s=TIMEOUT_S)
        try:
            assert await reader.read([case.block]) == {case.block: expected(case.block)}  # sanity
            server.answer = case.answer
            with pytest.raises(PlcError, match=case.reason):
                await reader.read([case.block, HOLDING])
            assert reader.endpoint.connected is case.keeps_connection
            server.answer = reply(correct)
            assert await reader.read([case.block, HOLDING]) == {
                case.block: expected(case.block),
                HOLDING: expected(HOLDING),
            }
            assert server.connections == (1 if case.keeps_connection else 2)
        finally:
            reader.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_all_four_tables_decode_exactly_count_values() -> None:
    blocks = [
        ReadBlock(Table.HOLDING, 100, 125),
        ReadBlock(Table.INPUT, 7, 1),
        ReadBlock(Table.COIL, 3, 17),
        ReadBlock(Table.DISCRETE, 0, 2000),
        ReadBlock(Table.COIL, 0, 8),
    ]

    async def scenario() -> None:
        server = MisbehavingServer()
        await server.start()
        reader = PlcReader("127.0.0.1", server.port, UNIT, timeout_s=TIMEOUT_S)
        try:
            got = await reader.read(blocks)
        finally:
            reader.close()
            await server.stop()
        assert got == {b: expected(b) for b in blocks}
        assert all(len(got[b]) == b.count for b in blocks)

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_a_late_reply_never_answers_the_next_request() -> None:
    async def scenario() -> None:
        server = MisbehavingServer()
        await server.start()
        # The first request is answered after the reader gave up, with its own transaction id and other values:
        # only a fresh connection keeps that reply from being taken as the answer to the next request.
        server.answer = lambda r: Reply(frame(r.tid, r.unit, data_pdu(3, b"\xff\xff" * r.count)), delay_s=TIMEOUT_S * 2)
        reader = PlcReader("127.0.0.1", server.port, UNIT, timeout_s=TIMEOUT_S)
        try:
            with pytest.raises(PlcError, match="no reply within"):
                await reader.read([HOLDING])
            server.answer = reply(correct)
            for _ in range(3):
                assert await reader.read([HOLDING]) == {HOLDING: expected(HOLDING)}
                await asyncio.sleep(TIMEOUT_S)
        finally:
            reader.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 10))


def test_bytes_nobody_asked_for_drop_the_connection_quietly() -> None:
    async def scenario() -> None:
        server = MisbehavingServer()
        await server.start()
        reader = PlcReader("127.0.0.1", server.port, UNIT, timeout_s=TIMEOUT_S)
        try:
            assert await reader.read([HOLDING]) == {HOLDING: expected(HOLDING)}
            # An exception reply while the reader is idle: a reply to nothing, so the stream is out of step.
            await server.push(b"\x00\x07\x00\x00\x00\x03\x01\x83\x02")
            await asyncio.sleep(0.05)
            assert not reader.endpoint.connected
            assert await reader.read([HOLDING]) == {HOLDING: expected(HOLDING)}
            assert server.connections == 2
        finally:
            reader.close()
            await server.stop()

    asyncio.run(asyncio.wait_for(scenario(), 10))
