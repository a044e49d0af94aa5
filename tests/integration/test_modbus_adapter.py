"""PlcReader against a real pymodbus server (RegisterServer): reads, exceptions, timeouts, refusal."""

from __future__ import annotations

import asyncio

import pytest

from launcher.services import free_port
from shopfloor.codec import ReadBlock
from shopfloor.config import Table
from shopfloor.modbus import PlcError, PlcReader, RegisterServer, UnitMemory

pytestmark = pytest.mark.integration


def test_reads_exceptions_timeouts_and_refusal() -> None:
    async def scenario() -> None:
        port = free_port()
        mem = UnitMemory()
        mem.set({(Table.HOLDING, 0): 5, (Table.HOLDING, 2): 70000, (Table.INPUT, 1): 9})
        server = RegisterServer("127.0.0.1", port, {1: mem})
        await server.start()
        reader = PlcReader("127.0.0.1", port, 1, timeout_s=0.5)
        hold, inp = ReadBlock(Table.HOLDING, 0, 3), ReadBlock(Table.INPUT, 0, 2)
        try:
            assert await reader.read([hold, inp]) == {hold: [5, 0, 70000 & 0xFFFF], inp: [0, 9]}
            mem.behaviour.exception_code = 4
            with pytest.raises(PlcError, match="Modbus exception 4"):
                await reader.read([hold])
            mem.behaviour.exception_code = None
            mem.behaviour.delay_s = 1.5
            with pytest.raises(PlcError, match=r"^holding registers 0\.\.2: no reply within 0\.5 s$"):
                await reader.read([hold])
            mem.behaviour.delay_s = 0
            assert (await reader.read([hold]))[hold][0] == 5
            other_unit = PlcReader("127.0.0.1", port, 7, timeout_s=0.5)
            # pymodbus' server answers for a unit it does not serve as a gateway would: "target failed to respond".
            with pytest.raises(PlcError, match="Modbus exception 11"):
                await other_unit.read([hold])
            other_unit.close()
        finally:
            await server.stop()
            reader.close()
        refused = PlcReader("127.0.0.1", port, 1, timeout_s=0.5)
        with pytest.raises(PlcError, match=rf"^cannot connect to 127\.0\.0\.1:{port} \(connection refused\)$"):
            await refused.read([hold])
        refused.close()

    asyncio.run(scenario())
