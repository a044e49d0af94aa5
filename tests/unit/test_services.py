"""Helpers that start local services: port allocation, finding the binaries."""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from launcher.services import ServiceError, find_binary, free_port, free_ports


def test_free_ports_are_distinct_and_bindable() -> None:
    ports = free_ports(50)
    assert len(set(ports)) == 50
    for port in [*ports[:5], free_port()]:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", port))


@pytest.mark.parametrize(
    ("binary", "package"),
    [("influxd-not-here", "influxd-not-here"), ("influxd", "influxdb"), ("mosquitto_passwd", "mosquitto")],
)
def test_a_missing_binary_names_the_debian_package_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, binary: str, package: str
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))  # nothing on PATH
    monkeypatch.setattr("launcher.services.Path.exists", lambda _self: False)  # nor in the sbin folders
    with pytest.raises(ServiceError) as exc:
        find_binary(binary)
    assert str(exc.value) == f"{binary} is not installed (Debian: apt-get install {package})"


def test_a_binary_on_path_is_found(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    tool = tmp_path / "influxd"
    tool.write_text("#!/bin/sh\n")
    tool.chmod(0o755)
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_binary("influxd") == str(tool)
