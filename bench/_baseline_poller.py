"""The least a poller can do, as the baseline of bench/agent_scale.py: read, json.dumps, publish QoS1.

Per device and poll (every interval_s, on a drift-free schedule shared by all devices, like the agent's): one
pymodbus read request per register block (the same blocks the agent reads), json.dumps of the raw registers,
one paho QoS1 publish. No decoding, no outbox, no seq store, no status. Imports only pymodbus, paho and the
standard library, so it measures the floor, not a second copy of the agent.

    python bench/_baseline_poller.py SPEC.json MQTT_HOST MQTT_PORT

SPEC.json: {"interval_s": 1.0, "devices": [{"id": "m-0000", "host": "127.0.0.1", "port": 15020, "unit": 1,
"blocks": [["holding", 0, 28], ["input", 0, 4]]}, ...]}. Publishes to bench/baseline/<id> the payload
{"ts": <epoch ms at poll start>, "registers": [[...], ...]}. Runs until SIGTERM/SIGINT.
"""

from __future__ import annotations

import asyncio
import json
import logging
import os
import signal
import sys
import time
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
from pymodbus.client import AsyncModbusTcpClient

logging.getLogger("pymodbus").setLevel(logging.CRITICAL)


async def poll_device(device: dict[str, Any], interval_s: float, start: float, mqtt: paho.Client) -> None:
    """Poll one device every interval_s from start until cancelled."""
    client = AsyncModbusTcpClient(
        device["host"], port=device["port"], timeout=2.0, retries=0, reconnect_delay=0, reconnect_delay_max=0
    )
    topic = f"bench/baseline/{device['id']}"
    loop = asyncio.get_running_loop()
    k = 0
    try:
        while True:
            k = max(k + 1, int((loop.time() - start) / interval_s) + 1)
            await asyncio.sleep(start + k * interval_s - loop.time())
            ts = time.time_ns() // 1_000_000
            try:
                if not client.connected:
                    await client.connect()
                registers = []
                for table, address, count in device["blocks"]:
                    if table == "holding":
                        resp = await client.read_holding_registers(address, count=count, device_id=device["unit"])
                    else:
                        resp = await client.read_input_registers(address, count=count, device_id=device["unit"])
                    registers.append(list(resp.registers))
            except asyncio.CancelledError:
                raise
            except Exception:
                client.close()
                # pymodbus may turn our cancellation into its own error: honour it (as the agent does).
                task = asyncio.current_task()
                if task is not None and task.cancelling():
                    raise asyncio.CancelledError from None
                continue
            mqtt.publish(topic, json.dumps({"ts": ts, "registers": registers}), qos=1)
    finally:
        client.close()


async def main(spec: dict[str, Any], host: str, port: int) -> None:
    mqtt = paho.Client(CallbackAPIVersion.VERSION2, client_id="bench-baseline")
    mqtt.max_inflight_messages_set(100)
    mqtt.connect(host, port)
    mqtt.loop_start()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    start = loop.time()
    tasks = [asyncio.create_task(poll_device(d, spec["interval_s"], start, mqtt)) for d in spec["devices"]]
    await stop.wait()
    for task in tasks:
        task.cancel()
    await asyncio.wait(tasks, timeout=3)
    mqtt.disconnect()
    mqtt.loop_stop()
    sys.stdout.flush()
    os._exit(0)  # a read pymodbus will not let go of must not keep a bench process alive


if __name__ == "__main__":
    with open(sys.argv[1]) as f:
        asyncio.run(main(json.load(f), sys.argv[2], int(sys.argv[3])))
