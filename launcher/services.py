"""Start Mosquitto and InfluxDB as local processes in a temporary directory, on free ports.

Used by `shopfloor demo` and by the test fixtures; nothing here is needed in a real deployment.
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import httpx


class ServiceError(RuntimeError):
    """A local service could not be started."""


def free_port() -> int:
    """Return a TCP port on 127.0.0.1 that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def free_ports(n: int) -> list[int]:
    """Return n distinct TCP ports on 127.0.0.1 that are free right now (free_port() alone may repeat one)."""
    socks = []
    try:
        for _ in range(n):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            socks.append(sock)
            sock.bind(("127.0.0.1", 0))
        return [int(sock.getsockname()[1]) for sock in socks]
    finally:
        for sock in socks:
            sock.close()


def _wait_port(port: int, timeout_s: float, proc: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise ServiceError(f"process exited with {proc.returncode}: {log.read_text(errors='replace')[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return
        time.sleep(0.05)
    raise ServiceError(f"port {port} did not open within {timeout_s} s: {log.read_text(errors='replace')[-2000:]}")


# The Debian package that ships each service binary, where the names differ.
DEBIAN_PACKAGES = {"influxd": "influxdb", "mosquitto_passwd": "mosquitto"}


def find_binary(name: str, extra: tuple[str, ...] = ()) -> str:
    """Locate a service binary on PATH or in the usual sbin folders."""
    found = shutil.which(name)
    if found:
        return found
    for folder in ("/usr/sbin", "/usr/local/sbin", "/usr/bin", *extra):
        candidate = Path(folder) / name
        if candidate.exists():
            return str(candidate)
    package = DEBIAN_PACKAGES.get(name, name)
    raise ServiceError(f"{name} is not installed (Debian: apt-get install {package})")


class LocalProcess:
    """A service process we started; stop() terminates it, kill() simulates a crash."""

    def __init__(self, name: str, workdir: Path) -> None:
        self.name = name
        self.workdir = workdir
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_path = workdir / f"{name}.log"

    def _spawn(self, argv: list[str]) -> subprocess.Popen[bytes]:
        log = self.log_path.open("ab")
        self.proc = subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT, cwd=self.workdir)
        log.close()
        return self.proc

    @property
    def running(self) -> bool:
        """Whether the process is alive."""
        return self.proc is not None and self.proc.poll() is None

    def stop(self) -> None:
        """Terminate the process gracefully (SIGTERM, then SIGKILL)."""
        if self.proc is None or self.proc.poll() is not None:
            return
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)

    def kill(self) -> None:
        """Kill the process without warning, like a crash."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(5)


class Mosquitto(LocalProcess):
    """A Mosquitto broker on a free port, anonymous, tuned for QoS1 throughput."""

    def __init__(self, workdir: Path, port: int | None = None, max_inflight: int = 1000) -> None:
        super().__init__("mosquitto", workdir)
        self.port = port or free_port()
        self.conf = workdir / "mosquitto.conf"
        # max_inflight_messages 20 (the default) throttles a QoS1 subscriber to ~2.4k msg/s here.
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\n"
            # Run as whoever started us: as root, Mosquitto would switch to a user that cannot write here.
            f"user {getpass.getuser()}\n"
            "allow_anonymous true\n"
            "persistence false\n"
            f"max_inflight_messages {max_inflight}\n"
            "max_queued_messages 100000\n"
            "log_type error\nlog_type warning\n"
            f"log_dest file {self.log_path}\n"
        )

    @property
    def url(self) -> str:
        """mqtt:// URL of the broker."""
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        """Start the broker and wait until it accepts connections."""
        proc = self._spawn([find_binary("mosquitto"), "-c", str(self.conf)])
        _wait_port(self.port, 10, proc, self.log_path)
        return self


class InfluxDB(LocalProcess):
    """An InfluxDB 1.x server on a free port with its data in a temporary directory.

    max_row_limit caps the rows of a whole (not streamed) query answer, as some deployments do; 0: no cap.
    """

    def __init__(self, workdir: Path, *, max_row_limit: int = 0) -> None:
        if type(max_row_limit) is not int or max_row_limit < 0:
            raise ValueError(f"max_row_limit must be an int >= 0, got {max_row_limit!r}")
        super().__init__("influxd", workdir)
        self.port = free_port()
        self.rpc_port = free_port()
        self.conf = workdir / "influxdb.conf"
        d = workdir / "influx"
        self.conf.write_text(
            "reporting-disabled = true\n"
            f'bind-address = "127.0.0.1:{self.rpc_port}"\n'
            f'[meta]\n  dir = "{d}/meta"\n'
            f'[data]\n  dir = "{d}/data"\n  wal-dir = "{d}/wal"\n  query-log-enabled = false\n'
            '  index-version = "inmem"\n'
            f'[http]\n  bind-address = "127.0.0.1:{self.port}"\n  log-enabled = false\n'
            "  max-body-size = 50000000\n"
            f"  max-row-limit = {max_row_limit}\n"
            "[monitor]\n  store-enabled = false\n"
            "[continuous_queries]\n  enabled = false\n"
            '[logging]\n  level = "warn"\n'
        )

    @property
    def url(self) -> str:
        """HTTP URL of the server."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> InfluxDB:
        """Start the server and wait until /ping answers."""
        proc = self._spawn([find_binary("influxd"), "run", "-config", str(self.conf)])
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                raise ServiceError(f"influxd exited with {proc.returncode}: {self.log_path.read_text()[-2000:]}")
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/ping", timeout=0.5).status_code == 204:
                    return self
            time.sleep(0.1)
        raise ServiceError(f"influxd did not answer within 30 s: {self.log_path.read_text()[-2000:]}")


def temp_workdir(prefix: str) -> Path:
    """Make a private temporary directory."""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    os.chmod(path, 0o700)
    return path
