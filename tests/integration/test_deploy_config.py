"""The shipped broker folder deploy/mosquitto/ starts a working Mosquitto (ports and paths moved to a temp dir).

The helpers here (certificates, relocation, start) are shared with test_broker_acl.py.
"""

from __future__ import annotations

import contextlib
import getpass
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from launcher.services import find_binary, free_ports
from shopfloor.brokerconf import Role
from shopfloor.config import default_site_path, load_site
from shopfloor.contracts import Topic, subscription_filters
from shopfloor.mqtt import InboundMessage, MqttLink, MqttSettings
from shopfloor.mqtt_cli import add_user, check_dir, load_users

pytestmark = pytest.mark.integration
DEPLOY = Path(__file__).resolve().parents[2] / "deploy" / "mosquitto"


def make_certs(folder: Path) -> bool:
    """Make a throwaway CA and a server certificate for 127.0.0.1 with openssl; False if openssl is missing."""
    openssl = shutil.which("openssl")
    if openssl is None:
        return False
    folder.mkdir(parents=True, exist_ok=True)

    def run(*args: str) -> None:
        subprocess.run([openssl, *args], cwd=folder, check=True, capture_output=True, timeout=60)

    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2", "-subj", "/CN=shopfloor test CA",
        "-keyout", "ca.key", "-out", "ca.crt")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", "server.key", "-out", "server.csr")
    (folder / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial", "-days", "2",
        "-extfile", "san.ext", "-out", "server.crt")  # fmt: skip
    return True


def relocate(text: str, folder: Path, port: int, tls_port: int | None) -> str:
    """The shipped conf with only its listener ports and paths moved into folder (and run as us, not root)."""
    for needed in ("listener 1883 127.0.0.1\n", "listener 8883\n", "/mosquitto/config/", "/mosquitto/data/"):
        assert needed in text, f"deploy/mosquitto/mosquitto.conf no longer has {needed!r}: update this test"
    text = text.replace("listener 1883 127.0.0.1\n", f"listener {port} 127.0.0.1\n")
    if tls_port is None:  # no openssl: no certificates, so no TLS listener (its own test is skipped)
        tls_lines = ("listener 8883", "cafile ", "certfile ", "keyfile ", "tls_version ")
        kept = [line for line in text.splitlines() if not line.startswith(tls_lines)]
        text = "\n".join(kept) + "\n"
    else:
        text = text.replace("listener 8883\n", f"listener {tls_port} 127.0.0.1\n")
    text = text.replace("/mosquitto/config/", f"{folder}/").replace("/mosquitto/data/", f"{folder}/data/")
    (folder / "data").mkdir(exist_ok=True)  # Mosquitto does not make its persistence folder
    # As root, Mosquitto would switch to the user `mosquitto`, who cannot read this folder.
    return f"user {getpass.getuser()}\n{text}"


def start(argv: list[str], port: int, log: Path) -> subprocess.Popen[bytes]:
    with log.open("ab") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"mosquitto exited: {log.read_text(errors='replace')[-2000:]}"
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return proc
        time.sleep(0.05)
    proc.kill()
    raise AssertionError(f"mosquitto did not listen on {port}: {log.read_text(errors='replace')[-2000:]}")


def test_deploy_mosquitto_folder_starts_and_carries_qos1(tmp_path: Path) -> None:
    text = (DEPLOY / "mosquitto.conf").read_text()
    assert "max_inflight_messages 1000" in text
    folder = tmp_path / "mosquitto"
    shutil.copytree(DEPLOY, folder)
    have_tls = make_certs(folder / "certs")
    # The shipped users (for the example site) get passwords; everything else stays as shipped.
    site = load_site(default_site_path())
    passwords = {u.name: add_user(folder, site, u.name, u.role, u.machines or None) for u in load_users(folder)}
    assert {u.role for u in load_users(folder)} == set(Role)
    assert (folder / "acl").read_text() == (DEPLOY / "acl").read_text()
    problems = check_dir(folder, site)
    assert problems == [] if have_tls else all("listener 8883" in p for p in problems), problems
    port, tls_port = free_ports(2)
    conf = tmp_path / "run.conf"
    conf.write_text(relocate(text, folder, port, tls_port if have_tls else None))
    log = tmp_path / "mosquitto.log"
    proc = start([find_binary("mosquitto"), "-c", str(conf)], port, log)

    def settings(user: str) -> MqttSettings:
        return MqttSettings(port=port, username=user, password=passwords[user], protocol="5")

    received: list[InboundMessage] = []
    sub = MqttLink(settings("collector-1"), "deploy-sub", on_message=received.append)
    pub = MqttLink(settings("edge-1"), "deploy-pub")
    topic = str(Topic.telemetry(site.site.id, "cnc-01"))
    try:
        sub.subscribe(["$share/collectors/" + f for f in subscription_filters()])
        sub.start()
        pub.start()
        assert sub.wait_connected(10) and pub.wait_connected(10), "broker from deploy/mosquitto/ not reachable"
        deadline = time.monotonic() + 10
        while not received:  # the subscription is live once a probe comes back
            assert time.monotonic() < deadline, "subscription never became live"
            pub.publish(topic, b"ready", qos=1).wait(2)
            time.sleep(0.05)
        received.clear()
        handles = [pub.publish(topic, f"m{i}".encode(), qos=1) for i in range(50)]
        assert all(h.wait(10) for h in handles)
        deadline = time.monotonic() + 10
        while len({m.payload for m in received} - {b"ready"}) < 50 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert {m.payload for m in received} - {b"ready"} == {f"m{i}".encode() for i in range(50)}
    finally:
        sub.stop()
        pub.stop()
        proc.terminate()
        proc.wait(10)
    assert "Error" not in log.read_text(errors="replace"), log.read_text(errors="replace")
    assert (folder / "data" / "mosquitto.db").is_file(), "persistence is on: the broker saves at shutdown"
