"""The shipped deployment broker config starts a working Mosquitto (port and paths moved to a temp dir)."""

from __future__ import annotations

import getpass
import subprocess
import time
from pathlib import Path

import pytest

from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings
from shopfloor.services import find_binary, free_port

pytestmark = pytest.mark.integration
CONF = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto.conf"


def test_deploy_mosquitto_conf_starts_and_carries_qos1(tmp_path: Path) -> None:
    text = CONF.read_text()
    assert "max_inflight_messages 1000" in text
    port = free_port()
    conf = tmp_path / "mosquitto.conf"
    conf.write_text(
        text.replace("listener 1883", f"listener {port} 127.0.0.1\nuser {getpass.getuser()}").replace(
            "/var/lib/mosquitto/", f"{tmp_path}/"
        )
    )
    proc = subprocess.Popen([find_binary("mosquitto"), "-c", str(conf)], stderr=subprocess.PIPE, text=True)
    received: list[InboundMessage] = []
    sub = MqttLink(MqttSettings(port=port), "deploy-sub", on_message=received.append)
    pub = MqttLink(MqttSettings(port=port), "deploy-pub")
    try:
        sub.subscribe(["probe/#"])
        sub.start()
        pub.start()
        assert sub.wait_connected(10) and pub.wait_connected(10), "broker from deploy/mosquitto.conf not reachable"
        deadline = time.monotonic() + 10
        while not received:  # the subscription is live once a probe comes back
            assert time.monotonic() < deadline, "subscription never became live"
            pub.publish("probe/ready", b"?", qos=1).wait(2)
            time.sleep(0.05)
        received.clear()
        for i in range(50):
            pub.publish(f"probe/{i}", b"x", qos=1)
        deadline = time.monotonic() + 10
        while len({m.topic for m in received if m.topic != "probe/ready"}) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {m.topic for m in received if m.topic != "probe/ready"} == {f"probe/{i}" for i in range(50)}
    finally:
        sub.stop()
        pub.stop()
        proc.terminate()
        _, err = proc.communicate(timeout=10)
    assert "Error" not in err, err
