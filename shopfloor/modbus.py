"""The one module that imports pymodbus (pinned to 3.11.x): a register reader and a register server.

The edge agent reads through PlcReader; the simulator serves through RegisterServer. Both speak plain
Python (ReadBlock, dict of registers), so nothing else depends on pymodbus' API.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus import ModbusException
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.constants import ExcCodes
from pymodbus.datastore import ModbusServerContext
from pymodbus.datastore.context import ModbusBaseDeviceContext
from pymodbus.server import ModbusTcpServer

from shopfloor.codec import ReadBlock
from shopfloor.config import Table

log = logging.getLogger(__name__)
# pymodbus logs every failed request at ERROR; our callers log once per outage instead.
logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


class PlcError(Exception):
    """A PLC did not answer a read, or answered with an error."""


class PlcReader:
    """Reads register blocks from one PLC unit over Modbus TCP."""

    def __init__(self, host: str, port: int, unit_id: int, timeout_s: float) -> None:
        self.host, self.port, self.unit_id, self.timeout_s = host, port, unit_id, timeout_s
        self._client = AsyncModbusTcpClient(
            host, port=port, timeout=timeout_s, retries=0, reconnect_delay=0, reconnect_delay_max=0
        )

    async def read(self, blocks: list[ReadBlock]) -> dict[ReadBlock, list[int]]:
        """Read every block; raise PlcError naming the block that failed."""
        if not self._client.connected:
            try:
                ok = await asyncio.wait_for(self._client.connect(), self.timeout_s + 0.5)
            except (TimeoutError, OSError, ModbusException) as exc:
                raise PlcError(f"cannot connect to {self.host}:{self.port} ({exc or 'timeout'})") from exc
            if not ok:
                raise PlcError(f"cannot connect to {self.host}:{self.port} (connection refused or timed out)")
        out: dict[ReadBlock, list[int]] = {}
        for block in blocks:
            what = f"{block.table} registers {block.start}..{block.end - 1}"
            try:
                if block.table is Table.HOLDING:
                    call = self._client.read_holding_registers(
                        block.start, count=block.count, device_id=self.unit_id
                    )
                else:
                    call = self._client.read_input_registers(block.start, count=block.count, device_id=self.unit_id)
                resp = await asyncio.wait_for(call, self.timeout_s + 0.5)
            except TimeoutError as exc:
                self._client.close()
                raise PlcError(f"{what}: no reply within {self.timeout_s} s") from exc
            except (ModbusException, OSError) as exc:
                self._client.close()
                if "No response" in str(exc):
                    # pymodbus' own timeout (the same timeout_s) usually fires before ours.
                    raise PlcError(f"{what}: no reply within {self.timeout_s} s") from exc
                raise PlcError(f"{what}: {exc}") from exc
            if resp.isError():
                code = getattr(resp, "exception_code", "?")
                raise PlcError(f"{what}: PLC replied with Modbus exception {code}")
            registers = list(resp.registers)
            if len(registers) < block.count:
                raise PlcError(f"{what}: PLC returned {len(registers)} registers, expected {block.count}")
            out[block] = registers[: block.count]
        return out

    def close(self) -> None:
        """Drop the connection."""
        self._client.close()


@dataclass
class UnitBehaviour:
    """Faults a served unit can show, set by the simulator at run time."""

    exception_code: int | None = None  # reply to reads with this Modbus exception code
    delay_s: float = 0.0  # answer this late


@dataclass
class UnitMemory:
    """Registers of one served unit, sparse, with behaviour switches."""

    holding: dict[int, int] = field(default_factory=dict)
    input: dict[int, int] = field(default_factory=dict)
    behaviour: UnitBehaviour = field(default_factory=UnitBehaviour)
    # Called before a read is served, so a simulator can refresh registers lazily for the current time.
    on_read: Callable[[], None] | None = None

    def set(self, values: dict[tuple[Table, int], int]) -> None:
        """Set registers from a (table, address) -> value map."""
        for (table, address), value in values.items():
            (self.holding if table is Table.HOLDING else self.input)[address] = value & 0xFFFF


class _UnitContext(ModbusBaseDeviceContext):
    """pymodbus device context backed by a UnitMemory, with fault injection."""

    def __init__(self, memory: UnitMemory) -> None:
        self.memory = memory

    def reset(self) -> None:
        """Clear all registers."""
        self.memory.holding.clear()
        self.memory.input.clear()

    async def async_getValues(self, func_code: int, address: int, count: int = 1) -> list[int] | ExcCodes:
        behaviour = self.memory.behaviour
        if behaviour.delay_s > 0:
            await asyncio.sleep(behaviour.delay_s)
        if behaviour.exception_code is not None:
            return ExcCodes(behaviour.exception_code)
        if self.memory.on_read is not None:
            self.memory.on_read()
        return self.getValues(func_code, address, count)

    def getValues(self, func_code: int, address: int, count: int = 1) -> list[int] | ExcCodes:
        if func_code in (3, 6, 16, 22, 23):
            regs = self.memory.holding
        elif func_code == 4:
            regs = self.memory.input
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
