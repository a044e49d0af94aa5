"""Mosquitto and InfluxDB in Docker containers (testcontainers): an opt-in alternative to the local processes of
launcher.services for the test fixtures, on machines that have a Docker engine but not the Debian packages.

`SHOPFLOOR_TEST_SERVICES=containers` makes the session's shared `mosquitto` and `influxdb` fixtures
(tests/conftest.py) use these; tests that stop, kill or reconfigure a broker or server of their own keep the local
processes. Needs `pip install 'shopfloor[containers]'` and a reachable Docker engine; `unavailable()` says what is
missing. The brokers are tuned as launcher.services.Mosquitto is (anonymous, 1000 in flight, deep queues).
"""

from __future__ import annotations

import contextlib
import importlib.util
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from launcher.services import ServiceError

MOSQUITTO_IMAGE = "eclipse-mosquitto:2.0"
INFLUXDB_IMAGE = "influxdb:1.8"
ENV = "SHOPFLOOR_TEST_SERVICES"
START_TIMEOUT_S = 60.0

MOSQUITTO_CONF = (
    "listener 1883 0.0.0.0\n"
    "allow_anonymous true\n"
    "persistence false\n"
    "max_inflight_messages 1000\n"
    "max_queued_messages 100000\n"
    "log_type error\nlog_type warning\n"
)


def unavailable() -> str | None:
    """Why containers cannot be used here (None: they can)."""
    if importlib.util.find_spec("testcontainers") is None:
        return "testcontainers is not installed (pip install 'shopfloor[containers]')"
    try:
        import docker  # testcontainers' own dependency

        docker.from_env().ping()
    except Exception as exc:
        return f"no Docker engine reachable ({str(exc).splitlines()[0][:200]})"
    return None


class _Container:
    """One container with one exposed port, started and stopped like a launcher.services process."""

    image: str
    inner_port: int

    def __init__(self) -> None:
        self._container: Any = None
        self.host = "127.0.0.1"
        self.port = 0

    def _configure(self, container: Any) -> Any:
        return container

    def _ready(self) -> bool:
        raise NotImplementedError

    def start(self) -> Any:
        reason = unavailable()
        if reason is not None:
            raise ServiceError(f"cannot start {self.image}: {reason}")
        from testcontainers.core.container import DockerContainer

        self._container = self._configure(DockerContainer(self.image).with_exposed_ports(self.inner_port))
        self._container.start()
        self.host = self._container.get_container_host_ip()
        self.port = int(self._container.get_exposed_port(self.inner_port))
        deadline = time.monotonic() + START_TIMEOUT_S
        while time.monotonic() < deadline:
            with contextlib.suppress(Exception):
                if self._ready():
                    return self
            time.sleep(0.2)
        self.stop()
        raise ServiceError(f"{self.image} did not get ready within {START_TIMEOUT_S:.0f} s")

    def stop(self) -> None:
        if self._container is not None:
            with contextlib.suppress(Exception):
                self._container.stop()
            self._container = None


class MosquittoContainer(_Container):
    """Mosquitto 2.0 in a container: .url, .port, start(), stop()."""

    image = MOSQUITTO_IMAGE
    inner_port = 1883

    def __init__(self) -> None:
        super().__init__()
        self.conf = Path(tempfile.mkdtemp(prefix="sf-mosquitto-container-")) / "mosquitto.conf"
        self.conf.write_text(MOSQUITTO_CONF)

    def _configure(self, container: Any) -> Any:
        return container.with_volume_mapping(str(self.conf), "/mosquitto/config/mosquitto.conf")

    def _ready(self) -> bool:
        import socket

        with socket.create_connection((self.host, self.port), timeout=1):
            return True

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://{self.host}:{self.port}"


class InfluxDBContainer(_Container):
    """InfluxDB 1.8 in a container: .url, .port, start(), stop()."""

    image = INFLUXDB_IMAGE
    inner_port = 8086

    def _configure(self, container: Any) -> Any:
        return (
            container.with_env("INFLUXDB_REPORTING_DISABLED", "true")
            .with_env("INFLUXDB_HTTP_LOG_ENABLED", "false")
            .with_env("INFLUXDB_HTTP_MAX_BODY_SIZE", "50000000")
            .with_env("INFLUXDB_DATA_QUERY_LOG_ENABLED", "false")
        )

    def _ready(self) -> bool:
        with urllib.request.urlopen(f"{self.url}/ping", timeout=1) as resp:
            return bool(resp.status == 204)

    @property
    def url(self) -> str:
        """HTTP URL of the server."""
        return f"http://{self.host}:{self.port}"
